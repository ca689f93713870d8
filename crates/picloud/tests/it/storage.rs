//! Storage failures as a client sees them: a full disk, a database that went away,
//! stored data that cannot be read back.

use std::time::{Duration, Instant};

use crate::common::{code, spawn_app};
use picloud_manager_core::backend_test;
use picloud_manager_core::db::{Backend, PoolSize};
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::{on_db, Db};
use reqwest::Method;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Publishes `bytes` of JSON string data to `orders`; returns the status and body.
async fn publish(
    app: &crate::common::TestApp,
    key: &str,
    bytes: usize,
) -> (u16, serde_json::Value) {
    let data = "x".repeat(bytes);
    app.call(
        Method::POST,
        "/v1/apps/shop/topics/orders/events",
        Some(key),
        Some(json!({ "data": data })),
    )
    .await
}

/// The SQLite pragma `max_page_count` (per connection) caps the file: writes past it fail
/// with SQLITE_FULL, as on a full disk, and raising it again is freeing the space. Set
/// on the pool's connection and on the publish writer's own.
async fn set_max_pages(db: &Db, pages: Option<i64>) {
    let Db::Sqlite(pool, ..) = db else {
        unreachable!()
    };
    let pages = match pages {
        Some(pages) => pages,
        None => sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(pool)
            .await
            .unwrap(),
    };
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(pool)
        .await
        .unwrap();
    let writer = db.write_gate().await.expect("SQLite has a write gate");
    writer.pragma_update(None, "max_page_count", pages).unwrap();
}

/// SQLite only: PostgreSQL has no per-connection size cap to fill, and its driver
/// already drops a failed transaction's depth.
#[tokio::test]
async fn writes_recover_after_the_disk_was_full_and_readyz_says_so() {
    let fresh = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    // One pooled connection, so the capped connections are the ones every write uses.
    let db = Db::connect(&fresh.url, PoolSize(1)).await.unwrap();
    let t = TestDb {
        db: db.clone(),
        url: fresh.url.clone(),
        dir: fresh.dir,
    };
    fresh.db.close().await;
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["pubsub:publish"]).await;
    let (status, body) = publish(&app, &key, 10).await;
    assert_eq!(status, 201, "{body}");

    set_max_pages(&db, None).await;
    let (status, body) = publish(&app, &key, 200_000).await;
    assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (503, "unavailable"),
        "not ready while writes fail: {body}"
    );

    set_max_pages(&db, Some(1_000_000)).await;
    let (status, body) = publish(&app, &key, 200_000).await;
    assert_eq!(
        status, 201,
        "publishes work again once there is space: {body}"
    );
    let (status, body) = publish(&app, &key, 10).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
}

/// A TCP relay to the test PostgreSQL server that can be pulled like a cable: after
/// `stop`, connections are refused and open ones are cut.
async fn relay_to(upstream: String) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = tokio::select! {
                _ = token.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap(),
            };
            let upstream = upstream.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                }
            });
        }
    });
    (addr.to_string(), stop)
}

#[tokio::test]
async fn a_database_outage_is_a_quick_503_with_retry_after() {
    let Some(fresh) = TestDb::new(Backend::Postgres).await else {
        eprintln!("skipped: PICLOUD_TEST_DATABASE_URL is not set");
        return;
    };
    // postgres://USER@HOST:PORT/DB: the relay stands in for HOST:PORT.
    let authority = fresh
        .url
        .split_once("://")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    let upstream = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned();
    let (relay, pull) = relay_to(upstream.clone()).await;
    let via_relay = fresh.url.replacen(&upstream, &relay, 1);
    let db = Db::connect(&via_relay, PoolSize(4)).await.unwrap();
    let t = TestDb {
        db,
        url: via_relay,
        dir: fresh.dir,
    };
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:read"]).await;
    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop/topics", Some(&key), None)
        .await;
    assert_eq!(status, 200);

    pull.cancel();
    let started = Instant::now();
    let response = app
        .send(Method::GET, "/v1/apps/shop/topics", Some(&key), None)
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );
}

backend_test!(unreadable_stored_data_is_a_500_not_a_400);
async fn unreadable_stored_data_is_a_500_not_a_400(t: TestDb) {
    let app = spawn_app(t).await;
    on_db!(&app.t.db, pool, {
        sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ('Not An Id!', 'x', 0)")
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });
    let (status, body) = app
        .call(Method::GET, "/v1/apps", Some(&app.admin_key), None)
        .await;
    assert_eq!((status, code(&body)), (500, "internal"), "{body}");
}

backend_test!(nul_characters_anywhere_in_a_request_never_cause_a_500);
async fn nul_characters_anywhere_in_a_request_never_cause_a_500(t: TestDb) {
    // Webhooks to loopback allowed, so trigger URLs are judged by their text alone.
    let mut args = picloud::config::ServeArgs::for_tests();
    args.webhook_allow_private = true;
    let app = crate::common::spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "orders"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let admin = app.admin_key.clone();
    let as_app = Some(key.as_str());
    let as_admin = Some(admin.as_str());
    let requests: Vec<(Method, &str, Option<&str>, Option<serde_json::Value>)> = vec![
        (Method::GET, "/v1/apps/shop/triggers/tr%00x", as_app, None),
        (
            Method::DELETE,
            "/v1/apps/shop/triggers/tr%00x",
            as_app,
            None,
        ),
        (Method::GET, "/v1/apps/shop/deliveries/d%00x", as_app, None),
        (
            Method::POST,
            "/v1/apps/shop/deliveries/d%00x/retry",
            as_app,
            None,
        ),
        (
            Method::GET,
            "/v1/apps/shop/dead-letters/d%00x",
            as_app,
            None,
        ),
        (Method::DELETE, "/v1/apps/shop/keys/k%00x", as_app, None),
        (Method::DELETE, "/v1/keys/k%00x", as_admin, None),
        (
            Method::GET,
            "/v1/apps/shop/deliveries?trigger=a%00b",
            as_app,
            None,
        ),
        (
            Method::GET,
            "/v1/apps/shop/deliveries?state=a%00b",
            as_app,
            None,
        ),
        (
            Method::GET,
            "/v1/apps/shop/dead-letters?trigger=a%00b",
            as_app,
            None,
        ),
        (
            Method::GET,
            "/v1/apps/shop/topics/orders/events?after=a%00b",
            as_app,
            None,
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            as_app,
            Some(json!({"type": "a\u{0}b", "data": 1})),
        ),
        (
            Method::POST,
            "/v1/apps/shop/triggers",
            as_app,
            Some(json!({"source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/\u{0}"}})),
        ),
        (
            Method::POST,
            "/v1/apps/shop/triggers",
            as_app,
            Some(json!({"source": {"kind": "topic", "topic": "or\u{0}ders"},
                "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/"}})),
        ),
        (
            Method::POST,
            "/v1/apps/shop/subscriber-tokens",
            as_app,
            Some(json!({"sub": "u\u{0}1", "topics": ["orders"]})),
        ),
    ];
    for (method, path, key, body) in requests {
        let (status, answer) = app.call(method.clone(), path, key, body).await;
        // Refused with a JSON error, or (a URL, which escapes it) taken as written.
        assert!(status < 500, "{method} {path}: {status} {answer}");
        if status >= 400 {
            assert!(
                answer["error"]["code"].is_string(),
                "{method} {path}: {answer}"
            );
        }
    }

    // NUL inside event data is JSON like any other character: stored and read back.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            as_app,
            Some(json!({"data": {"note": "a\u{0}b"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events",
            as_app,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["data"]["note"], "a\u{0}b", "{body}");
    app.stop().await;
}
