//! Runs the real `picloud` binary for integration tests: a free port on 127.0.0.1, a
//! fresh data dir, SQLite or (with `PICLOUD_TEST_DATABASE_URL`) a fresh PostgreSQL
//! database; killed (SIGKILL) and cleaned up afterwards.
//!
//! The binary comes from `PICLOUD_BIN`, else the workspace's `target/debug/picloud`. A
//! missing binary fails the test with a message saying how to build it.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud_client::apps::CreateApp;
use picloud_client::keys::{CreateAppKey, Scope};
use picloud_client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where a server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A PostgreSQL server, by its superuser URL.
    Postgres(String),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        })
    }
}

/// SQLite, and PostgreSQL too when `PICLOUD_TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("PICLOUD_TEST_DATABASE_URL") {
        if !url.trim().is_empty() {
            backends.push(Backend::Postgres(url.trim().to_owned()));
        }
    }
    backends
}

pub fn picloud_binary() -> PathBuf {
    let bin = std::env::var_os("PICLOUD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/debug/picloud"
            ))
        });
    assert!(
        bin.is_file(),
        "picloud binary not found at {}: build it first (cargo build -p picloud) or set PICLOUD_BIN",
        bin.display()
    );
    bin
}

/// Polls `check` until it gives a value or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn psql() -> String {
    if let Ok(psql) = std::env::var("PICLOUD_PSQL") {
        return psql;
    }
    if std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok()
    {
        return "psql".into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .map(|p| p.display().to_string())
        .expect("psql not found: set PICLOUD_PSQL")
}

fn run_psql(admin_url: &str, sql: &str) {
    let output = std::process::Command::new(psql())
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One running server process over a data dir (and database) that outlives restarts.
pub struct PicloudServer {
    pub backend: Backend,
    pub port: u16,
    /// The instance admin key printed at the first start.
    pub admin_key: String,
    database_url: String,
    pg_database: Option<String>,
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
}

impl PicloudServer {
    /// Starts a server with a fresh database and `env` on top of the defaults.
    pub async fn start(backend: &Backend, env: &[(&str, &str)]) -> PicloudServer {
        // Fail before creating anything when there is no binary to run.
        picloud_binary();
        let data_dir = tempfile::Builder::new()
            .prefix("picloud-rs-sdk-")
            .tempdir()
            .expect("a temp dir");
        let (database_url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/picloud.db", data_dir.path().display()),
                None,
            ),
            Backend::Postgres(admin_url) => {
                let name = format!("picloud_sdk_{}", uuid::Uuid::new_v4().simple());
                run_psql(admin_url, &format!("CREATE DATABASE {name}"));
                (with_database(admin_url, &name), Some(name))
            }
        };
        let mut server = PicloudServer {
            backend: backend.clone(),
            port: 0,
            admin_key: String::new(),
            database_url,
            pg_database,
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            output: Arc::new(Mutex::new(String::new())),
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(picloud_binary());
        command
            .arg("serve")
            .env("PICLOUD_BIND", format!("127.0.0.1:{}", self.port))
            .env("PICLOUD_DATA_DIR", self.data_dir.path())
            .env("PICLOUD_DATABASE_URL", &self.database_url)
            .env("PICLOUD_SHUTDOWN_GRACE_SEC", "1")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("picloud starts");
        let start = self.output.lock().unwrap().len();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = self.output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        self.child = Some(child);
        let output = self.output.clone();
        let port = {
            let child = self.child.as_mut().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let text = output.lock().unwrap()[start..].to_owned();
                if let Some(at) = text.find("listening addr=127.0.0.1:") {
                    let digits: String = text[at + 25..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    break digits.parse::<u16>().expect("a port");
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("picloud exited with {status}:\n{}", output.lock().unwrap());
                }
                assert!(
                    Instant::now() < deadline,
                    "picloud did not listen within 60 s:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        self.port = port;
        if self.admin_key.is_empty() {
            let text = self.output();
            let at = text
                .find("pk_")
                .unwrap_or_else(|| panic!("no admin key printed:\n{text}"));
            self.admin_key = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
        }
    }

    /// Kills the process at once (SIGKILL): no goodbye to any client.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("picloud exits");
        }
    }

    /// Starts the server again on the same port and database.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Runs a `picloud` CLI command on this server's data dir and database, with `stdin`.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(picloud_binary())
            .args(args)
            .env("PICLOUD_DATA_DIR", self.data_dir.path())
            .env("PICLOUD_DATABASE_URL", &self.database_url)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the picloud CLI starts");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child
            .wait_with_output()
            .await
            .expect("the picloud CLI ends")
    }

    /// A client with the instance admin key.
    pub fn admin(&self) -> Client {
        Client::builder()
            .base_url(self.url())
            .api_key(&self.admin_key)
            .build()
            .unwrap()
    }

    /// Creates `app` and a key for it with `scopes`; returns a client with that key.
    pub async fn create_app(&self, app: &str, scopes: &[Scope]) -> Client {
        let admin = self.admin();
        admin
            .apps()
            .create(CreateApp::new(app).name(app))
            .await
            .expect("create app");
        let key = admin
            .with_app(app)
            .keys()
            .create(CreateAppKey::new("backend", scopes.iter().cloned()))
            .await
            .expect("create key");
        Client::builder()
            .base_url(self.url())
            .app(app)
            .api_key(key.key)
            .build()
            .unwrap()
    }

    /// Creates `app` with an `app:admin` key.
    pub async fn app_admin(&self, app: &str) -> Client {
        self.create_app(app, &[Scope::AppAdmin]).await
    }
}

impl Drop for PicloudServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if let (Backend::Postgres(admin_url), Some(name)) = (&self.backend, &self.pg_database) {
            // The server is gone (or going): force its connections out.
            run_psql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}
