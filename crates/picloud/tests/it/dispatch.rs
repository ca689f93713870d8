//! Webhook delivery end to end, on both backends, against a local sink that verifies
//! Standard Webhooks signatures: retries then success, dead letters and the
//! `dead_letter` triggers they fire, the recursion stop, 410 Gone, and the SSRF guard.

use std::time::Duration;

use crate::common::sink::Sink;
use crate::common::{spawn_app_with, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) fn fast_args(allow_private: bool) -> ServeArgs {
    let mut args = ServeArgs::for_tests();
    args.dispatch_backoff_scale = 0.001; // 5 s -> 5 ms
    args.dispatch_poll_ms = 50;
    args.webhook_timeout_sec = 5;
    args.webhook_allow_private = allow_private;
    args
}

/// Creates a webhook trigger and returns (id, secret).
async fn trigger(
    app: &TestApp,
    key: &str,
    source: Value,
    url: &str,
    max_attempts: u32,
) -> (String, String) {
    let handler = json!({"kind": "webhook", "url": url});
    let body = create_trigger(app, key, source, handler, max_attempts).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// Creates a trigger of app "shop" and returns it as created.
pub(crate) async fn create_trigger(
    app: &TestApp,
    key: &str,
    source: Value,
    handler: Value,
    max_attempts: u32,
) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(key),
            Some(json!({
                "source": source,
                "handler": handler,
                "retry": {"max_attempts": max_attempts},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Polls the outbox until no row is pending (bounded).
pub(crate) async fn settle(app: &TestApp) -> Vec<(String, String, i64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, String, i64)> = picloud_manager_core::on_db!(&app.t.db, pool, {
            sqlx::query_as("SELECT trigger_id, state, attempts FROM outbox ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        if !rows.is_empty() && rows.iter().all(|(_, state, _)| state != "pending") {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never settled: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn setup(
    allow_private: bool,
    t: picloud_manager_core::testing::TestDb,
) -> (TestApp, String, Sink, String) {
    setup_with(fast_args(allow_private), t).await
}

/// An app "shop" with an app:admin key on a server started with `args`, and a sink.
async fn setup_with(
    args: ServeArgs,
    t: picloud_manager_core::testing::TestDb,
) -> (TestApp, String, Sink, String) {
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (sink, base) = Sink::start().await;
    (app, key, sink, base)
}

async fn publish(app: &TestApp, key: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(key),
            Some(json!({"type": "order.created", "data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

backend_test!(retries_then_success_with_a_stable_webhook_id);
async fn retries_then_success_with_a_stable_webhook_id(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500, 503, 200]);
    let (_, secret) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        5,
    )
    .await;
    sink.secret("hook", &secret);
    let event = publish(&app, &key).await;
    let rows = settle(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("delivered", 3));
    let got = sink.received("hook");
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.signature_valid),
        "every attempt is signed"
    );
    assert!(
        got.iter().all(|r| r.webhook_id == got[0].webhook_id),
        "webhook-id is stable across retries"
    );
    assert_eq!(got[2].body["id"], event["id"]);
    assert_eq!(
        (got[2].body["topic"].as_str(), got[2].body["seq"].as_i64()),
        (Some("orders"), Some(1))
    );
    assert_eq!(got[2].body["data"], json!({"n": 1}));
    let attempts: Vec<Option<i64>> = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT status_code FROM delivery_attempts ORDER BY attempt")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(attempts, [Some(500), Some(503), Some(200)]);
    app.stop().await;
}

backend_test!(exhausted_deliveries_dead_letter_and_fire_dead_letter_triggers_once);
async fn exhausted_deliveries_dead_letter_and_fire_dead_letter_triggers_once(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500]);
    sink.script("dlq", &[200]);
    let (failing, secret) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        3,
    )
    .await;
    sink.secret("hook", &secret);
    let (_, dl_secret) = trigger(
        &app,
        &key,
        json!({"kind": "dead_letter"}),
        &format!("{base}/dlq"),
        3,
    )
    .await;
    sink.secret("dlq", &dl_secret);
    publish(&app, &key).await;
    let rows = settle(&app).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2),
        (failing.as_str(), "dead", 3)
    );
    assert_eq!(rows[1].1, "delivered");
    assert_eq!(sink.received("hook").len(), 3);
    let dl = sink.received("dlq");
    assert_eq!(dl.len(), 1, "the dead_letter trigger fires exactly once");
    assert!(dl[0].signature_valid);
    assert_eq!(dl[0].body["type"], "dead_letter");
    assert_eq!(dl[0].body["dead_letter"]["trigger_id"], failing.as_str());
    assert_eq!(dl[0].body["dead_letter"]["attempts"], 3);
    assert_eq!(dl[0].body["event"]["data"], json!({"n": 1}));
    app.stop().await;
}

