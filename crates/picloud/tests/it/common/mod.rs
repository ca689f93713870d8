//! Spawning the real application for end-to-end tests, like zero2prod's `spawn_app`:
//! `build_app` on a random loopback port, talked to over HTTP.

#![allow(dead_code)]

pub mod raw;
pub mod sink;
pub mod sse;

use std::net::SocketAddr;

use picloud::config::ServeArgs;
use picloud::server::build_app;
use picloud_manager_core::testing::TestDb;
use reqwest::{Method, Response};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The instance key created at first start.
    pub admin_key: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// Its database (kept alive for the test).
    pub t: TestDb,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

/// Starts the application on `t`'s database.
pub async fn spawn_app(t: TestDb) -> TestApp {
    spawn_app_with(t, ServeArgs::for_tests()).await
}

/// Starts the application on `t`'s database with custom serve settings.
pub async fn spawn_app_with(t: TestDb, args: ServeArgs) -> TestApp {
    let app = build_app(t.db.clone(), &args).await.expect("build app");
    let admin_key = app
        .bootstrap_key()
        .expect("a fresh database bootstraps an instance key")
        .secret
        .clone();
    run_app(app, t, admin_key)
}

/// Starts the application again on a database a stopped one used (its pool is closed:
/// this reconnects). The instance key is not shown again, so `admin_key` is empty.
pub async fn spawn_existing(t: TestDb, args: ServeArgs) -> TestApp {
    let db = t.reconnect().await;
    let t = TestDb {
        db,
        url: t.url,
        dir: t.dir,
    };
    let app = build_app(t.db.clone(), &args).await.expect("build app");
    run_app(app, t, String::new())
}

fn run_app(app: picloud::server::Application, t: TestDb, admin_key: String) -> TestApp {
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let server = tokio::spawn(async move { app.run(token).await.expect("server runs") });
    TestApp {
        addr,
        admin_key,
        client: reqwest::Client::new(),
        t,
        shutdown,
        server,
    }
}

impl TestApp {
    /// Another node on the same database, as in a cluster.
    pub async fn second_node(&self) -> TestApp {
        let t = self.t.another_node(self.t.url.clone());
        let app = build_app(t.db.clone(), &ServeArgs::for_tests())
            .await
            .expect("build second node");
        run_app(app, t, self.admin_key.clone())
    }

    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with an optional bearer key and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// Sends a request and returns its status and JSON body (`Null` if empty, a JSON
    /// string if the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.send(method, path, key, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Creates an app as the instance admin.
    pub async fn create_app(&self, id: &str) {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/apps",
                Some(&self.admin_key),
                Some(serde_json::json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Creates a key of `app` with `scopes` and returns its secret.
    /// The runs of app `shop`'s script `name` once `done` holds of them (the run log is
    /// written moments after each run ends), or as they are after ten seconds.
    pub async fn script_runs_once(
        &self,
        key: &str,
        name: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let path = format!("/v1/apps/shop/scripts/{name}/runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, body) = self.call(Method::GET, &path, Some(key), None).await;
            assert_eq!(status, 200, "{body}");
            let runs = body["runs"].as_array().unwrap().clone();
            if done(&runs) || std::time::Instant::now() > deadline {
                return runs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn create_key(&self, app: &str, scopes: &[&str]) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/v1/apps/{app}/keys"),
                Some(&self.admin_key),
                Some(serde_json::json!({"name": "test", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["key"].as_str().expect("key in response").to_owned()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        self.server.await.expect("server task");
        self.t
    }
}

/// A signed-in dashboard admin, as a browser holds it.
#[derive(Debug, Clone)]
pub struct AdminSession {
    /// The `Cookie` header value (`picloud_session=…`).
    pub cookie: String,
    /// The session's CSRF token.
    pub csrf: String,
}

/// The password tests give admins.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Sends `request` and returns its status, headers and JSON body (`Null` if empty, a
    /// JSON string if not JSON).
    pub async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, json)
    }

    /// Creates a dashboard admin directly in the database.
    pub async fn create_admin(&self, email: &str, password: &str) {
        let hash = picloud_manager_core::admins::hash_password(password).unwrap();
        self.t
            .db
            .create_admin(email, &hash)
            .await
            .expect("create admin");
    }

    /// Signs `email` in through the API; panics unless it succeeds.
    pub async fn sign_in(&self, email: &str, password: &str) -> AdminSession {
        let (status, headers, body) = self
            .exchange(
                self.client
                    .post(self.url("/v1/admin/session"))
                    .json(&serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let set_cookie = headers["set-cookie"].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        AdminSession {
            cookie,
            csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
        }
    }

    /// Creates an admin and signs them in.
    pub async fn admin_session(&self) -> AdminSession {
        self.create_admin("root@example.com", ADMIN_PASSWORD).await;
        self.sign_in("root@example.com", ADMIN_PASSWORD).await
    }

    /// A request as a signed-in admin: the cookie, and the CSRF token unless `csrf` is
    /// false.
    pub fn as_admin(
        &self,
        method: Method,
        path: &str,
        session: &AdminSession,
        csrf: bool,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, self.url(path))
            .header("cookie", &session.cookie);
        if csrf {
            request.header("x-csrf-token", &session.csrf)
        } else {
            request
        }
    }
}

/// The `error.code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// A running `picloud serve` process (the real binary) with its output.
pub struct Server {
    child: tokio::process::Child,
    /// Where it listens.
    pub addr: String,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stdout_task: JoinHandle<()>,
}

impl Server {
    /// Starts `picloud serve --bind 127.0.0.1:0 ARGS…` and waits until it listens.
    pub async fn start(args: &[&str]) -> Server {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("PICLOUD_DATABASE_URL")
            .env("PICLOUD_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn picloud serve");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        let stdout_task = tokio::spawn(async move {
            while let Ok(Some(line)) = out_lines.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if let Some(rest) = line.split("addr=").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server listens within a minute");
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        Server {
            child,
            addr,
            stdout,
            stdout_task,
        }
    }

    /// What it printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The bootstrap key it printed, if any.
    pub fn printed_key(&self) -> Option<String> {
        self.stdout()
            .split_whitespace()
            .find(|w| w.starts_with("pk_") && w.len() == 46)
            .map(str::to_owned)
    }

    /// Sends `body` with `method` to `path` as `key`, asserts a 2xx and returns the
    /// JSON answer (`Null` when empty).
    pub async fn send(&self, method: Method, path: &str, key: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_success(), "{path}: {status}");
        let text = response.text().await.unwrap();
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory now, in bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// The bootstrap key, once the server has printed it (a fresh database prints one).
    pub async fn bootstrap_key(&self) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(key) = self.printed_key() {
                return key;
            }
            assert!(tokio::time::Instant::now() < deadline, "no key printed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn crash(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// Waits for exit (bounded) and returns the exit code; stdout is complete afterwards.
    pub async fn wait(&mut self) -> i32 {
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        let _ = (&mut self.stdout_task).await;
        status.code().unwrap_or(-1)
    }
}
