//! Dashboard admins end to end: signing in and out, the session cookie, CSRF, the
//! lockout, the superuser's reach (every app, internal topics in Live tail), the
//! overview series, and the embedded dashboard at `/_/`.

use std::time::Duration;

use crate::common::{code, spawn_app, spawn_app_with, AdminSession, TestApp, ADMIN_PASSWORD};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use picloud_shared::time::now_ms;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::sse::Subscribe;

const EMAIL: &str = "root@example.com";

async fn sign_in_attempt(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    app.exchange(
        app.client
            .post(app.url("/v1/admin/session"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn as_admin(
    app: &TestApp,
    method: Method,
    path: &str,
    session: &AdminSession,
    csrf: bool,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.as_admin(method, path, session, csrf);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, _, body) = app.exchange(request).await;
    (status, body)
}

backend_test!(sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session);
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_admin(EMAIL, ADMIN_PASSWORD).await;

    let (status, headers, body) = sign_in_attempt(&app, "Root@Example.COM", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["admin"]["email"], EMAIL, "emails are case-insensitive");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let expires_at = body["expires_at"].as_i64().unwrap();
    let ttl = expires_at - now_ms();
    assert!(
        (12 * 3600 * 1000 - 60_000..=12 * 3600 * 1000).contains(&ttl),
        "12 h session: {ttl}"
    );
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"],
        "{set_cookie}"
    );
    let secret = set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("picloud_session=")
        .unwrap();
    assert!(
        !body.to_string().contains(secret),
        "the session secret is never in the body"
    );
    assert!(!secret.is_empty() && secret != csrf);
    let session = AdminSession {
        cookie: format!("picloud_session={secret}"),
        csrf: csrf.clone(),
    };

    // Who am I: the same CSRF token; without the cookie, 401.
    let (status, me) = as_admin(
        &app,
        Method::GET,
        "/v1/admin/session",
        &session,
        false,
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            me["admin"]["email"].as_str(),
            me["csrf_token"].as_str()
        ),
        (200, Some(EMAIL), Some(csrf.as_str()))
    );
    let (status, body) = app.call(Method::GET, "/v1/admin/session", None, None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));

    // State-changing requests need the CSRF token.
    let new_app = json!({"id": "shop", "name": "Shop"});
    let (status, body) = as_admin(
        &app,
        Method::POST,
        "/v1/apps",
        &session,
        false,
        Some(new_app.clone()),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(body["error"]["message"], "missing or invalid CSRF token");
    let (status, _, body) = app
        .exchange(
            app.as_admin(Method::POST, "/v1/apps", &session, false)
                .header("x-csrf-token", "wrong")
                .json(&new_app),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = as_admin(
        &app,
        Method::POST,
        "/v1/apps",
        &session,
        true,
        Some(new_app),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A superuser reaches inside every app, which an instance key cannot.
    let (status, body) = as_admin(
        &app,
        Method::POST,
        "/v1/apps/shop/topics",
        &session,
        true,
        Some(json!({"name": "orders"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = as_admin(
        &app,
        Method::POST,
        "/v1/apps/shop/keys",
        &session,
        true,
        Some(json!({"name": "web", "scopes": ["pubsub:publish"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // An Authorization header wins over the cookie: a bad key is a 401 whatever the cookie.
    let (status, _, _) = app
        .exchange(
            app.as_admin(Method::GET, "/v1/apps", &session, false)
                .bearer_auth("pk_nope"),
        )
        .await;
    assert_eq!(status, 401);

    // Sign out: the row is gone, the cookie cleared, the old cookie worthless.
    let (status, _, _) = app
        .exchange(app.as_admin(Method::DELETE, "/v1/admin/session", &session, false))
        .await;
    assert_eq!(status, 403, "signing out needs the CSRF token too");
    let (status, headers, _) = app
        .exchange(app.as_admin(Method::DELETE, "/v1/admin/session", &session, true))
        .await;
    assert_eq!(status, 204);
    let cleared = headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("picloud_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    for path in ["/v1/admin/session", "/v1/apps"] {
        let (status, body) = as_admin(&app, Method::GET, path, &session, false, None).await;
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{path}");
    }
    app.stop().await;
}

backend_test!(sessions_expire_and_cookies_are_secure_behind_tls);
async fn sessions_expire_and_cookies_are_secure_behind_tls(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.admin_session_ttl_sec = 600;
    let app = spawn_app_with(t, args).await;
    app.create_admin(EMAIL, ADMIN_PASSWORD).await;
    let (status, headers, _) = app
        .exchange(
            app.client
                .post(app.url("/v1/admin/session"))
                .header("x-forwarded-proto", "https")
                .json(&json!({"email": EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.contains("Max-Age=600") && set_cookie.ends_with("; Secure"),
        "{set_cookie}"
    );

    let session = app.sign_in(EMAIL, ADMIN_PASSWORD).await;
    let (status, _) = as_admin(
        &app,
        Method::GET,
        "/v1/admin/session",
        &session,
        false,
        None,
    )
    .await;
    assert_eq!(status, 200);
    picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query("UPDATE admin_sessions SET expires_at = $1")
            .bind(now_ms() - 1)
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });
    let (status, body) = as_admin(
        &app,
        Method::GET,
        "/v1/admin/session",
        &session,
        false,
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let db = app.stop().await;

    let mut args = ServeArgs::for_tests();
    args.secure_cookies = true;
    let app = spawn_app_with_db(db, args).await;
    let (status, headers, _) = sign_in_attempt(&app, EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
    app.stop().await;
}

/// A second server on a database that already has its instance key.
async fn spawn_app_with_db(t: picloud_manager_core::testing::TestDb, args: ServeArgs) -> TestApp {
    crate::common::spawn_existing(t, args).await
}

backend_test!(wrong_passwords_lock_the_account_with_growing_backoff);
async fn wrong_passwords_lock_the_account_with_growing_backoff(t: TestDb) {
    let app = spawn_app_with(t, many_sign_ins_per_address()).await;
    app.create_admin(EMAIL, ADMIN_PASSWORD).await;

    let (status, _, wrong) = sign_in_attempt(&app, EMAIL, "not the password").await;
    assert_eq!((status, code(&wrong)), (401, "unauthorized"));
    assert_eq!(wrong["error"]["message"], "invalid email or password");
    let (status, _, unknown) =
        sign_in_attempt(&app, "nobody@example.com", "not the password").await;
    assert_eq!(
        (status, &unknown),
        (401, &wrong),
        "an unknown email gets the same answer"
    );

    for _ in 0..4 {
        let (status, headers, _) = sign_in_attempt(&app, EMAIL, "not the password").await;
        assert_eq!(status, 401);
        assert!(headers.get("set-cookie").is_none());
    }
    // Five failures: locked, even for the right password.
    let (status, headers, body) = sign_in_attempt(&app, EMAIL, ADMIN_PASSWORD).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(headers.get("set-cookie").is_none());

    // The lock runs out; one more failure locks for twice as long.
    let unlock = |app: &TestApp| {
        let db = app.t.db.clone();
        async move {
            picloud_manager_core::on_db!(&db, pool, {
                sqlx::query("UPDATE admins SET locked_until = $1")
                    .bind(now_ms() - 1)
                    .execute(pool)
                    .await
                    .map(drop)
                    .unwrap()
            });
        }
    };
    unlock(&app).await;
    let (status, _, _) = sign_in_attempt(&app, EMAIL, "still wrong").await;
    assert_eq!(status, 401);
    let (status, headers, _) = sign_in_attempt(&app, EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(status, 429);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((31..=60).contains(&retry_after), "doubled: {retry_after}");

    // A success after the lock resets the count: the next failure does not lock.
    unlock(&app).await;
    app.sign_in(EMAIL, ADMIN_PASSWORD).await;
    let admins = app.t.db.list_admins().await.unwrap();
    assert_eq!(
        (admins[0].failed_attempts, admins[0].locked_until),
        (0, None)
    );
    let (status, _, _) = sign_in_attempt(&app, EMAIL, "wrong again").await;
    assert_eq!(status, 401);
    app.sign_in(EMAIL, ADMIN_PASSWORD).await;

    // Bad input is a clear 4xx.
    let (status, _, body) = app
        .exchange(
            app.client
                .post(app.url("/v1/admin/session"))
                .json(&json!({"email": EMAIL})),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    app.stop().await;
}

/// Serve settings with the per-address sign-in limit out of the way.
fn many_sign_ins_per_address() -> ServeArgs {
    ServeArgs {
        admin_sign_ins_per_address_per_minute: 1_000_000,
        ..ServeArgs::for_tests()
    }
}

/// Sends `n` sign-ins with a wrong password for `email` at once, then more one at a
/// time until one is refused as locked. Returns the statuses of the burst and how many
/// attempts in all were answered 401 (each of those had its password checked).
async fn wrong_passwords_until_locked(app: &TestApp, email: &str, n: usize) -> (Vec<u16>, usize) {
    let burst =
        futures::future::join_all((0..n).map(|_| sign_in_attempt(app, email, "not the password")))
            .await;
    let statuses: Vec<u16> = burst.iter().map(|(status, _, _)| *status).collect();
    for (status, headers, body) in &burst {
        match status {
            401 => assert_eq!(body["error"]["message"], "invalid email or password"),
            429 | 503 => assert!(headers.contains_key("retry-after"), "{body}"),
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    // The server may have turned some away as busy (503): those were never counted.
    let mut checked = statuses.iter().filter(|s| **s == 401).count();
    for _ in 0..10 {
        let (status, _, body) = sign_in_attempt(app, email, "not the password").await;
        if status == 429 {
            assert_eq!(code(&body), "rate_limited");
            break;
        }
        assert_eq!(status, 401, "{body}");
        checked += 1;
    }
    (statuses, checked)
}

backend_test!(parallel_wrong_passwords_check_at_most_five_and_unknown_emails_answer_alike);
async fn parallel_wrong_passwords_check_at_most_five_and_unknown_emails_answer_alike(t: TestDb) {
    let app = spawn_app_with(t, many_sign_ins_per_address()).await;
    app.create_admin(EMAIL, ADMIN_PASSWORD).await;

    let (burst, checked) = wrong_passwords_until_locked(&app, EMAIL, 30).await;
    assert_eq!(
        checked, 5,
        "30 parallel attempts check five passwords in all: {burst:?}"
    );
    let admins = app.t.db.list_admins().await.unwrap();
    assert_eq!(admins[0].failed_attempts, 5);
    let (status, headers, body) = sign_in_attempt(&app, EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        (status, code(&body)),
        (429, "rate_limited"),
        "locked, even for the right password"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");

    // An email no admin has answers the same way: five 401s, then the same 429.
    let (burst, checked) = wrong_passwords_until_locked(&app, "nobody@example.com", 30).await;
    assert_eq!(checked, 5, "{burst:?}");
    let (status, headers, unknown) =
        sign_in_attempt(&app, "nobody@example.com", ADMIN_PASSWORD).await;
    assert_eq!((status, code(&unknown)), (429, "rate_limited"));
    assert_eq!(unknown["error"]["message"], body["error"]["message"]);
    let unknown_retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&unknown_retry), "{unknown_retry}");
    app.stop().await;
}

backend_test!(sign_ins_are_limited_per_address_whatever_x_forwarded_for_says);
async fn sign_ins_are_limited_per_address_whatever_x_forwarded_for_says(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_admin(EMAIL, ADMIN_PASSWORD).await;
    // Ten attempts a minute per address (each at another email, so no lockout plays).
    for i in 0..10 {
        let (status, _, body) = app
            .exchange(
                app.client
                    .post(app.url("/v1/admin/session"))
                    .header("x-forwarded-for", format!("203.0.113.{i}"))
                    .json(&json!({"email": format!("user{i}@example.com"), "password": "not the password"})),
            )
            .await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, headers, body) = app
        .exchange(
            app.client
                .post(app.url("/v1/admin/session"))
                .header("x-forwarded-for", "198.51.100.1")
                .json(&json!({"email": EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("from this address"),
        "{body}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert!(headers.get("set-cookie").is_none());

    // Another client address has an allowance of its own.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let answer = elsewhere
        .post(app.url("/v1/admin/session"))
        .json(&json!({"email": EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "127.0.0.2 is not held back by 127.0.0.1's attempts"
    );

    app.stop().await;
}

backend_test!(control_characters_in_names_and_emails_are_a_400);
async fn control_characters_in_names_and_emails_are_a_400(t: TestDb) {
    let app = spawn_app(t).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps",
            Some(&app.admin_key),
            Some(json!({"id": "shop", "name": "My\u{0}Shop"})),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("app name"),
        "{body}"
    );
    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop", Some(&app.admin_key), None)
        .await;
    assert_eq!(status, 404, "nothing was stored");

    app.create_app("shop").await;
    for name in ["web\u{0}", "web\u{1b}[31m", "web\u{85}"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/keys",
                Some(&app.admin_key),
                Some(json!({"name": name, "scopes": ["pubsub:publish"]})),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{name:?}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("key name"),
            "{body}"
        );
    }
    let (status, _, body) = sign_in_attempt(&app, "root\u{0}@example.com", ADMIN_PASSWORD).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
    app.stop().await;
}

/// 200 sign-ins at once (unknown emails, so each one would check a password) against
/// the real binary: the argon2 work is bounded, so memory stays flat.
#[tokio::test]
async fn a_burst_of_sign_ins_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = crate::common::Server::start(&[
        "--data-dir",
        data_dir,
        "--admin-sign-ins-per-address-per-minute",
        "1000000",
    ])
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/admin/session", server.addr);
    let attempt = |i: usize| {
        client
            .post(&url)
            .json(&json!({"email": format!("user{i}@example.com"), "password": "not the password"}))
            .send()
    };
    assert_eq!(attempt(0).await.unwrap().status(), 401);
    let before = server.rss_bytes();
    let answers = futures::future::join_all((1..=200).map(attempt)).await;
    let mut statuses: Vec<u16> = answers
        .into_iter()
        .map(|a| a.unwrap().status().as_u16())
        .collect();
    let after = server.rss_bytes();
    statuses.sort_unstable();
    statuses.dedup();
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    let growth_mb = after.saturating_sub(before) / (1024 * 1024);
    assert!(
        growth_mb < 100,
        "resident memory grew by {growth_mb} MB ({before} -> {after} bytes)"
    );
    server.terminate();
}

backend_test!(a_signed_in_admin_watches_internal_topics_in_live_tail);
async fn a_signed_in_admin_watches_internal_topics_in_live_tail(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let session = app.admin_session().await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "internal"})),
        )
        .await;
    assert_eq!(status, 201);

    let (status, body) = app
        .subscribe("shop", &["internal"], Subscribe::default())
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, code(&body)),
        (404, "not_found"),
        "an internal topic is hidden from outsiders"
    );
    let (status, _) = app
        .subscribe(
            "shop",
            &["internal"],
            Subscribe {
                cookie: Some("picloud_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 404, "an unknown session is nobody");
    let (status, _) = app
        .subscribe(
            "shop",
            &["internal", "missing"],
            Subscribe {
                cookie: Some(&session.cookie),
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 404, "topics must exist");

    let mut tail = app
        .subscribe(
            "shop",
            &["internal"],
            Subscribe {
                cookie: Some(&session.cookie),
                ..Default::default()
            },
        )
        .await
        .expect("the admin may watch an internal topic");
    tail.expect("hello").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/internal/events",
            Some(&key),
            Some(json!({"type": "t.created", "data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 201);
    let frames = tail.events(1).await;
    assert_eq!(frames[0].data["data"], json!({"n": 1}));
    assert_eq!(frames[0].event, "t.created");
    app.stop().await;
}

backend_test!(the_overview_series_counts_what_happened);
async fn the_overview_series_counts_what_happened(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.stats_interval_sec = 1;
    args.webhook_allow_private = true;
    args.dispatch_backoff_scale = 0.001;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let session = app.admin_session().await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, _) = app
        .call(Method::GET, "/v1/admin/stats", Some(&app.admin_key), None)
        .await;
    assert_eq!(status, 403, "API keys cannot read the admin series");

    // A webhook nobody listens on: every attempt fails, then dead-letters.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": url},
                "retry": {"max_attempts": 2},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for n in 0..3 {
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/apps/shop/topics/orders/events",
                Some(&key),
                Some(json!({"data": {"n": n}})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "news", "auth_mode": "public"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200);
    let _listener = app
        .subscribe("shop", &["news"], Subscribe::default())
        .await
        .expect("subscribed");

    let (status, body) = as_admin(
        &app,
        Method::GET,
        "/v1/admin/stats?app=Not%20An%20App",
        &session,
        false,
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let (status, body) = as_admin(
        &app,
        Method::GET,
        "/v1/admin/stats?bogus=1",
        &session,
        false,
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, series) = as_admin(
            &app,
            Method::GET,
            "/v1/admin/stats?app=shop",
            &session,
            false,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(series["app"], "shop");
        assert_eq!(
            (
                series["interval_secs"].as_u64(),
                series["window_secs"].as_u64()
            ),
            (Some(1), Some(3600))
        );
        let samples = series["samples"].as_array().unwrap();
        let sum = |field: &str| {
            samples
                .iter()
                .map(|s| s[field].as_i64().unwrap())
                .sum::<i64>()
        };
        let last = samples.last().cloned().unwrap_or(Value::Null);
        let done = sum("publishes") == 3
            && sum("deliveries_failed") == 6
            && sum("dead_letters") == 3
            && last["outbox_pending"] == 0
            && last["sse_streams"] == 1;
        if done {
            assert_eq!(sum("deliveries_ok"), 0);
            let (_, other) = as_admin(
                &app,
                Method::GET,
                "/v1/admin/stats?app=blog",
                &session,
                false,
                None,
            )
            .await;
            let other_publishes: i64 = other["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["publishes"].as_i64().unwrap())
                .sum();
            assert_eq!(other_publishes, 0, "another app's series is its own");
            let (_, all) =
                as_admin(&app, Method::GET, "/v1/admin/stats", &session, false, None).await;
            assert_eq!(all["app"], Value::Null);
            let all_publishes: i64 = all["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["publishes"].as_i64().unwrap())
                .sum();
            assert_eq!(all_publishes, 3, "the instance series sums the apps");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series never showed the traffic: {series}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_underscore_path() {
    let t = picloud_manager_core::testing::TestDb::new(picloud_manager_core::db::Backend::Sqlite)
        .await
        .unwrap();
    let app = spawn_app(t).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/_")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/_/");

    let index = client.get(app.url("/_/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = index.text().await.unwrap();
    assert!(html.contains("<title>PiCloud"), "{html}");

    // The app routes in the browser: any page path serves the same document.
    let deep = client
        .get(app.url("/_/apps/shop/topics"))
        .send()
        .await
        .unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.text().await.unwrap(), html);
    let etag = headers["etag"].clone();
    let cached = client
        .get(app.url("/_/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // A missing file is a JSON 404, not the page.
    let (status, body) = app
        .call(Method::GET, "/_/assets/missing-abc123.js", None, None)
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"));

    // Every asset the page names is served with its type and cached for good.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/_/assets/"))
        .collect();
    for asset in &assets {
        let response = client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let want = if asset.ends_with(".js") {
            "javascript"
        } else if asset.ends_with(".css") {
            "text/css"
        } else {
            ""
        };
        assert!(content_type.contains(want), "{asset}: {content_type}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    app.stop().await;
}