backend_test!(a_failing_dead_letter_handler_ends_there);
async fn a_failing_dead_letter_handler_ends_there(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500]);
    sink.script("dlq", &[500]);
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        2,
    )
    .await;
    trigger(
        &app,
        &key,
        json!({"kind": "dead_letter"}),
        &format!("{base}/dlq"),
        2,
    )
    .await;
    publish(&app, &key).await;
    let rows = settle(&app).await;
    let states: Vec<&str> = rows.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        ["dead", "failed"],
        "the dead_letter delivery ends failed, not dead"
    );
    let dead_letters: i64 = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(dead_letters, 1, "no dead letter of a dead letter");
    assert_eq!(sink.received("dlq").len(), 2);
    app.stop().await;
}

backend_test!(gone_disables_the_trigger);
async fn gone_disables_the_trigger(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[410]);
    let (id, _) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        5,
    )
    .await;
    publish(&app, &key).await;
    let rows = settle(&app).await;
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2),
        ("dead", 1),
        "410 is not retried"
    );
    let (_, trigger) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/triggers/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(trigger["enabled"], false);
    assert!(
        trigger["disabled_reason"].as_str().unwrap().contains("410"),
        "{trigger}"
    );
    let (_, event) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(&key),
            Some(json!({"data": 2})),
        )
        .await;
    assert_eq!(event["deliveries"], 0, "a disabled trigger matches nothing");
    app.stop().await;
}

backend_test!(loopback_webhooks_are_refused_by_default);
async fn loopback_webhooks_are_refused_by_default(t: TestDb) {
    let (app, key, sink, base) = setup(false, t).await;
    // Refused when saved; a URL stored before (or a name whose addresses changed since)
    // is refused again at delivery.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": format!("{base}/hook")},
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (first, _) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        "http://203.0.114.7/hook",
        2,
    )
    .await;
    let (second, _) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        "http://203.0.114.8/hook",
        2,
    )
    .await;
    for (id, url) in [
        (first, format!("{base}/hook")),
        (second, "http://localhost:9/hook".to_owned()),
    ] {
        picloud_manager_core::on_db!(&app.t.db, pool, {
            sqlx::query("UPDATE triggers SET handler_target = $1 WHERE id = $2")
                .bind(&url)
                .bind(&id)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        });
    }
    publish(&app, &key).await;
    let rows = settle(&app).await;
    assert!(rows.iter().all(|(_, state, _)| state == "dead"), "{rows:?}");
    assert!(
        sink.received("hook").is_empty(),
        "the sink was never reached"
    );
    let errors: Vec<Option<String>> = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT error FROM delivery_attempts")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("refused"))),
        "{errors:?}"
    );
    app.stop().await;
}

