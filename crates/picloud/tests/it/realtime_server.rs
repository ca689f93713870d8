//! Realtime against the real binary, where a process of its own makes its memory and
//! its metrics observable: a reader that stops reading while a large backlog is
//! published costs the server a bounded amount of memory, catches up without loss, and
//! the realtime counters say exactly what happened.

use crate::common::Server;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Client;
use reqwest::Method;
use serde_json::{json, Value};

/// Events published while the reader keeps up, then again while it stalls, and their
/// size.
const BATCHES: usize = 40;
const PER_BATCH: usize = 1000;
const PAYLOAD: usize = 1000;

/// Reads SSE bytes until `count` event frames (`data:` lines with a seq) have arrived,
/// returning their seqs.
async fn read_seqs(stream: &mut reqwest::Response, buffer: &mut String, count: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(60), stream.chunk())
            .await
            .expect("frames keep coming")
            .unwrap()
            .expect("stream open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let data: Value = serde_json::from_str(data).unwrap();
                if let Some(seq) = data["seq"].as_i64() {
                    seqs.push(seq);
                }
            }
        }
    }
    seqs
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .parse()
        .unwrap()
}

backend_test!(a_stalled_reader_costs_bounded_memory_and_catches_up_exactly);
async fn a_stalled_reader_costs_bounded_memory_and_catches_up_exactly(t: TestDb) {
    let dir = t.dir.path().join("data");
    let args = [
        "--database-url",
        t.url.as_str(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--realtime-broadcast-capacity",
        "16",
    ];
    let server = Server::start(&args).await;
    let admin = server.bootstrap_key().await;
    let client = Client::new();
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
            "/v1/apps/shop/topics",
            &key,
            json!({"name": "feed", "auth_mode": "public"}),
        )
        .await;
    server
        .send(
            Method::PATCH,
            "/v1/apps/shop/topics/feed/external",
            &key,
            json!({"external_subscribable": true}),
        )
        .await;

    let mut stream = client
        .get(format!(
            "http://{}/v1/apps/shop/realtime?topic=feed",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let batch: Vec<Value> = (0..PER_BATCH)
        .map(|i| json!({"topic": "feed", "data": {"i": i, "pad": "x".repeat(PAYLOAD)}}))
        .collect();
    // First the same load with a reader that keeps up, so database caches and the
    // allocator reach their working size; what the stall adds on top is its own cost.
    for b in 0..BATCHES {
        server
            .send(
                Method::POST,
                "/v1/apps/shop/events",
                &key,
                json!({"events": batch}),
            )
            .await;
        let first = (b * PER_BATCH) as i64 + 1;
        let seqs = read_seqs(&mut stream, &mut buffer, PER_BATCH).await;
        assert_eq!(seqs, (first..first + PER_BATCH as i64).collect::<Vec<_>>());
    }
    let before = server.rss_bytes();

    // The reader stalls while ~40 MB of events are published.
    for _ in 0..BATCHES {
        server
            .send(
                Method::POST,
                "/v1/apps/shop/events",
                &key,
                json!({"events": batch}),
            )
            .await;
    }
    let stalled = server.rss_bytes();
    let backlog = (BATCHES * PER_BATCH * PAYLOAD) as u64;
    let grown = stalled.saturating_sub(before);
    // A server holding the backlog for its reader would grow by more than the backlog.
    // Three quarters of it leave room for what grows anyway: SQLite's page caches (up to
    // 64 MiB per pooled connection) add 0.5-5 MB here, ~12 MB was seen once when the
    // writes went to a connection whose cache was still cold, and 21.6 MB once in the
    // full suite on a 2-core Intel machine (the allocator keeping freed request bodies).
    assert!(
        grown < backlog * 3 / 4,
        "server memory grew {grown} bytes with a {backlog}-byte backlog"
    );

    // It catches up: every seq once, in order.
    let total = 2 * PER_BATCH * BATCHES;
    let seqs = read_seqs(&mut stream, &mut buffer, total / 2).await;
    assert_eq!(
        seqs,
        ((total / 2) as i64 + 1..=total as i64).collect::<Vec<_>>()
    );

    // The stream leaves catch-up once a log read comes back short, which may be just
    // after the client has read the last event.
    let metrics_url = format!("http://{}/metrics", server.addr);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = client
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&text, "picloud_realtime_streams_catching_up") == 0.0 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never left catch-up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric(&text, "picloud_realtime_events_broadcast_total"),
        total as f64,
        "once per event"
    );
    assert_eq!(
        metric(&text, "picloud_realtime_deliveries_total"),
        total as f64,
        "one stream got each once"
    );
    assert!(
        metric(&text, "picloud_realtime_catchups_total") >= 1.0,
        "the stalled reader read the log"
    );
    assert!(metric(&text, "picloud_realtime_lag_events_count") >= 1.0);
    assert_eq!(metric(&text, "picloud_realtime_streams"), 1.0);
    eprintln!("rss before {before}, stalled {stalled}, backlog {backlog}");
    server.terminate();
}
