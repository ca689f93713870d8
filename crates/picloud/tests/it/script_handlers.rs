//! Script trigger handlers end to end, on both backends: a script runs for each event with
//! the webhook's body as `event` and its `delivery` id, publishes through the normal path
//! and is recorded in the run log; a throwing script is a failed attempt, retried and
//! dead-lettered, and a dead_letter trigger can run a script too.

use std::time::Duration;

use crate::common::{spawn_app_with, TestApp};
use crate::dispatch::{create_trigger, fast_args, settle};
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

/// An app "shop" with an app:admin key, on a server with quick retries.
async fn setup(t: TestDb) -> (TestApp, String) {
    let app = spawn_app_with(t, fast_args(false)).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    (app, key)
}

/// Saves `source` as script `name` of app "shop".
pub(crate) async fn save(app: &TestApp, key: &str, name: &str, source: &str) {
    let path = format!("/v1/apps/shop/scripts/{name}");
    let (status, body) = app
        .call(
            Method::PUT,
            &path,
            Some(key),
            Some(json!({"source": source})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Creates a trigger on `source` running script `script`; returns its id.
async fn trigger(app: &TestApp, key: &str, source: Value, script: &str, attempts: u32) -> String {
    let handler = json!({"kind": "script", "script": script});
    let body = create_trigger(app, key, source, handler.clone(), attempts).await;
    assert_eq!(body["handler"], handler);
    body["id"].as_str().unwrap().to_owned()
}

/// The items under `field` of the list at `path` once there are `count` (bounded wait:
/// scripts publish as they run, and the run log is written moments after each run).
async fn list(app: &TestApp, key: &str, path: &str, field: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = app.call(Method::GET, path, Some(key), None).await;
        let items = body[field].as_array().cloned().unwrap_or_default();
        if items.len() >= count {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never listed {count} {field}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events of `topic` once it has `count`.
async fn events(app: &TestApp, key: &str, topic: &str, count: usize) -> Vec<Value> {
    let path = format!("/v1/apps/shop/topics/{topic}/events");
    list(app, key, &path, "events", count).await
}

/// The runs of script `name` once the run log holds `count`.
async fn runs(app: &TestApp, key: &str, name: &str, count: usize) -> Vec<Value> {
    let path = format!("/v1/apps/shop/scripts/{name}/runs");
    list(app, key, &path, "runs", count).await
}

async fn publish(app: &TestApp, key: &str, topic: &str, data: Value) -> Value {
    let path = format!("/v1/apps/shop/topics/{topic}/events");
    let body = json!({"type": "order.created", "data": data});
    let (status, event) = app.call(Method::POST, &path, Some(key), Some(body)).await;
    assert_eq!(status, 201, "{event}");
    event
}

backend_test!(a_script_handler_runs_once_per_event_with_its_delivery);
async fn a_script_handler_runs_once_per_event_with_its_delivery(t: TestDb) {
    let (app, key) = setup(t).await;
    save(
        &app,
        &key,
        "on_order",
        r#"
log::info(`order ${event.data.n}, delivery ${delivery.id}, attempt ${delivery.attempt}`);
pubsub::publish("receipts", "receipt", #{ order: event.data.n, event_id: event.id });
"#,
    )
    .await;
    trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        "on_order",
        3,
    )
    .await;
    let first = publish(&app, &key, "orders", json!({"n": 1})).await;
    publish(&app, &key, "orders", json!({"n": 2})).await;

    let receipts = events(&app, &key, "receipts", 2).await;
    let mut orders: Vec<(i64, String)> = receipts
        .iter()
        .map(|e| {
            let data = &e["data"];
            (
                data["order"].as_i64().unwrap(),
                data["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    orders.sort();
    assert_eq!(orders[0], (1, first["id"].as_str().unwrap().to_owned()));
    assert_eq!(orders[1].0, 2);

    let rows = settle(&app).await;
    assert!(
        rows.iter()
            .all(|(_, state, attempts)| state == "delivered" && *attempts == 1),
        "{rows:?}"
    );
    let runs = runs(&app, &key, "on_order", 2).await;
    let (_, deliveries) = app
        .call(Method::GET, "/v1/apps/shop/deliveries", Some(&key), None)
        .await;
    for run in &runs {
        assert_eq!(
            (&run["kind"], &run["outcome"]),
            (&json!("handler"), &json!("ok"))
        );
        let delivery = run["delivery_id"].as_i64().unwrap();
        let message = run["logs"][0]["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!("delivery {delivery}, attempt 1")),
            "{message}"
        );
        assert!(
            deliveries["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == json!(delivery) && d["state"] == "delivered"),
            "{deliveries}"
        );
    }
    app.stop().await;
}

backend_test!(a_throwing_handler_retries_dead_letters_and_a_dead_letter_script_runs);
async fn a_throwing_handler_retries_dead_letters_and_a_dead_letter_script_runs(t: TestDb) {
    let (app, key) = setup(t).await;
    save(
        &app,
        &key,
        "flaky",
        r#"throw `out of stock for ${event.data.n}`;"#,
    )
    .await;
    save(
        &app,
        &key,
        "on_dead",
        r#"pubsub::publish("alerts", "dead", #{
            trigger: event.dead_letter.trigger_id,
            attempts: event.dead_letter.attempts,
            error: event.dead_letter.last_error,
            order: event.event.data.n,
        });"#,
    )
    .await;
    let failing = trigger(
        &app,
        &key,
        json!({"kind": "topic", "topic": "orders"}),
        "flaky",
        2,
    )
    .await;
    trigger(&app, &key, json!({"kind": "dead_letter"}), "on_dead", 2).await;
    publish(&app, &key, "orders", json!({"n": 7})).await;

    let alerts = events(&app, &key, "alerts", 1).await;
    let alert = &alerts[0]["data"];
    assert_eq!(
        (&alert["trigger"], &alert["attempts"], &alert["order"]),
        (&json!(failing), &json!(2), &json!(7))
    );
    let error = alert["error"].as_str().unwrap();
    assert!(
        error.starts_with("script 'flaky': ") && error.contains("out of stock for 7"),
        "{error}"
    );

    let rows = settle(&app).await;
    let states: Vec<(&str, i64)> = rows.iter().map(|(_, s, a)| (s.as_str(), *a)).collect();
    assert_eq!(states, [("dead", 2), ("delivered", 1)]);
    // Each attempt shows the script's error; its runs are in the run log.
    let (_, dead) = app
        .call(
            Method::GET,
            "/v1/apps/shop/deliveries?state=dead",
            Some(&key),
            None,
        )
        .await;
    let id = dead["deliveries"][0]["id"].as_i64().unwrap();
    let (_, detail) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/deliveries/{id}"),
            Some(&key),
            None,
        )
        .await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail}");
    assert!(attempts
        .iter()
        .all(|a| a["error"].as_str().unwrap().contains("out of stock for 7")));
    let runs = runs(&app, &key, "flaky", 2).await;
    assert!(runs
        .iter()
        .all(|r| r["outcome"] == "error" && r["delivery_id"] == json!(id)));
    // A reader without deliveries:manage sees only the error's class.
    let reader = app.create_key("shop", &["app:read"]).await;
    let (_, detail) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/deliveries/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(detail["attempts"][0]["error"], "script_failed");
    app.stop().await;
}

backend_test!(a_script_handler_must_name_a_script_the_app_has);
async fn a_script_handler_must_name_a_script_the_app_has(t: TestDb) {
    let (app, key) = setup(t).await;
    for (handler, why) in [
        (
            json!({"kind": "script", "script": "missing"}),
            "no script 'missing'",
        ),
        (json!({"kind": "script", "script": "bad name!"}), "handler"),
        (json!({"kind": "script"}), "script"),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                Some(&key),
                Some(json!({"source": {"kind": "topic", "topic": "orders"}, "handler": handler})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    app.stop().await;
}
