//! HTTP functions end to end: a public script mints a subscriber token for the app's own
//! signed-in user and a browser streams with it; key scripts need functions:invoke;
//! scripts publish through the normal path; failures are generic 500s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::sse::Subscribe;
use crate::common::{code, spawn_app, spawn_app_with, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use picloud_shared::realtime::{RealtimeStore as _, SUBSCRIBER_TOKEN_PURPOSE};
use picloud_shared::AppId;

/// The app's own session secret (the app, not PiCloud, signs its users' sessions).
const SESSION_SECRET: &str = "the-apps-own-session-secret";

/// A session token the app would give its signed-in user `sub`.
fn app_session(sub: &str) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = picloud_shared::time::now_ms() / 1000 + 600;
    let body = URL_SAFE_NO_PAD.encode(json!({"sub": sub, "exp": exp}).to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(SESSION_SECRET.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

const MINT: &str = r#"
fn handle(req) {
    let session = req.headers["authorization"];
    let claims = crypto::verify_hs256_jwt(session.sub_string(7), "the-apps-own-session-secret");
    let token = pubsub::subscriber_token(["chat"], 600, claims.sub);
    #{ status: 200, headers: #{ "cache-control": "no-store" }, body: #{ token: token } }
}
"#;

/// Saves `source` as script `name` with `access`.
async fn save(app: &TestApp, key: &str, name: &str, source: &str, access: &str) {
    let path = format!("/v1/apps/shop/scripts/{name}");
    let body = json!({"source": source, "access": access});
    let (status, saved) = app.call(Method::PUT, &path, Some(key), Some(body)).await;
    assert_eq!(status, 200, "{saved}");
}

/// Calls function `name` with `authorization` and a JSON `body`.
async fn call(
    app: &TestApp,
    name: &str,
    authorization: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/apps/shop/functions/{name}?x=1")))
        .json(&body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

backend_test!(a_public_function_mints_a_token_a_browser_streams_with);
async fn a_public_function_mints_a_token_a_browser_streams_with(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&admin),
            Some(json!({"name": "chat"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/chat/external",
            Some(&admin),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200);
    save(&app, &admin, "mint_token", MINT, "public").await;

    // The browser calls with the app's own session, no PiCloud key.
    let session = format!("Bearer {}", app_session("user-7"));
    let (status, headers, body) = call(&app, "mint_token", Some(&session), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-security-policy"], "sandbox");
    let token = body["token"].as_str().expect("a token").to_owned();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&claims["sub"], &claims["app"]),
        (&json!("user-7"), &json!("shop"))
    );
    assert_eq!(claims["topics"], json!(["chat"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    // PyJWT, an independent implementation apps use, accepts it with the app's key and
    // reads the same claims.
    let keys = app
        .t
        .db
        .signing_keys(&AppId::parse("shop").unwrap(), SUBSCRIBER_TOKEN_PURPOSE)
        .await
        .unwrap();
    let key = keys.last().expect("the app has a signing key");
    assert_eq!(pyjwt_decode(&token, &key.secret), claims);

    let mut stream = app
        .subscribe(
            "shop",
            &["chat"],
            Subscribe {
                token: Some(&token),
                ..Default::default()
            },
        )
        .await
        .expect("the minted token streams");
    stream.expect("hello").await;

    // A forged session: the script throws; the caller gets a generic 500 and an id.
    let forged = format!("Bearer {}x", app_session("user-7"));
    let (status, headers, body) = call(&app, "mint_token", Some(&forged), json!({})).await;
    assert_eq!((status, code(&body)), (500, "internal"), "{body}");
    assert!(!body.to_string().contains("signature"), "{body}");
    assert!(headers.contains_key("x-request-id"));
}

backend_test!(key_functions_need_functions_invoke_and_scripts_publish);
async fn key_functions_need_functions_invoke_and_scripts_publish(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    let invoker = app.create_key("shop", &["functions:invoke"]).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let source = r#"
        fn handle(req) {
            let seq = pubsub::publish("orders", "created", req.json, req.headers["x-key"]);
            #{ seq: seq, method: req.method, q: req.query.x }
        }
    "#;
    save(&app, &admin, "place_order", source, "key").await;

    let (status, _, body) = call(&app, "place_order", None, json!({"id": 1})).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let bearer = |key: &str| format!("Bearer {key}");
    let (status, _, body) = call(&app, "place_order", Some(&bearer(&reader)), json!({})).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    let request = |key: &'static str| {
        app.client
            .post(app.url("/v1/apps/shop/functions/place_order?x=1"))
            .bearer_auth(&invoker)
            .header("x-key", key)
            .json(&json!({"id": 1}))
    };
    let first: Value = request("order-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, json!({"seq": 1, "method": "POST", "q": "1"}));
    // The idempotency key dedupes a retry, as on the HTTP API.
    let retry: Value = request("order-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retry["seq"], 1);
    let (_, events) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events",
            Some(&admin),
            None,
        )
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"], json!({"id": 1}));

    let (status, _, body) = call(&app, "nothing_here", Some(&bearer(&invoker)), json!({})).await;
    assert_eq!((status, code(&body)), (404, "script_not_found"), "{body}");
}

backend_test!(failing_and_misbehaving_functions_are_generic_500s);
async fn failing_and_misbehaving_functions_are_generic_500s(t: TestDb) {
    let mut args = picloud::config::ServeArgs::for_tests();
    args.script_timeout_ms = 200;
    let app = crate::common::spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    for (name, source) in [
        ("spins", "fn handle(req) { loop { } }"),
        ("throws", r#"fn handle(req) { throw "secret detail"; }"#),
        (
            "cookie",
            r#"fn handle(req) { #{ status: 200, headers: #{ "set-cookie": "a=b" } } }"#,
        ),
        ("bad_status", "fn handle(req) { #{ status: 42 } }"),
        ("no_handle", "40 + 2"),
    ] {
        save(&app, &admin, name, source, "public").await;
        let (status, _, body) = call(&app, name, None, json!({})).await;
        assert_eq!((status, code(&body)), (500, "internal"), "{name}: {body}");
        assert!(!body.to_string().contains("secret detail"), "{body}");
    }
    // Text bodies are sent as text, with the status asked for.
    save(
        &app,
        &admin,
        "text",
        r#"fn handle(req) { #{ status: 201, body: "made" } }"#,
        "public",
    )
    .await;
    let (status, headers, body) = call(&app, "text", None, json!({})).await;
    assert_eq!((status, body), (201, json!("made")));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

backend_test!(scripts_never_see_picloud_credentials);
async fn scripts_never_see_picloud_credentials(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    save(
        &app,
        &admin,
        "echo",
        "fn handle(req) { req.headers }",
        "public",
    )
    .await;
    let session = app.admin_session().await;
    // A signed-in admin's browser calling a public function, and a key holder.
    let cookie = format!("{}; theme=dark", session.cookie);
    let seen: Value = app
        .client
        .get(app.url("/v1/apps/shop/functions/echo"))
        .header("cookie", &cookie)
        .header("x-app", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["x-app"], "1", "{seen}");
    assert!(seen.get("cookie").is_none(), "{seen}");
    for scheme in ["Bearer", "bearer"] {
        let seen: Value = app
            .client
            .get(app.url("/v1/apps/shop/functions/echo"))
            .header("authorization", format!("{scheme} {admin}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(seen.get("authorization").is_none(), "{seen}");
        assert!(!seen.to_string().contains(&admin), "{seen}");
    }
    // The app's own Authorization is the script's.
    let seen: Value = app
        .client
        .get(app.url("/v1/apps/shop/functions/echo"))
        .header("authorization", "Bearer app-session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["authorization"], "Bearer app-session");
}

backend_test!(every_function_run_lands_in_the_run_log_newest_first);
async fn every_function_run_lands_in_the_run_log_newest_first(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.script_run_log = 3;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let flaky = r#"
fn handle(req) {
    log::info(`called with ${req.json.n}`);
    if req.json.n == 2 { throw `no stock for ${req.json.n}`; }
    #{ n: req.json.n }
}
"#;
    save(&app, &key, "flaky", flaky, "public").await;
    let mut request_ids = Vec::new();
    for n in 1..=4 {
        let (status, headers, body) = call(&app, "flaky", None, json!({"n": n})).await;
        assert_eq!(status, if n == 2 { 500 } else { 200 }, "{body}");
        request_ids.push(headers["x-request-id"].to_str().unwrap().to_owned());
    }

    // The log keeps the app's newest 3 runs, newest first.
    let runs = app
        .script_runs_once(&key, "flaky", |runs| {
            runs.first()
                .is_some_and(|r| r["logs"][0]["message"] == "called with 4")
        })
        .await;
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["logs"][0]["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ok", "called with 4"),
            ("ok", "called with 3"),
            ("error", "called with 2")
        ]
    );
    let failed = &runs[2];
    assert!(
        failed["error"].as_str().unwrap().contains("no stock for 2"),
        "{failed}"
    );
    assert_eq!(
        (
            &failed["kind"],
            &failed["version"],
            &failed["logs"][0]["level"]
        ),
        (&json!("function"), &json!(1), &json!("info"))
    );
    assert_eq!(failed["request_id"], json!(request_ids[1]));
    assert_eq!(runs[0]["error"], Value::Null);

    // Pages: the newest, then the one before it.
    let path = "/v1/apps/shop/scripts/flaky/runs";
    let (_, page) = app
        .call(Method::GET, &format!("{path}?limit=1"), Some(&key), None)
        .await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["runs"][0]["id"], runs[0]["id"]);
    let before = runs[0]["id"].as_i64().unwrap();
    let (_, page) = app
        .call(
            Method::GET,
            &format!("{path}?limit=1&before={before}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(page["runs"][0]["id"], runs[1]["id"]);

    // Deleting the script deletes its runs; a new script of that name starts afresh.
    let script = "/v1/apps/shop/scripts/flaky";
    assert_eq!(
        app.call(Method::DELETE, script, Some(&key), None).await.0,
        204
    );
    let (status, gone) = app.call(Method::GET, path, Some(&key), None).await;
    assert_eq!((status, code(&gone)), (404, "script_not_found"));
    save(&app, &key, "flaky", flaky, "public").await;
    let (_, fresh) = app.call(Method::GET, path, Some(&key), None).await;
    assert_eq!(fresh["runs"], json!([]));
}

backend_test!(a_saved_version_answers_the_next_call_on_every_node);
async fn a_saved_version_answers_the_next_call_on_every_node(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let version = |v: u32| format!("fn handle(req) {{ #{{ v: {v} }} }}");
    save(&app, &key, "answer", &version(1), "public").await;
    assert_eq!(
        call(&app, "answer", None, json!({})).await.2,
        json!({"v": 1})
    );
    // The node that saved answers with the new version at once, though it cached v1.
    save(&app, &key, "answer", &version(2), "public").await;
    assert_eq!(
        call(&app, "answer", None, json!({})).await.2,
        json!({"v": 2})
    );
    let deleted = app
        .call(
            Method::DELETE,
            "/v1/apps/shop/scripts/answer",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(deleted.0, 204);
    let (status, _, gone) = call(&app, "answer", None, json!({})).await;
    assert_eq!((status, code(&gone)), (404, "script_not_found"));

    // Another node on the same PostgreSQL hears of a save through the cluster feed.
    if app.t.db.backend() == picloud_manager_core::db::Backend::Postgres {
        save(&app, &key, "answer", &version(3), "public").await;
        let other = app.second_node().await;
        assert_eq!(
            call(&other, "answer", None, json!({})).await.2,
            json!({"v": 3})
        );
        save(&app, &key, "answer", &version(4), "public").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = call(&other, "answer", None, json!({})).await.2;
            if answer == json!({"v": 4}) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still {answer}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        other.stop().await;
    }
    app.stop().await;
}

/// `token`'s claims as PyJWT decodes them with `key` (HS256; `exp`, `iat` and `sub`
/// required), run by `PICLOUD_TEST_PYTHON` (scripts/test.sh makes a venv with PyJWT) or
/// `python3`.
fn pyjwt_decode(token: &str, key: &[u8]) -> Value {
    let python = std::env::var("PICLOUD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let program = "import json, sys, jwt\n\
        claims = jwt.decode(sys.argv[1], bytes.fromhex(sys.argv[2]), algorithms=['HS256'],\n\
            options={'require': ['exp', 'iat', 'sub']})\n\
        print(json.dumps(claims))";
    let out = std::process::Command::new(&python)
        .args(["-c", program, token, &hex])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        out.status.success(),
        "PyJWT refused the token (or is missing: scripts/test.sh sets PICLOUD_TEST_PYTHON to a \
         venv with it; else `pip install pyjwt`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("PyJWT printed JSON")
}