backend_test!(dead_letters_are_listed_inspected_replayed_and_purged);
async fn dead_letters_are_listed_inspected_replayed_and_purged(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500, 500, 200]);
    let (trigger_id, _) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        2,
    )
    .await;
    publish(&app, &key).await;
    settle(&app).await;

    let reader = app.create_key("shop", &["app:read"]).await;
    let (status, list) = app
        .call(
            Method::GET,
            "/v1/apps/shop/dead-letters",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let dead = &list["dead_letters"][0];
    assert_eq!(
        (dead["trigger_id"].as_str(), dead["attempts"].as_i64()),
        (Some(trigger_id.as_str()), Some(2))
    );
    assert_eq!(dead["last_status"], 500);
    let id = dead["id"].as_i64().unwrap();
    let (_, detail) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/dead-letters/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(detail["event"]["data"], json!({"n": 1}), "{detail}");

    let (_, deliveries) = app
        .call(
            Method::GET,
            "/v1/apps/shop/deliveries?state=dead",
            Some(&reader),
            None,
        )
        .await;
    let delivery = deliveries["deliveries"][0]["id"].as_i64().unwrap();
    let (_, detail) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/deliveries/{delivery}"),
            Some(&reader),
            None,
        )
        .await;
    let timeline: Vec<i64> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(timeline, [500, 500]);
    // One `attempts` key, the timeline: the count is not sent beside it (a JSON object
    // with a key twice is read differently by different parsers).
    let raw = app
        .send(
            Method::GET,
            &format!("/v1/apps/shop/deliveries/{delivery}"),
            Some(&reader),
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(raw.matches("\"attempts\":").count(), 1, "{raw}");
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/apps/shop/deliveries?state=bogus",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(
        (status, crate::common::code(&body)),
        (400, "invalid_request")
    );

    // Reading is not managing.
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/apps/shop/dead-letters/{id}/replay"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/apps/shop/dead-letters/{id}/replay"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!((status, body["count"].as_i64()), (200, Some(1)), "{body}");
    let rows = settle(&app).await;
    assert_eq!(
        rows.last().unwrap().1,
        "delivered",
        "the replay reached the endpoint: {rows:?}"
    );
    assert_eq!(sink.received("hook").len(), 3);
    let (_, list) = app
        .call(
            Method::GET,
            "/v1/apps/shop/dead-letters",
            Some(&reader),
            None,
        )
        .await;
    assert!(list["dead_letters"][0]["replayed_at"].is_i64());

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/apps/shop/dead-letters/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/dead-letters/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(
        (status, crate::common::code(&body)),
        (404, "dead_letter_not_found")
    );
    app.stop().await;
}

backend_test!(bulk_replay_is_paced);
async fn bulk_replay_is_paced(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500]);
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        1,
    )
    .await;
    for _ in 0..5 {
        publish(&app, &key).await;
    }
    settle(&app).await;
    // Replay all five at 2 per second: the new deliveries are due 500 ms apart.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/dead-letters/replay",
            Some(&key),
            Some(json!({"per_second": 2})),
        )
        .await;
    assert_eq!((status, body["count"].as_i64()), (200, Some(5)), "{body}");
    let due: Vec<i64> = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT next_attempt_at FROM outbox WHERE id > 5 ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(due.len(), 5);
    assert!(due.windows(2).all(|w| w[1] - w[0] == 500), "{due:?}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/dead-letters/replay",
            Some(&key),
            Some(json!({"per_second": 0})),
        )
        .await;
    assert_eq!(
        (status, crate::common::code(&body)),
        (400, "invalid_request")
    );
    app.stop().await;
}

backend_test!(two_dispatchers_on_one_database_never_deliver_a_row_twice);
async fn two_dispatchers_on_one_database_never_deliver_a_row_twice(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    // A second node: its own dispatcher on the same database.
    let second = picloud::server::build_app(app.t.db.clone(), &fast_args(true))
        .await
        .unwrap();
    let stop_second = tokio_util::sync::CancellationToken::new();
    let node = tokio::spawn(second.run(stop_second.clone()));
    sink.delay(Duration::from_millis(20));
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        3,
    )
    .await;
    let events: Vec<Value> = (0..200)
        .map(|n| json!({"topic": "orders", "data": n}))
        .collect();
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            Some(&key),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 201);
    let rows = settle(&app).await;
    assert!(
        rows.iter()
            .all(|(_, state, attempts)| state == "delivered" && *attempts == 1),
        "{rows:?}"
    );
    let received = sink.received("hook");
    let distinct: std::collections::HashSet<&str> =
        received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(
        (received.len(), distinct.len()),
        (200, 200),
        "each row delivered exactly once"
    );
    assert_eq!(sink.overlaps(), 0);
    stop_second.cancel();
    node.await.unwrap().unwrap();
    app.stop().await;
}

