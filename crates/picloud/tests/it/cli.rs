//! The real `picloud` binary: CLI commands, configuration errors, first start and
//! graceful shutdown.

use crate::common::Server;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_picloud");

/// Runs the binary to completion; returns exit code, stdout, stderr.
async fn picloud(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("PICLOUD_DATABASE_URL")
        .env_remove("PICLOUD_BIND")
        .output()
        .await
        .expect("run picloud");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a `--json` command that must succeed and parses its last line.
async fn picloud_json(db_url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--database-url", db_url];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = picloud(&all).await;
    assert_eq!(code, 0, "picloud {args:?}: {stdout}{stderr}");
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|_| panic!("last line is not JSON: {last}"))
}

backend_test!(apps_and_keys_commands);
async fn apps_and_keys_commands(t: TestDb) {
    let url = t.url.clone();
    let app = picloud_json(&url, &["apps", "create", "shop", "--name", "My Shop"]).await;
    assert_eq!(
        (app["id"].as_str(), app["name"].as_str()),
        (Some("shop"), Some("My Shop"))
    );
    let list = picloud_json(&url, &["apps", "list"]).await;
    assert_eq!(list["apps"][0]["id"], "shop");

    let ops = picloud_json(&url, &["keys", "create", "--instance", "--name", "ops"]).await;
    assert!(ops["key"].as_str().unwrap().starts_with("pk_"));
    assert_eq!(ops["scopes"], serde_json::json!(["instance:admin"]));

    let web = picloud_json(
        &url,
        &[
            "keys",
            "create",
            "--app",
            "shop",
            "--name",
            "web",
            "--scope",
            "pubsub:publish",
            "--scope",
            "app:read",
        ],
    )
    .await;
    assert_eq!(web["app"], "shop");
    let keys = picloud_json(&url, &["keys", "list", "--app", "shop"]).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert!(
        !keys.to_string().contains(web["key"].as_str().unwrap()),
        "secrets are never listed"
    );
    let revoked = picloud_json(
        &url,
        &[
            "keys",
            "revoke",
            web["id"].as_str().unwrap(),
            "--app",
            "shop",
        ],
    )
    .await;
    assert!(revoked["revoked_at"].is_i64());

    let deleted = picloud_json(&url, &["apps", "delete", "shop"]).await;
    assert_eq!(deleted["deleted"], "shop");
    let (code, _, stderr) = picloud(&["--database-url", &url, "apps", "delete", "shop"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("app 'shop' not found"), "{stderr}");
}

/// Runs the binary with `stdin` as its standard input.
async fn picloud_with_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("PICLOUD_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run picloud");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

backend_test!(admins_commands_and_signing_in_with_the_result);
async fn admins_commands_and_signing_in_with_the_result(t: TestDb) {
    let url = t.url.clone();
    let create = |email: &'static str, password: &'static str| {
        let url = url.clone();
        async move {
            picloud_with_stdin(
                &[
                    "--database-url",
                    &url,
                    "admins",
                    "create",
                    "--email",
                    email,
                    "--password-stdin",
                    "--json",
                ],
                password,
            )
            .await
        }
    };
    let (code, stdout, stderr) = create("Ada@Example.com", "a long enough password\n").await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let created: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(created["email"], "ada@example.com");
    assert!(!stdout.contains("argon2"), "the hash is never printed");
    let stored: String = picloud_manager_core::on_db!(&t.db, pool, {
        sqlx::query_scalar("SELECT password_hash FROM admins")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(stored.starts_with("$argon2id$"), "{stored}");

    let (code, _, stderr) = create("ada@example.com", "another long password\n").await;
    assert_eq!(code, 1);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (code, _, stderr) = create("bob@example.com", "short\n").await;
    assert_eq!(code, 1);
    assert!(stderr.contains("at least 10 characters"), "{stderr}");
    let (code, _, stderr) = create("not-an-email", "a long enough password\n").await;
    assert_eq!(code, 1);
    assert!(stderr.contains("not an email address"), "{stderr}");

    let list = picloud_json(&url, &["admins", "list"]).await;
    let emails: Vec<&str> = list["admins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ada@example.com"]);
    assert!(!list.to_string().contains("argon2"));

    // The server signs the created admin in with that password.
    let data_dir = t.data_dir();
    let server = Server::start(&[
        "--database-url",
        &url,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    let client = reqwest::Client::new();
    let sign_in = |password: &'static str| {
        client
            .post(format!("http://{}/v1/admin/session", server.addr))
            .json(&serde_json::json!({"email": "ADA@example.com", "password": password}))
            .send()
    };
    assert_eq!(
        sign_in("a long enough password")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        sign_in("a long enough passwor")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    server.terminate();

    let deleted = picloud_json(&url, &["admins", "delete", "--email", "ada@example.com"]).await;
    assert_eq!(deleted["deleted"], "ada@example.com");
    let (code, _, stderr) = picloud(&[
        "--database-url",
        &url,
        "admins",
        "delete",
        "--email",
        "ada@example.com",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no admin with email"), "{stderr}");
}

backend_test!(admins_unlock_clears_failures_and_the_lock);
async fn admins_unlock_clears_failures_and_the_lock(t: TestDb) {
    let url = t.url.clone();
    let (code, stdout, stderr) = picloud_with_stdin(
        &[
            "--database-url",
            &url,
            "admins",
            "create",
            "--email",
            "ada@example.com",
            "--password-stdin",
        ],
        "a long enough password\n",
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let locked_until = picloud_shared::time::now_ms() + 10 * 60 * 1000;
    picloud_manager_core::on_db!(&t.db, pool, {
        sqlx::query("UPDATE admins SET failed_attempts = 7, locked_until = $1")
            .bind(locked_until)
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });

    let unlocked = picloud_json(&url, &["admins", "unlock", "--email", "ADA@example.com"]).await;
    assert_eq!(
        unlocked,
        serde_json::json!({"unlocked": "ada@example.com", "cleared_failed_attempts": 7, "was_locked_until": locked_until})
    );
    let list = picloud_json(&url, &["admins", "list"]).await;
    assert_eq!(
        (
            list["admins"][0]["failed_attempts"].as_i64(),
            list["admins"][0]["locked_until"].as_i64()
        ),
        (Some(0), None)
    );

    // The server lets the admin in again at once.
    let data_dir = t.data_dir();
    let server = Server::start(&[
        "--database-url",
        &url,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    let status = reqwest::Client::new()
        .post(format!("http://{}/v1/admin/session", server.addr))
        .json(
            &serde_json::json!({"email": "ada@example.com", "password": "a long enough password"}),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    server.terminate();

    let (code, stdout, _) = picloud(&[
        "--database-url",
        &url,
        "admins",
        "unlock",
        "--email",
        "ada@example.com",
    ])
    .await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("unlocked admin ada@example.com: cleared 0 failed sign-ins"),
        "{stdout}"
    );
    let (code, _, stderr) = picloud(&[
        "--database-url",
        &url,
        "admins",
        "unlock",
        "--email",
        "bob@example.com",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no admin with email"), "{stderr}");
}

/// Runs the binary with extra environment variables; returns exit code, stdout, stderr.
async fn picloud_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("PICLOUD_DATABASE_URL")
        .env_remove("PICLOUD_BIND")
        .env_remove("PICLOUD_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run picloud");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_configuration_exits_with_code_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--bind", "not-an-address"],
            "invalid value 'not-an-address'",
        ),
        (
            vec!["--database-url", "mysql://u@h/db", "migrate"],
            "unsupported database URL",
        ),
        (vec!["apps", "create", "Bad App"], "lowercase"),
        (vec!["serve", "--max-body-bytes", "12"], "--max-body-bytes"),
        (vec!["keys", "create", "--name", "x"], "required"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (
            vec!["serve", "--webhook-allow-cidrs", "10.0.0.0/33"],
            "--webhook-allow-cidrs",
        ),
        (vec!["serve", "--dispatch-backoff-scale=-1"], "not a factor"),
        (vec!["serve", "--master-key", "too-short"], "32 bytes"),
        // CORS origins a browser could never send in `Origin`.
        (
            vec!["serve", "--cors-origins", "https://app.example/"],
            "write it as 'https://app.example'",
        ),
        (
            vec!["serve", "--cors-origins", "app.example"],
            "--cors-origins",
        ),
        (
            vec![
                "serve",
                "--cors-origins",
                "https://ok.example,ftp://files.example",
            ],
            "http or https",
        ),
        (
            vec!["serve", "--cors-origins", "*,https://a.example"],
            "stand alone",
        ),
        (
            vec!["serve", "--cors-origins", "https://App.Example:443"],
            "write it as 'https://app.example'",
        ),
        // Settings that do not fit together.
        (
            vec![
                "serve",
                "--dispatch-lease-sec",
                "15",
                "--webhook-timeout-sec",
                "15",
            ],
            "must exceed",
        ),
        (
            vec![
                "serve",
                "--subscriber-token-ttl-min-sec",
                "600",
                "--subscriber-token-ttl-max-sec",
                "60",
            ],
            "min <= default <= max",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["--data-dir", data_dir];
        all.extend(args.iter().copied());
        let (code, stdout, stderr) = picloud(&all).await;
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let env_cases: [(&str, &str, &str); 4] = [
        ("PICLOUD_BIND", "nope", "--bind"),
        (
            "PICLOUD_CORS_ORIGINS",
            "http://localhost:5173/",
            "http://localhost:5173'",
        ),
        ("PICLOUD_LOG", "picloud=loudest", "PICLOUD_LOG"),
        ("RUST_LOG", "info,sqlx=chatty", "RUST_LOG"),
    ];
    for (variable, value, expected) in env_cases {
        let (code, stdout, stderr) =
            picloud_with_env(&["--data-dir", data_dir, "serve"], &[(variable, value)]).await;
        assert_eq!(code, 2, "{variable}={value}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{variable}={value}: {stderr}");
    }
    assert!(
        !dir.path().join("picloud.db").exists(),
        "a refused configuration creates no database"
    );
}

/// Starts `serve` with `env` on a free loopback port, waits until it answers, stops it
/// and returns what it logged.
async fn serve_log(data_dir: &str, env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--data-dir", data_dir, "serve", "--bind", &bind])
        .env_remove("PICLOUD_DATABASE_URL")
        .env_remove("PICLOUD_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while client
        .get(format!("http://{bind}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn rust_log_sets_the_log_filter_unless_picloud_log_does() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let quiet = serve_log(data_dir, &[("RUST_LOG", "warn")]).await;
    assert!(!quiet.contains("PiCloud listening"), "{quiet}");
    let chosen = serve_log(data_dir, &[("RUST_LOG", "warn"), ("PICLOUD_LOG", "info")]).await;
    assert!(chosen.contains("PiCloud listening"), "{chosen}");
}

#[tokio::test]
async fn commands_other_than_serve_and_migrate_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("elsewhere");
    let data_dir = data_dir.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["apps", "list"],
        &["keys", "list", "--instance"],
        &["admins", "list"],
        &["apps", "create", "shop"],
    ];
    for command in commands {
        let mut args = vec!["--data-dir", data_dir];
        args.extend_from_slice(command);
        let (code, stdout, stderr) = picloud(&args).await;
        assert_eq!(code, 1, "{command:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("no PiCloud database at")
                && stderr.contains(data_dir)
                && stderr.contains("--data-dir")
                && stderr.contains("--database-url"),
            "{command:?}: {stderr}"
        );
        assert!(
            !std::path::Path::new(data_dir).exists(),
            "{command:?} created {data_dir}"
        );
    }
    // `migrate` creates it, and says where; then the others use it.
    let (code, _, stderr) = picloud(&["--data-dir", data_dir, "migrate"]).await;
    assert_eq!(code, 0, "{stderr}");
    let file = std::path::Path::new(data_dir).join("picloud.db");
    assert!(
        stderr.contains(&format!("database: sqlite://{}", file.display())),
        "{stderr}"
    );
    let (code, stdout, stderr) = picloud(&["--data-dir", data_dir, "apps", "list", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("database: sqlite://{}", file.display())),
        "{stderr}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        serde_json::json!({"apps": []})
    );

    // A PostgreSQL URL is named without its password.
    let (code, _, stderr) = picloud(&[
        "--database-url",
        "postgres://picloud:hunter22@127.0.0.1:1/picloud",
        "--database-acquire-timeout-sec",
        "1",
        "apps",
        "list",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("database: postgres://picloud:***@127.0.0.1:1/picloud"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter22"), "{stderr}");
}

backend_test!(apps_list_aligns_its_columns_and_admins_create_names_the_dashboard);
async fn apps_list_aligns_its_columns_and_admins_create_names_the_dashboard(t: TestDb) {
    let url = t.url.clone();
    let long_id = "an-app-id-of-fifty-characters-well-past-forty-cols";
    for (id, name) in [("ab", "Short"), (long_id, "Long"), ("mid-size", "Middle")] {
        picloud_json(&url, &["apps", "create", id, "--name", name]).await;
    }
    let (code, stdout, stderr) = picloud(&["--database-url", &url, "apps", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let name_columns: Vec<usize> = lines
        .iter()
        .map(|line| {
            ["NAME", "Short", "Long", "Middle"]
                .iter()
                .find_map(|name| line.find(name))
                .unwrap_or_else(|| panic!("no name in {line}"))
        })
        .collect();
    assert!(
        name_columns.iter().all(|c| *c == name_columns[0]),
        "{stdout}"
    );
    assert!(name_columns[0] > long_id.len(), "{stdout}");

    let create = |email: &'static str, bind: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut command = Command::new(BIN);
            command
                .args([
                    "--database-url",
                    &url,
                    "admins",
                    "create",
                    "--email",
                    email,
                    "--password-stdin",
                ])
                .env_remove("PICLOUD_BIND")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if let Some(bind) = bind {
                command.env("PICLOUD_BIND", bind);
            }
            let mut child = command.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"a long enough password\n")
                .await
                .unwrap();
            let output = child.wait_with_output().await.unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    let default = create("ada@example.com", None).await;
    assert!(
        default.contains("http://127.0.0.1:8080/_/") && !default.contains("ADDRESS"),
        "{default}"
    );
    let bound = create("bob@example.com", Some("127.0.0.1:9090")).await;
    assert!(bound.contains("http://127.0.0.1:9090/_/"), "{bound}");
}

#[tokio::test]
async fn first_start_prints_a_working_key_once_and_sigterm_drains_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();

    let mut server = Server::start(&["--data-dir", data_dir]).await;
    assert!(
        std::path::Path::new(data_dir).join("picloud.db").exists(),
        "SQLite file created in the data dir"
    );
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let key = server
        .printed_key()
        .unwrap_or_else(|| panic!("first start prints the key: {}", server.stdout()));
    let banner = server.stdout();
    assert!(
        banner.contains(&format!("http://{}/_/", server.addr))
            && banner.contains("picloud admins create --email"),
        "the banner says where the dashboard is and how to get an admin: {banner}"
    );

    // A request is in flight when SIGTERM arrives: its handler is reading the body (the
    // server said `100 Continue`), and the body only follows the signal.
    let body = br#"{"id":"shop"}"#;
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /v1/apps HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    server.terminate();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.trim_start().starts_with("HTTP/1.1 201"),
        "the in-flight request completed: {response}"
    );
    assert_eq!(server.wait().await, 0, "graceful exit");

    // Second start: no new key printed, and the printed one works.
    let mut server = Server::start(&["--data-dir", data_dir]).await;
    let apps = client
        .get(format!("http://{}/v1/apps", server.addr))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(apps.status().as_u16(), 200);
    server.terminate();
    assert_eq!(server.wait().await, 0);
    assert!(
        !server.stdout().contains("pk_"),
        "the key is printed only once: {}",
        server.stdout()
    );
}

#[tokio::test]
async fn sigterm_as_soon_as_it_says_listening_is_a_graceful_exit() {
    // A supervisor may stop the server the moment it reports ready; the signal must find
    // the handler already installed, not the default action (death by SIGTERM).
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut server = Server::start(&["--data-dir", data_dir.to_str().unwrap()]).await;
        server.terminate();
        assert_eq!(server.wait().await, 0, "graceful exit");
    }
}

backend_test!(rotate_master_key_reseals_and_only_the_new_key_starts_after);
async fn rotate_master_key_reseals_and_only_the_new_key_starts_after(t: TestDb) {
    use picloud_manager_core::secret_box::MasterKey;
    use picloud_manager_core::triggers::{
        Handler, NewTrigger, TopicPattern, TriggerSource, WebhookUrl,
    };
    let shop = picloud_shared::AppId::parse("shop").unwrap();
    t.db.create_app(&shop, "Shop").await.unwrap();
    let created =
        t.db.create_trigger(
            &shop,
            NewTrigger::new(
                TriggerSource::Topic {
                    topic: TopicPattern::parse("orders").unwrap(),
                },
                Handler::Webhook {
                    url: WebhookUrl::parse("https://example.com/hook").unwrap(),
                },
            ),
        )
        .await
        .unwrap();
    let old = t.master_key();
    let data_dir = t.data_dir();
    let data_dir = data_dir.to_str().unwrap();

    // A generated key replaces the key file.
    let rotated = picloud_json(
        &t.url,
        &["--data-dir", data_dir, "secrets", "rotate-master-key"],
    )
    .await;
    assert_eq!(rotated["old_key_id"], old.id());
    let new = t.master_key();
    assert_ne!(new.id(), old.id());
    assert_eq!(rotated["new_key_id"], new.id());
    assert_eq!(rotated["resealed"], 1);
    let with_old = picloud_manager_core::Db::connect(&t.url, picloud_manager_core::db::PoolSize(1))
        .await
        .unwrap();
    let error = with_old.unlock_secrets(old.clone()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot open this database's secrets"),
        "{error}"
    );
    let db = t.reconnect().await;
    assert_eq!(
        db.trigger_secret("shop", &created.trigger.id)
            .await
            .unwrap(),
        created.secret
    );

    // A key from --new-key-file is used as given.
    let given = MasterKey::generate();
    let given_file = t.dir.path().join("given.key");
    given.write_new_file(&given_file).unwrap();
    let rotated = picloud_json(
        &t.url,
        &[
            "--data-dir",
            data_dir,
            "secrets",
            "rotate-master-key",
            "--new-key-file",
            given_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(rotated["new_key_id"], given.id());
    assert_eq!(
        t.master_key().id(),
        given.id(),
        "the key file in use follows"
    );
    let db = t.reconnect().await;
    assert_eq!(
        db.trigger_secret("shop", &created.trigger.id)
            .await
            .unwrap(),
        created.secret
    );
}

backend_test!(serve_with_a_master_key_the_database_does_not_know_fails_and_says_why);
async fn serve_with_a_master_key_the_database_does_not_know_fails_and_says_why(t: TestDb) {
    let data_dir = t.data_dir();
    let other = picloud_manager_core::secret_box::MasterKey::generate();
    let output = Command::new(BIN)
        .args([
            "--database-url",
            t.url.as_str(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ])
        .env_remove("PICLOUD_DATABASE_URL")
        .env("PICLOUD_MASTER_KEY", other.to_base64().as_str())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open this database's secrets"),
        "{stderr}"
    );
    assert!(
        stderr.contains(other.id()) && stderr.contains(t.master_key().id()),
        "{stderr}"
    );
    assert!(
        !stderr.contains(other.to_base64().as_str()),
        "the key is never printed"
    );
}

#[tokio::test]
async fn every_metric_the_binary_exports_has_help_text() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = Server::start(&["--data-dir", data_dir]).await;
    let admin = server.bootstrap_key().await;
    // Traffic that touches the API, publishing and the realtime layer.
    server
        .send(
            Method::POST,
            "/v1/apps",
            &admin,
            serde_json::json!({"id": "shop"}),
        )
        .await;
    let created = server
        .send(
            Method::POST,
            "/v1/apps/shop/keys",
            &admin,
            serde_json::json!({"name": "backend", "scopes": ["app:admin"]}),
        )
        .await;
    let key = created["key"].as_str().unwrap();
    let topic = serde_json::json!({"name": "news", "auth_mode": "public"});
    server
        .send(Method::POST, "/v1/apps/shop/topics", key, topic)
        .await;
    let external = serde_json::json!({"external_subscribable": true});
    server
        .send(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            key,
            external,
        )
        .await;
    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!(
            "http://{}/v1/apps/shop/realtime?topic=news",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let event = serde_json::json!({"type": "note", "data": {"n": 1}});
    server
        .send(Method::POST, "/v1/apps/shop/topics/news/events", key, event)
        .await;
    // The hello frame and the event: the stream has been served and counted.
    let mut seen = String::new();
    while !seen.contains("event: note") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
            .await
            .expect("frames arrive")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let metrics = client
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let typed: Vec<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(
        typed.contains(&"picloud_realtime_streams")
            && typed.contains(&"picloud_http_requests_total"),
        "the traffic shows in the metrics: {metrics}"
    );
    let undescribed: Vec<&&str> = typed
        .iter()
        .filter(|name| !metrics.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(
        undescribed.is_empty(),
        "metrics without HELP: {undescribed:?}"
    );
    drop(stream);
    server.terminate();
}

#[tokio::test]
async fn failed_webhook_attempts_are_logged_at_warn_without_url_or_secret() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["--data-dir", data_dir, "serve", "--bind", "127.0.0.1:0"])
        .args(["--webhook-allow-private", "true"])
        .env_remove("PICLOUD_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("PICLOUD_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let within = |what: &'static str| {
        move |elapsed: Result<_, tokio::time::error::Elapsed>| {
            elapsed.unwrap_or_else(|_| panic!("{what} within 30 s"))
        }
    };
    let limit = std::time::Duration::from_secs(30);
    let addr = within("the server listens")(
        tokio::time::timeout(limit, async {
            loop {
                let line = log.next_line().await.unwrap().expect("server running");
                if let Some(rest) = line.split("addr=").nth(1) {
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
            }
        })
        .await,
    );
    let admin = within("the bootstrap key")(
        tokio::time::timeout(limit, async {
            loop {
                let line = stdout.next_line().await.unwrap().expect("server running");
                if let Some(key) = line.split_whitespace().find(|w| w.starts_with("pk_")) {
                    break key.to_owned();
                }
            }
        })
        .await,
    );
    let client = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        client
            .post(format!("http://{addr}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    post("/v1/apps", &admin, serde_json::json!({"id": "shop"}))
        .await
        .unwrap();
    let created: Value = post(
        "/v1/apps/shop/keys",
        &admin,
        serde_json::json!({"name": "b", "scopes": ["app:admin"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    // A receiver that is not there: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook?token=url-secret-42");
    let trigger = post(
        "/v1/apps/shop/triggers",
        &key,
        serde_json::json!({"source": {"kind": "topic", "topic": "orders"}, "handler": {"kind": "webhook", "url": url}}),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let trigger: Value = serde_json::from_str(&trigger).unwrap();
    let trigger_id = trigger["id"].as_str().unwrap().to_owned();
    let signing_secret = trigger.to_string();
    let signing_secret = signing_secret
        .split('"')
        .find(|s| s.starts_with("whsec_"))
        .expect("the answer holds the signing secret")
        .to_owned();
    post(
        "/v1/apps/shop/topics/orders/events",
        &key,
        serde_json::json!({"data": 1}),
    )
    .await
    .unwrap();

    let line = within("a failed attempt is logged")(
        tokio::time::timeout(limit, async {
            loop {
                let line = log.next_line().await.unwrap().expect("server running");
                if line.contains("webhook delivery attempt failed") {
                    break line;
                }
            }
        })
        .await,
    );
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("app=shop") && line.contains(&format!("trigger={trigger_id}")),
        "{line}"
    );
    assert!(line.contains("connection failed"), "{line}");
    assert!(
        !line.contains("url-secret-42") && !line.contains(&signing_secret),
        "{line}"
    );
}

/// `picloud sources install` creates the outbox schema once and is a no-op after; it
/// needs no PiCloud database at all. `sources sql` prints what it applies.
#[tokio::test]
async fn sources_commands_install_the_outbox_schema_once() {
    let (code, sql, _) = picloud(&["sources", "sql", "--schema", "shop_events"]).await;
    assert_eq!(code, 0);
    assert!(
        sql.contains("CREATE SCHEMA IF NOT EXISTS shop_events;"),
        "{sql}"
    );
    assert!(sql.contains("shop_events.publish("), "{sql}");
    let (code, _, stderr) = picloud(&["sources", "sql", "--schema", "Bad;Name"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("schema 'Bad;Name'"), "{stderr}");

    let Some(url) = picloud_manager_core::testing::app_database().await else {
        eprintln!("skipped: needs a test PostgreSQL server");
        return;
    };
    let dir = tempfile::tempdir().unwrap(); // no PiCloud database is created here
    let install = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "sources",
        "install",
        "--database-url",
        &url,
    ];
    let (code, stdout, stderr) = picloud(&install).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("version 0 -> 1"), "{stdout}");
    let (code, stdout, _) = picloud(&install).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("up to date (version 1)"), "{stdout}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
