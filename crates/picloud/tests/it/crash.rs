//! Crash safety: `kill -9` the real binary while deliveries are in flight, start it
//! again, and every outbox row still ends delivered; duplicates (same `webhook-id`) are
//! bounded by what was in flight.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::sink::Sink;
use crate::common::Server;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

const WORKERS: usize = 8;
const EVENTS: usize = 60;

backend_test!(kill_9_mid_delivery_loses_nothing);
async fn kill_9_mid_delivery_loses_nothing(t: TestDb) {
    let (sink, base) = Sink::start().await;
    sink.delay(Duration::from_millis(100));
    let dir = t.dir.path().join("data");
    let workers = WORKERS.to_string();
    let args = [
        "--database-url",
        t.url.as_str(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--webhook-allow-private",
        "true",
        "--webhook-timeout-sec",
        "2",
        "--dispatch-lease-sec",
        "3",
        "--dispatch-workers",
        workers.as_str(),
        "--dispatch-backoff-scale",
        "0.001",
        "--dispatch-poll-ms",
        "50",
    ];
    let mut server = Server::start(&args).await;
    let admin = server.bootstrap_key().await;
    server
        .send(Method::POST, "/v1/apps", &admin, json!({"id": "shop"}))
        .await;
    let key = server
        .send(
            Method::POST,
            "/v1/apps/shop/keys",
            &admin,
            json!({"name": "k", "scopes": ["app:admin"]}),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    server
        .send(
            Method::POST,
            "/v1/apps/shop/triggers",
            &key,
            json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": format!("{base}/hook")},
            }),
        )
        .await;
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| json!({"topic": "orders", "data": n}))
        .collect();
    server
        .send(
            Method::POST,
            "/v1/apps/shop/events",
            &key,
            json!({"events": events}),
        )
        .await;

    // Crash once some deliveries are done and others are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.all().len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.crash().await;
    let before_restart = sink.all().len();
    assert!(before_restart < EVENTS, "the crash came before the end");

    let mut server = Server::start(&args).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = picloud_manager_core::on_db!(&t.db, pool, {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state <> 'delivered'")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} rows never delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = sink.all();
    let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    let seqs: HashSet<i64> = received
        .iter()
        .map(|r| r.body["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), EVENTS, "every row delivered");
    assert_eq!(seqs, (1..=EVENTS as i64).collect::<HashSet<_>>());
    let duplicates = received.len() - EVENTS;
    assert!(
        duplicates <= WORKERS,
        "{duplicates} duplicates, but at most {WORKERS} were in flight"
    );
    server.terminate();
    assert_eq!(server.wait().await, 0);
}