backend_test!(ordered_triggers_get_events_strictly_in_seq_order);
async fn ordered_triggers_get_events_strictly_in_seq_order(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("ordered", &[500, 500, 200]);
    sink.script("loose", &[500, 200]);
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": format!("{base}/ordered")},
                "ordered": true,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/loose"),
        5,
    )
    .await;
    let events: Vec<Value> = (0..20)
        .map(|n| json!({"topic": "orders", "data": n}))
        .collect();
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            Some(&key),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 201);
    settle(&app).await;
    let seqs: Vec<i64> = sink
        .received("ordered")
        .iter()
        .map(|r| r.body["seq"].as_i64().unwrap())
        .collect();
    let mut want = vec![1, 1];
    want.extend(1..=20);
    assert_eq!(
        seqs, want,
        "the failing head blocked the rest, then all came in order"
    );
    // The unordered trigger was not held back by the ordered one's failures.
    assert_eq!(sink.received("loose").len(), 21);
    app.stop().await;
}

backend_test!(an_open_circuit_stops_burning_attempts_and_a_probe_closes_it);
async fn an_open_circuit_stops_burning_attempts_and_a_probe_closes_it(t: TestDb) {
    // Retry delays x0.01 (first retry ~50 ms); circuit cool-down 30 s x0.01 = 300 ms.
    let mut args = fast_args(true);
    args.dispatch_backoff_scale = 0.01;
    let (app, key, sink, base) = setup_with(args, t).await;
    // The endpoint is down for 450 ms from its first request.
    sink.outage("hook", Duration::from_millis(450));
    let (id, _) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        10,
    )
    .await;
    let events: Vec<Value> = (0..20)
        .map(|n| json!({"topic": "orders", "data": n}))
        .collect();
    app.call(
        Method::POST,
        "/v1/apps/shop/events",
        Some(&key),
        Some(json!({"events": events})),
    )
    .await;
    let rows = settle(&app).await;
    assert!(
        rows.iter().all(|(_, state, _)| state == "delivered"),
        "{rows:?}"
    );
    // Without the breaker every row retries ~50 ms into the outage and fails again (40+
    // failed requests). With it, the circuit opens after the first wave and only one
    // probe per 300 ms cool-down meets the outage.
    let failed = sink.received("hook").len() - 20;
    assert!(failed <= 20 + 8, "{failed} failed requests: {rows:?}");
    // When the probe closed the circuit, the backlog was spread out at the resume rate
    // (50/s: 20 ms apart) instead of going out all at once.
    let mut due: Vec<i64> = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT next_attempt_at FROM outbox")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    due.sort_unstable();
    let spaced = due.windows(2).filter(|w| w[1] - w[0] == 20).count();
    assert!(spaced >= 18, "backlog due times {due:?}");
    let (_, trigger) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/triggers/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (
            trigger["circuit_state"].as_str(),
            trigger["consecutive_failures"].as_i64()
        ),
        (Some("closed"), Some(0))
    );
    app.stop().await;
}

