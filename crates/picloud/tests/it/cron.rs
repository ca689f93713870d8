//! Cron triggers end to end: a schedule fires a script or a webhook once per tick, with
//! two nodes on one PostgreSQL database and across a restart; ticks missed while no node
//! ran fire once (`catch_up: "one"`) or not at all (`"none"`).

use std::time::Duration;

use crate::common::{spawn_app_with, spawn_existing, TestApp};
use crate::dispatch::{create_trigger, fast_args};
use crate::script_handlers::save;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

/// A script that publishes each tick it runs for to topic "ticks".
const RECORD_TICK: &str = r#"
pubsub::publish("ticks", "tick", #{ at: event.scheduled_at, trigger: event.trigger_id });
"#;

/// The ticks recorded in topic "ticks", once there are at least `count`.
async fn ticks(app: &TestApp, key: &str, count: usize) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = app
            .call(
                Method::GET,
                "/v1/apps/shop/topics/ticks/events?limit=1000",
                Some(key),
                None,
            )
            .await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= count {
            return events
                .iter()
                .map(|e| e["data"]["at"].as_i64().unwrap())
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {count} ticks: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves a cron trigger's next tick to `at`, as if the server had been down since.
async fn next_tick_at(db: &picloud_manager_core::Db, trigger: &str, at: i64) {
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query("UPDATE triggers SET cron_next_at = $1 WHERE id = $2")
            .bind(at)
            .bind(trigger)
            .execute(pool)
            .await
            .unwrap();
    });
}

/// 2025-01-01T00:00:00Z and 2026-01-01T00:00:00Z, in ms: ticks of "0 0 1 1 *".
const NEW_YEAR_2025: i64 = 1_735_689_600_000;
const NEW_YEAR_2026: i64 = 1_767_225_600_000;

backend_test!(every_tick_fires_once_on_each_of_two_nodes_sharing_a_database);
async fn every_tick_fires_once_on_each_of_two_nodes_sharing_a_database(t: TestDb) {
    let app = spawn_app_with(t, fast_args(false)).await;
    // SQLite is one node's database; PostgreSQL's nodes share it.
    let second = match app.t.db.backend() {
        picloud_manager_core::db::Backend::Postgres => Some(app.second_node().await),
        picloud_manager_core::db::Backend::Sqlite => None,
    };
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    save(&app, &key, "record_tick", RECORD_TICK).await;
    let source = json!({"kind": "cron", "schedule": "* * * * * *"});
    let handler = json!({"kind": "script", "script": "record_tick"});
    let trigger = create_trigger(&app, &key, source, handler, 3).await;
    assert_eq!(
        trigger["source"],
        json!({"kind": "cron", "schedule": "* * * * * *", "timezone": "UTC", "catch_up": "one"})
    );
    let next = trigger["next_tick_at"].as_i64().unwrap();
    assert_eq!(next % 1000, 0, "a whole second: {next}");

    let mut seen = ticks(&app, &key, 4).await;
    seen.sort();
    let gaps: Vec<i64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap == 1000),
        "one tick a second, none twice, none skipped: {seen:?}"
    );
    assert!(seen[0] >= next, "{seen:?} start at {next}");
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}

backend_test!(ticks_missed_while_down_fire_once_with_catch_up_one);
async fn ticks_missed_while_down_fire_once_with_catch_up_one(t: TestDb) {
    let app = spawn_app_with(t, fast_args(false)).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    save(&app, &key, "record_tick", RECORD_TICK).await;
    let handler = json!({"kind": "script", "script": "record_tick"});
    let one = create_trigger(
        &app,
        &key,
        json!({"kind": "cron", "schedule": "0 0 1 1 *"}),
        handler.clone(),
        3,
    )
    .await;
    let none = create_trigger(
        &app,
        &key,
        json!({"kind": "cron", "schedule": "0 0 1 1 *", "catch_up": "none"}),
        handler,
        3,
    )
    .await;
    let admin_key = key.clone();
    let t = app.stop().await;
    // Down since before New Year 2025: two New Years went by.
    let db = t.reconnect().await;
    for trigger in [&one, &none] {
        next_tick_at(&db, trigger["id"].as_str().unwrap(), NEW_YEAR_2025).await;
    }
    db.close().await;
    let app = spawn_existing(t, fast_args(false)).await;
    let seen = ticks(&app, &admin_key, 1).await;
    assert_eq!(seen, [NEW_YEAR_2026], "the latest missed tick, once");
    // Both triggers now wait for the next New Year; the one with catch_up "none" fired
    // nothing.
    let (_, listed) = app
        .call(
            Method::GET,
            "/v1/apps/shop/triggers",
            Some(&admin_key),
            None,
        )
        .await;
    let next: Vec<&Value> = listed["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["next_tick_at"])
        .collect();
    assert_eq!(next, [&json!(1_798_761_600_000_i64); 2], "{listed}");
    let (_, deliveries) = app
        .call(
            Method::GET,
            "/v1/apps/shop/deliveries",
            Some(&admin_key),
            None,
        )
        .await;
    let fired: Vec<&Value> = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["trigger_id"])
        .collect();
    assert_eq!(fired, [&one["id"]], "{deliveries}");
    app.stop().await;
}

backend_test!(a_cron_trigger_calls_a_webhook_with_the_tick);
async fn a_cron_trigger_calls_a_webhook_with_the_tick(t: TestDb) {
    let app = spawn_app_with(t, fast_args(true)).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (sink, base) = crate::common::sink::Sink::start().await;
    sink.script("tick", &[200]);
    let trigger = create_trigger(
        &app,
        &key,
        json!({"kind": "cron", "schedule": "* * * * * *", "timezone": "Europe/Berlin"}),
        json!({"kind": "webhook", "url": format!("{base}/tick")}),
        3,
    )
    .await;
    sink.secret("tick", trigger["secret"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.received("tick").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no tick delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = &sink.received("tick")[0];
    assert!(got.signature_valid);
    assert_eq!(
        (&got.body["type"], &got.body["app"], &got.body["trigger_id"]),
        (&json!("cron.tick"), &json!("shop"), &trigger["id"])
    );
    assert_eq!(got.body["scheduled_at"].as_i64().unwrap() % 1000, 0);
    app.stop().await;
}

backend_test!(bad_schedules_are_a_400_naming_what_is_wrong);
async fn bad_schedules_are_a_400_naming_what_is_wrong(t: TestDb) {
    let app = spawn_app_with(t, fast_args(false)).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    for (source, why) in [
        (
            json!({"kind": "cron", "schedule": "61 * * * *"}),
            "schedule",
        ),
        (
            json!({"kind": "cron", "schedule": "every minute"}),
            "schedule",
        ),
        (json!({"kind": "cron"}), "schedule"),
        (
            json!({"kind": "cron", "schedule": "* * * * *", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"kind": "cron", "schedule": "* * * * *", "catch_up": "all"}),
            "one, none",
        ),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                Some(&key),
                Some(json!({"source": source, "handler": {"kind": "webhook", "url": "https://h.io/x"}})),
            )
            .await;
        assert_eq!(status, 400, "{source}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{source}: {body}"
        );
    }
    app.stop().await;
}