backend_test!(pacing_bounds_in_flight_and_rate_per_trigger);
async fn pacing_bounds_in_flight_and_rate_per_trigger(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.delay(Duration::from_millis(30));
    for (path, pacing) in [
        ("window", json!({"max_in_flight": 2})),
        ("rate", json!({"max_per_second": 20})),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                Some(&key),
                Some(json!({
                    "source": {"kind": "topic", "topic": path},
                    "handler": {"kind": "webhook", "url": format!("{base}/{path}")},
                    "pacing": pacing,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["pacing"]["max_in_flight"],
            if path == "window" {
                json!(2)
            } else {
                Value::Null
            }
        );
    }
    let events: Vec<Value> = (0..10)
        .flat_map(|n| {
            [
                json!({"topic": "window", "data": n}),
                json!({"topic": "rate", "data": n}),
            ]
        })
        .collect();
    let started = tokio::time::Instant::now();
    app.call(
        Method::POST,
        "/v1/apps/shop/events",
        Some(&key),
        Some(json!({"events": events})),
    )
    .await;
    let rows = settle(&app).await;
    assert!(
        rows.iter()
            .all(|(_, state, attempts)| state == "delivered" && *attempts == 1),
        "{rows:?}"
    );
    assert_eq!(sink.received("window").len(), 10);
    assert!(
        sink.max_concurrent("window") <= 2,
        "{}",
        sink.max_concurrent("window")
    );
    // 10 starts at 20/s take at least 9 x 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "x"},
                "handler": {"kind": "webhook", "url": format!("{base}/x")},
                "pacing": {"max_in_flight": 0},
            })),
        )
        .await;
    assert_eq!(
        (status, crate::common::code(&body)),
        (400, "invalid_request"),
        "{body}"
    );
    app.stop().await;
}

backend_test!(a_paced_trigger_with_a_failing_endpoint_stops_at_its_circuit_breaker);
async fn a_paced_trigger_with_a_failing_endpoint_stops_at_its_circuit_breaker(t: TestDb) {
    // Real retry delays (the first is 5 s) and a 30 s cool-down: within this test a
    // failed row is not tried again, so every request the sink sees is a first attempt.
    let mut args = fast_args(true);
    args.dispatch_backoff_scale = 1.0;
    let (app, key, sink, base) = setup_with(args, t).await;
    sink.outage("hook", Duration::from_secs(600));
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": format!("{base}/hook")},
                "pacing": {"max_in_flight": 1},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let events: Vec<Value> = (0..40)
        .map(|n| json!({"topic": "orders", "data": n}))
        .collect();
    app.call(
        Method::POST,
        "/v1/apps/shop/events",
        Some(&key),
        Some(json!({"events": events})),
    )
    .await;
    // Rows claimed beyond the window wait on the node; once the circuit is open and
    // nothing is leased any more, none of them is still on its way to the endpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, trigger) = app
            .call(
                Method::GET,
                &format!("/v1/apps/shop/triggers/{id}"),
                Some(&key),
                None,
            )
            .await;
        let leased: i64 = picloud_manager_core::on_db!(&app.t.db, pool, {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE lease_until IS NOT NULL")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if trigger["circuit_state"] == "open" && leased == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "circuit {} with {leased} rows leased",
            trigger["circuit_state"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Five failures open the circuit (a few more may be claimed while the failures are
    // still being recorded); the rows waiting behind the window went back untried.
    // Without that hand-back, held rows keep going out: 16 requests here.
    let requests = sink.received("hook").len();
    assert!(
        (5..=10).contains(&requests),
        "{requests} requests reached the failing endpoint"
    );
    let tried: i64 = picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE attempts > 0")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        tried as usize, requests,
        "attempts are counted only for rows that were tried"
    );
    app.stop().await;
}

backend_test!(shutdown_releases_deliveries_it_could_not_finish);
async fn shutdown_releases_deliveries_it_could_not_finish(t: TestDb) {
    let mut args = fast_args(true);
    args.shutdown_grace_sec = 0; // no time to finish: in-flight deliveries are cut
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (sink, base) = Sink::start().await;
    sink.delay(Duration::from_secs(5));
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        3,
    )
    .await;
    publish(&app, &key).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leased: i64 = picloud_manager_core::on_db!(&app.t.db, pool, {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE lease_until IS NOT NULL")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if leased == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = app.stop().await;
    let db = picloud_manager_core::Db::connect(&t.url, picloud_manager_core::db::PoolSize(1))
        .await
        .unwrap();
    let rows: Vec<(String, i64, Option<i64>)> = picloud_manager_core::on_db!(&db, pool, {
        sqlx::query_as("SELECT state, attempts, lease_until FROM outbox")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        rows,
        [("pending".to_owned(), 0, None)],
        "released for the next start, attempt given back"
    );
}

backend_test!(
    deeply_nested_stored_data_is_retried_then_dead_lettered_without_stalling_an_ordered_trigger
);
async fn deeply_nested_stored_data_is_retried_then_dead_lettered_without_stalling_an_ordered_trigger(
    t: TestDb,
) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500, 500, 200]);
    // Two events stored before any trigger; the first holds data nested deeper than
    // publishing now accepts (as stored by an older version).
    publish(&app, &key).await;
    publish(&app, &key).await;
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query("UPDATE topic_events SET payload = $1 WHERE seq = 1")
            .bind(deep.as_bytes().to_vec())
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": format!("{base}/hook")},
                "retry": {"max_attempts": 2},
                "ordered": true,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let trigger_id = body["id"].as_str().unwrap().to_owned();
    picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query("INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts, next_attempt_at, created_at, updated_at)
                     VALUES ('shop', $1, 'orders', 1, 'pending', 0, 0, 0, 0), ('shop', $1, 'orders', 2, 'pending', 0, 0, 0, 0)")
            .bind(&trigger_id).execute(pool).await.unwrap().rows_affected()
    });
    // The deep row is sent (its data spliced in as stored), fails twice and is
    // dead-lettered; the next event of the ordered trigger follows.
    let rows = settle(&app).await;
    assert_eq!(
        rows.iter()
            .map(|(_, state, attempts)| (state.as_str(), *attempts))
            .collect::<Vec<_>>(),
        [("dead", 2), ("delivered", 1)],
        "{rows:?}"
    );
    let got = sink.received("hook");
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].body["seq"], 2);
    let (_, dead) = app
        .call(Method::GET, "/v1/apps/shop/dead-letters", Some(&key), None)
        .await;
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "{dead}"
    );
    app.stop().await;
}

/// A loopback endpoint that accepts connections and never answers, holding each open
/// until the returned task is aborted: its URL, and a message per accepted connection.
async fn tarpit() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let (accepted, connections) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
            let _ = accepted.send(());
        }
    });
    (url, connections, held)
}

backend_test!(a_tarpit_in_one_app_does_not_hold_up_another_apps_deliveries);
async fn a_tarpit_in_one_app_does_not_hold_up_another_apps_deliveries(t: TestDb) {
    let mut args = fast_args(true);
    args.dispatch_workers = 8;
    args.webhook_timeout_sec = 20;
    let (app, key, sink, base) = setup_with(args, t).await;
    let (tarpit_url, _connections, held) = tarpit().await;
    // App "shop": 20 triggers on the tarpit, and a backlog for each.
    for _ in 0..20 {
        trigger(
            &app,
            &key,
            json!({"kind": "topic", "topic": "slow"}),
            &tarpit_url,
            3,
        )
        .await;
    }
    for _ in 0..5 {
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/apps/shop/topics/slow/events",
                Some(&key),
                Some(json!({"data": 1})),
            )
            .await;
        assert_eq!(status, 201);
    }
    // App "blog": one trigger on a fast endpoint; each event's delivery is timed.
    app.create_app("blog").await;
    let blog = app.create_key("blog", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/blog/triggers",
            Some(&blog),
            Some(json!({
                "source": {"kind": "topic", "topic": "news"},
                "handler": {"kind": "webhook", "url": format!("{base}/fast")},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_millis(200)).await; // the tarpit's backlog is in flight
    let mut latencies = Vec::new();
    for n in 1..=20 {
        let started = tokio::time::Instant::now();
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/apps/blog/topics/news/events",
                Some(&blog),
                Some(json!({"data": n})),
            )
            .await;
        assert_eq!(status, 201);
        while sink.received("fast").len() < n && started.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < Duration::from_secs(1),
        "p99 {p99:?}, all {latencies:?}"
    );
    held.abort();
    app.stop().await;
}

backend_test!(an_app_at_its_share_has_its_next_rows_claimed_while_it_waits);
async fn an_app_at_its_share_has_its_next_rows_claimed_while_it_waits(t: TestDb) {
    // Four workers: one app alone may have two deliveries in flight. With nothing else
    // due, its next rows are claimed while those two are on their way, so a finished
    // delivery is followed by the next at once rather than after a claim's round trips
    // (without that, a draining backlog left the workers idle a third of the time).
    let mut args = fast_args(true);
    args.dispatch_workers = 4;
    args.webhook_timeout_sec = 20;
    let (app, key, _sink, _base) = setup_with(args, t).await;
    let (tarpit_url, mut connections, held) = tarpit().await;
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &tarpit_url,
        3,
    )
    .await;
    let publish_batch = |count: usize| {
        let events: Vec<Value> = (0..count)
            .map(|n| json!({"topic": "orders", "data": {"n": n}}))
            .collect();
        app.call(
            Method::POST,
            "/v1/apps/shop/events",
            Some(&key),
            Some(json!({"events": events})),
        )
    };
    // Two events: both in flight, the app at its share, nothing waiting.
    assert_eq!(publish_batch(2).await.0, 201);
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), connections.recv())
            .await
            .expect("both deliveries reach the endpoint");
    }
    // Twenty more: eight of them (twice the node's workers) are claimed ahead, none goes
    // out beside the two.
    assert_eq!(publish_batch(20).await.0, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let leased = loop {
        let leased: i64 = picloud_manager_core::on_db!(&app.t.db, pool, {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE lease_until IS NOT NULL")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if leased >= 10 || tokio::time::Instant::now() > deadline {
            break leased;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(leased, 10, "two rows in flight and eight claimed ahead");
    assert!(
        connections.try_recv().is_err(),
        "only the app's share of the workers is in flight"
    );
    held.abort();
    app.stop().await;
}

backend_test!(delivery_errors_are_only_classes_without_deliveries_manage);
async fn delivery_errors_are_only_classes_without_deliveries_manage(t: TestDb) {
    let (app, key, sink, base) = setup(true, t).await;
    sink.script("hook", &[500]);
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        1,
    )
    .await;
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        "http://127.0.0.1:9/closed",
        1,
    )
    .await;
    publish(&app, &key).await;
    settle(&app).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let manager = app
        .create_key("shop", &["app:read", "deliveries:manage"])
        .await;
    let errors = |key: String| {
        let app = &app;
        async move {
            let (status, list) = app
                .call(Method::GET, "/v1/apps/shop/deliveries", Some(&key), None)
                .await;
            assert_eq!(status, 200, "{list}");
            let mut seen = Vec::new();
            for delivery in list["deliveries"].as_array().unwrap() {
                let id = delivery["id"].as_i64().unwrap();
                let (_, detail) = app
                    .call(
                        Method::GET,
                        &format!("/v1/apps/shop/deliveries/{id}"),
                        Some(&key),
                        None,
                    )
                    .await;
                let attempt = &detail["attempts"][0];
                seen.push((
                    delivery["last_error"].as_str().unwrap().to_owned(),
                    attempt["error"].as_str().unwrap().to_owned(),
                    attempt["status_code"].as_i64(),
                ));
            }
            let (_, dead) = app
                .call(Method::GET, "/v1/apps/shop/dead-letters", Some(&key), None)
                .await;
            let mut dead: Vec<String> = dead["dead_letters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["last_error"].as_str().unwrap().to_owned())
                .collect();
            seen.sort();
            dead.sort();
            (seen, dead)
        }
    };
    let (seen, dead) = errors(reader).await;
    assert_eq!(
        seen,
        [
            (
                "connect_failed".to_owned(),
                "connect_failed".to_owned(),
                None
            ),
            (
                "http_status".to_owned(),
                "http_status".to_owned(),
                Some(500)
            ),
        ]
    );
    assert_eq!(dead, ["connect_failed", "http_status"]);
    let (seen, dead) = errors(manager).await;
    assert!(
        seen[0].1.starts_with("HTTP 500") && seen[1].1.starts_with("connection failed"),
        "{seen:?}"
    );
    assert!(dead.iter().all(|e| e.contains(' ')), "{dead:?}");
    app.stop().await;
}

/// Serves `/page` (a 500 with a 1,200-byte HTML page, Content-Length given) and
/// `/chunked` (a 200 with the JSON `[1,2]` in two chunks, no Content-Length) on loopback.
async fn answering_receiver() -> String {
    use axum::http::{header::CONTENT_TYPE, StatusCode};
    use axum::routing::post;
    let router = axum::Router::new()
        .route(
            "/page",
            post(|| async {
                let page = "<p>".repeat(400);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(CONTENT_TYPE, "text/html")],
                    page,
                )
            }),
        )
        .route(
            "/chunked",
            post(|| async {
                let chunks = ["[1,", "2]"].map(|c| Ok::<_, std::io::Error>(c.to_owned()));
                let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
                ([(CONTENT_TYPE, "application/json")], body)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

backend_test!(every_reader_sees_a_responses_size_and_only_managers_its_text);
async fn every_reader_sees_a_responses_size_and_only_managers_its_text(t: TestDb) {
    let (app, key, _sink, _base) = setup(true, t).await;
    let receiver = answering_receiver().await;
    let orders = json!({"kind": "topic", "topic": "orders"});
    let (page, _) = trigger(&app, &key, orders.clone(), &format!("{receiver}/page"), 1).await;
    trigger(&app, &key, orders, &format!("{receiver}/chunked"), 1).await;
    publish(&app, &key).await;
    settle(&app).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let manager = app
        .create_key("shop", &["app:read", "deliveries:manage"])
        .await;
    // (trigger, status, size, text) of each delivery's first attempt, as `key` sees it.
    let attempts = |key: String| {
        let (app, page) = (&app, &page);
        async move {
            let (_, list) = app
                .call(Method::GET, "/v1/apps/shop/deliveries", Some(&key), None)
                .await;
            let mut seen = Vec::new();
            for delivery in list["deliveries"].as_array().unwrap() {
                let id = delivery["id"].as_i64().unwrap();
                let path = format!("/v1/apps/shop/deliveries/{id}");
                let (status, detail) = app.call(Method::GET, &path, Some(&key), None).await;
                assert_eq!(status, 200, "{detail}");
                let attempt = &detail["attempts"][0];
                seen.push((
                    delivery["trigger_id"].as_str().unwrap() == page.as_str(),
                    attempt["status_code"].as_i64(),
                    attempt["response_bytes"].as_i64(),
                    attempt["response_body"].as_str().map(str::to_owned),
                ));
            }
            seen.sort();
            seen
        }
    };
    assert_eq!(
        attempts(reader).await,
        [
            (false, Some(200), Some(5), None),
            (true, Some(500), Some(1200), None),
        ]
    );
    assert_eq!(
        attempts(manager).await,
        [
            (false, Some(200), Some(5), Some("[1,2]".to_owned())),
            (true, Some(500), Some(1200), None),
        ],
        "an HTML page is never kept, whoever asks"
    );
    app.stop().await;
}

backend_test!(an_app_at_its_share_of_the_workers_goes_on_as_deliveries_finish);
async fn an_app_at_its_share_of_the_workers_goes_on_as_deliveries_finish(t: TestDb) {
    // Four workers: one app may have two deliveries in flight. The poll interval is far
    // longer than `settle` waits, so only finished deliveries can bring on the claims
    // of the rest (an app at its share once slept until the next poll).
    let mut args = fast_args(true);
    args.dispatch_workers = 4;
    args.dispatch_poll_ms = 60_000;
    let (app, key, sink, base) = setup_with(args, t).await;
    sink.script("hook", &[200]);
    let (_, secret) = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        &format!("{base}/hook"),
        3,
    )
    .await;
    sink.secret("hook", &secret);
    let events: Vec<Value> = (0..40)
        .map(|n| json!({"topic": "orders", "data": {"n": n}}))
        .collect();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            Some(&key),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let rows = settle(&app).await;
    assert_eq!(rows.len(), 40);
    assert!(
        rows.iter().all(|(_, state, _)| state == "delivered"),
        "{rows:?}"
    );
    assert_eq!(sink.received("hook").len(), 40);
    app.stop().await;
}
