//! Outbox sources end to end, PiCloud's storage on both backends and the app's own
//! database a second, real PostgreSQL database: what the app's transactions commit is
//! published exactly once, in commit order per topic; what rolls back never is; a row
//! that commits late is still relayed; bad rows become dead letters without blocking
//! the rest; the database password never comes back out of the API.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{spawn_app, spawn_app_with, spawn_existing, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::sources::app_schema;
use picloud_manager_core::testing::{app_database, TestDb};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// A server with app "shop" and its app:admin key, and the app's own database with the
/// outbox schema installed; `None` without a test PostgreSQL server.
struct Setup {
    app: TestApp,
    key: String,
    app_db_url: String,
    app_db: PgPool,
}

/// Test settings that let sources reach the app database on loopback.
fn source_args() -> ServeArgs {
    let mut args = ServeArgs::for_tests();
    args.source_allow_private = true;
    args
}

async fn setup(t: TestDb) -> Option<Setup> {
    let Some(app_db_url) = app_database().await else {
        eprintln!("skipped: the app database needs a test PostgreSQL server");
        return None;
    };
    app_schema::install(&app_db_url, "picloud").await.unwrap();
    let app_db = PgPoolOptions::new()
        .max_connections(20)
        .connect(&app_db_url)
        .await
        .unwrap();
    let app = spawn_app_with(t, source_args()).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    Some(Setup {
        app,
        key,
        app_db_url,
        app_db,
    })
}

impl Setup {
    /// Adds the app database as a source of "shop"; returns the source.
    async fn add_source(&self) -> Value {
        let (status, body) = self
            .app
            .call(
                Method::POST,
                "/v1/apps/shop/sources",
                Some(&self.key),
                Some(json!({"kind": "postgres_outbox", "database_url": self.app_db_url})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Adds a dead letter of `source` for app-outbox row `row`, as the relay writes one
    /// for a row it refused, holding a row (to topic "orders") that could be published now.
    async fn source_dead_letter(&self, source: &str, row: i64, data: Value) {
        let payload =
            json!({"topic": "orders", "type": "placed", "data": data, "idempotency_key": null});
        picloud_manager_core::on_db!(&self.app.t.db, pool, {
            sqlx::query(
                "INSERT INTO dead_letters (app_id, outbox_id, trigger_id, topic, seq, attempts,
                     last_error, created_at, payload)
                 VALUES ('shop', $1, $2, 'orders', 0, 1, 'too large', 0, $3)",
            )
            .bind(row)
            .bind(source)
            .bind(payload.to_string())
            .execute(pool)
            .await
            .unwrap();
        });
    }

    /// The id of the dead letter of app-outbox row `row`.
    async fn dead_letter_id(&self, row: i64) -> i64 {
        let (_, body) = self
            .app
            .call(
                Method::GET,
                "/v1/apps/shop/dead-letters",
                Some(&self.key),
                None,
            )
            .await;
        body["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["outbox_id"] == row)
            .unwrap_or_else(|| panic!("no dead letter of row {row}: {body}"))["id"]
            .as_i64()
            .unwrap()
    }

    /// The events of `topic` (every page), once there are at least `count` (bounded wait).
    async fn events(&self, topic: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events = all_events(&self.app, &self.key, topic).await;
            if events.len() >= count {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {count} events in {topic}, only {}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the app's outbox is empty: everything in it was relayed.
    async fn drained(&self) {
        drained(&self.app_db, Duration::from_secs(30)).await;
    }

    /// The app publishes `data` to `topic` in a transaction of its own and commits.
    async fn publish(&self, topic: &str, event_type: &str, data: Value, key: Option<&str>) {
        sqlx::query("SELECT picloud.publish($1, $2, $3::jsonb, $4)")
            .bind(topic)
            .bind(event_type)
            .bind(data.to_string())
            .bind(key)
            .execute(&self.app_db)
            .await
            .unwrap();
    }
}

/// Waits (at most `within`) until the outbox of the app database `app_db` is empty.
async fn drained(app_db: &PgPool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM picloud.outbox")
            .fetch_one(app_db)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} rows never relayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One app transaction of the concurrent-writers test: what it published, and when it
/// began and committed on the test's clock.
struct Transaction {
    id: String,
    events: usize,
    committed: bool,
    began: tokio::time::Instant,
    ended: tokio::time::Instant,
}

backend_test!(committed_transactions_are_published_once_in_commit_order);
async fn committed_transactions_are_published_once_in_commit_order(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    s.add_source().await;
    // 8 writers, 20 transactions each, 1 to 3 events per transaction, a pause before
    // the commit, and every fourth transaction rolled back.
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let pool = s.app_db.clone();
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut state = writer * 7919 + 1;
            for n in 0..20u64 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let events = 1 + (state >> 33) as usize % 3;
                let pause = Duration::from_millis((state >> 40) % 15);
                let commit = n % 4 != 3;
                let id = format!("w{writer}-t{n}");
                let mut conn = pool.acquire().await.unwrap();
                let began = tokio::time::Instant::now();
                let mut tx = conn.begin().await.unwrap();
                for position in 0..events {
                    sqlx::query("SELECT picloud.publish('orders', 'placed', $1::jsonb)")
                        .bind(json!({"tx": id, "position": position}).to_string())
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tokio::time::sleep(pause).await;
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
                let ended = tokio::time::Instant::now();
                done.push(Transaction {
                    id,
                    events,
                    committed: commit,
                    began,
                    ended,
                });
            }
            done
        }));
    }
    let mut transactions = Vec::new();
    for writer in writers {
        transactions.extend(writer.await.unwrap());
    }
    let expected: usize = transactions
        .iter()
        .filter(|t| t.committed)
        .map(|t| t.events)
        .sum();
    s.drained().await;
    let events = s.events("orders", expected).await;
    assert_eq!(
        events.len(),
        expected,
        "events published besides the committed ones"
    );

    // Exactly the committed events, each once, each transaction's in its own order.
    let mut seqs: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for event in &events {
        let tx = event["data"]["tx"].as_str().unwrap().to_owned();
        let position = event["data"]["position"].as_i64().unwrap();
        seqs.entry(tx)
            .or_default()
            .push((position, event["seq"].as_i64().unwrap()));
    }
    for t in &transactions {
        let got = seqs.get(&t.id).cloned().unwrap_or_default();
        if !t.committed {
            assert!(
                got.is_empty(),
                "rolled-back {} was published: {got:?}",
                t.id
            );
            continue;
        }
        let positions: Vec<i64> = got.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            (0..t.events as i64).collect::<Vec<_>>(),
            "{}",
            t.id
        );
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1),
            "{} out of order: {got:?}",
            t.id
        );
    }
    // A transaction that committed before another began has the lower seqs.
    let span = |id: &str| {
        let got = &seqs[id];
        (
            got.iter().map(|g| g.1).min().unwrap(),
            got.iter().map(|g| g.1).max().unwrap(),
        )
    };
    let committed: Vec<&Transaction> = transactions.iter().filter(|t| t.committed).collect();
    for first in &committed {
        for second in &committed {
            if first.ended < second.began {
                assert!(
                    span(&first.id).1 < span(&second.id).0,
                    "{} committed before {} began but has higher seqs",
                    first.id,
                    second.id
                );
            }
        }
    }
}

backend_test!(a_row_committed_late_is_still_relayed);
async fn a_row_committed_late_is_still_relayed(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    s.add_source().await;
    let mut slow = s.app_db.acquire().await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    let slow_id: i64 = sqlx::query_scalar("SELECT picloud.publish('orders', 'placed', '\"slow\"')")
        .fetch_one(&mut *slow_tx)
        .await
        .unwrap();
    s.publish("orders", "placed", json!("fast"), None).await;
    // The later row (a higher id) is relayed while the earlier one is not committed.
    let events = s.events("orders", 1).await;
    assert_eq!(events[0]["data"], "fast");
    slow_tx.commit().await.unwrap();
    let events = s.events("orders", 2).await;
    assert_eq!(events[1]["data"], "slow", "row {slow_id} was passed over");
    s.drained().await;
}

backend_test!(rows_met_again_are_not_published_twice);
async fn rows_met_again_are_not_published_twice(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    s.add_source().await;
    for n in 0..5 {
        s.publish("orders", "placed", json!(n), None).await;
    }
    // The app's own key dedupes as on the HTTP API: across rows, and against a
    // publish made over HTTP with the same key.
    let (status, _) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(&s.key),
            Some(json!({"data": "over http"})),
        )
        .await;
    assert_eq!(status, 201);
    s.publish("orders", "placed", json!("keyed"), Some("order-7"))
        .await;
    s.publish("orders", "placed", json!("keyed again"), Some("order-7"))
        .await;
    s.drained().await;
    let events = s.events("orders", 7).await;
    assert_eq!(events.len(), 7, "{events:?}");
    // A relay that stopped after PiCloud's commit but before its delete meets the same
    // rows again: put them back, ids and all.
    sqlx::query(
        "INSERT INTO picloud.outbox (id, topic, type, data) OVERRIDING SYSTEM VALUE
         SELECT g, 'orders', 'placed', to_jsonb(g - 1) FROM generate_series(1, 5) g",
    )
    .execute(&s.app_db)
    .await
    .unwrap();
    s.drained().await;
    s.publish("orders", "placed", json!("after"), None).await;
    let events = s.events("orders", 8).await;
    assert_eq!(
        events.len(),
        8,
        "rows met again were published again: {events:?}"
    );
    assert_eq!(events[7]["data"], "after");
}

backend_test!(bad_rows_become_dead_letters_and_the_rest_goes_on);
async fn bad_rows_become_dead_letters_and_the_rest_goes_on(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    let source = s.add_source().await;
    let source_id = source["id"].as_str().unwrap();
    s.publish("bad topic!", "placed", json!(1), None).await;
    s.publish("orders", "no spaces please", json!(2), None)
        .await;
    s.publish("orders", "placed", json!("x".repeat(300 * 1024)), None)
        .await;
    s.publish("orders", "placed", json!(3), Some("not a key\u{1}"))
        .await;
    s.publish("orders", "placed", json!("good"), None).await;
    s.drained().await;
    let events = s.events("orders", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"], "good");
    let (_, body) = s
        .app
        .call(
            Method::GET,
            "/v1/apps/shop/dead-letters",
            Some(&s.key),
            None,
        )
        .await;
    let mut dead = body["dead_letters"].as_array().cloned().unwrap();
    dead.sort_by_key(|d| d["outbox_id"].as_i64());
    assert_eq!(dead.len(), 4, "{body}");
    for (letter, row_id) in dead.iter().zip(1..) {
        assert_eq!(letter["trigger_id"], source_id);
        assert_eq!(letter["outbox_id"], row_id);
        assert!(
            letter["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{letter}"
        );
        let payload: Value = serde_json::from_str(letter["payload"].as_str().unwrap()).unwrap();
        assert!(payload["data"] != Value::Null, "{payload}");
    }
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("topic"),
        "{}",
        dead[0]
    );
    assert!(
        dead[2]["last_error"].as_str().unwrap().contains("large")
            || dead[2]["last_error"].as_str().unwrap().contains("bytes"),
        "{}",
        dead[2]
    );
}

backend_test!(sources_are_managed_without_showing_their_password);
async fn sources_are_managed_without_showing_their_password(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    let mut with_password = reqwest::Url::parse(&s.app_db_url).unwrap();
    with_password.set_password(Some("s3cret-pw")).unwrap();
    let with_password = with_password.to_string();
    for (body, why) in [
        (
            json!({"kind": "postgres_outbox", "database_url": "mysql://u@h/db"}),
            "postgres://",
        ),
        (
            json!({"kind": "postgres_outbox", "database_url": "nonsense"}),
            "URL",
        ),
        (
            json!({"kind": "kafka", "database_url": with_password}),
            "kind",
        ),
        (
            json!({"kind": "postgres_outbox", "database_url": with_password, "schema": "Bad;"}),
            "schema",
        ),
    ] {
        let (status, answer) = s
            .app
            .call(
                Method::POST,
                "/v1/apps/shop/sources",
                Some(&s.key),
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(why), "{answer}");
    }
    let (status, created) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/sources",
            Some(&s.key),
            Some(json!({"kind": "postgres_outbox", "database_url": with_password})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/apps/shop/sources/{id}");
    let (_, listed) = s
        .app
        .call(Method::GET, "/v1/apps/shop/sources", Some(&s.key), None)
        .await;
    let (_, got) = s.app.call(Method::GET, &path, Some(&s.key), None).await;
    for shown in [&created, &listed, &got] {
        assert!(
            !shown.to_string().contains("s3cret-pw"),
            "password shown: {shown}"
        );
    }
    assert_eq!(got["database_url"], s.app_db_url);
    // The relay connects and reports.
    s.publish("orders", "placed", json!(1), None).await;
    s.events("orders", 1).await;
    let status = wait_for(&s, &path, |source| {
        source["status"]["connected"] == true && source["status"]["relayed_total"] == 1
    })
    .await;
    assert_eq!(status["status"]["rows_waiting"], 0, "{status}");
    // Disabled, it relays nothing; enabled again, it catches up.
    let (code, disabled) = s
        .app
        .call(
            Method::PATCH,
            &path,
            Some(&s.key),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (code, &disabled["enabled"]),
        (200, &json!(false)),
        "{disabled}"
    );
    wait_for(&s, &path, |source| source["status"]["relay_node"].is_null()).await;
    s.publish("orders", "placed", json!(2), None).await;
    // A relay would have taken the row within a second or two; this wait can only let a
    // bug through, never fail a correct server.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM picloud.outbox")
        .fetch_one(&s.app_db)
        .await
        .unwrap();
    assert_eq!(waiting, 1, "a disabled source was relayed");
    s.app
        .call(
            Method::PATCH,
            &path,
            Some(&s.key),
            Some(json!({"enabled": true})),
        )
        .await;
    s.events("orders", 2).await;
    // Deleted, it is gone; a key without app:admin sees none of it.
    let reader = s.app.create_key("shop", &["app:read"]).await;
    let (code, _) = s.app.call(Method::GET, &path, Some(&reader), None).await;
    assert_eq!(code, 403);
    let (code, _) = s.app.call(Method::DELETE, &path, Some(&s.key), None).await;
    assert_eq!(code, 204);
    let (code, body) = s.app.call(Method::GET, &path, Some(&s.key), None).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("source_not_found"))
    );
}

backend_test!(an_unreachable_app_database_is_reported_and_retried);
async fn an_unreachable_app_database_is_reported_and_retried(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    // A port nothing listens on: take one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, created) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/sources",
            Some(&s.key),
            Some(json!({
                "kind": "postgres_outbox",
                "database_url": format!("postgres://relay:pw@127.0.0.1:{port}/app")
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/v1/apps/shop/sources/{}", created["id"].as_str().unwrap());
    let failing = wait_for(&s, &path, |source| {
        !source["status"]["last_error"].is_null()
    })
    .await;
    assert_eq!(failing["status"]["connected"], false, "{failing}");
    let error = failing["status"]["last_error"].as_str().unwrap();
    assert!(error.contains("refused"), "the cause is lost: {error}");
    assert!(!failing.to_string().contains(":pw@"), "{failing}");
    // Other publishes go on meanwhile.
    let (code, _) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(&s.key),
            Some(json!({"data": 1})),
        )
        .await;
    assert_eq!(code, 201);
}

backend_test!(a_source_database_must_be_at_an_allowed_address);
async fn a_source_database_must_be_at_an_allowed_address(t: TestDb) {
    // By default an app admin cannot point PiCloud at internal addresses: its own
    // database, loopback services, the metadata endpoint.
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    for url in [
        "postgres://relay:pw@127.0.0.1:5432/app",
        "postgres://relay:pw@169.254.169.254/app",
        "postgres://relay:pw@[::1]/app",
        "postgres://relay@%2Fvar%2Frun%2Fpostgresql/app",
        "postgres://relay:pw@203.0.113.9/app?hostaddr=10.0.0.1",
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/sources",
                Some(&key),
                Some(json!({"kind": "postgres_outbox", "database_url": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("PICLOUD_SOURCE_ALLOW_PRIVATE"),
            "{message}"
        );
        assert!(!message.contains("pw"), "{message}");
    }
    let (_, list) = app
        .call(Method::GET, "/v1/apps/shop/sources", Some(&key), None)
        .await;
    assert_eq!(list["sources"], json!([]), "{list}");
    let t = app.stop().await;

    // A source added where it was allowed is checked again when its relay connects: on a
    // node without the allowance it never connects, and its rows wait.
    let Some(app_db_url) = app_database().await else {
        eprintln!("skipped: the app database needs a test PostgreSQL server");
        return;
    };
    app_schema::install(&app_db_url, "picloud").await.unwrap();
    let allowed = spawn_existing(t, source_args()).await;
    let (status, source) = allowed
        .call(
            Method::POST,
            "/v1/apps/shop/sources",
            Some(&key),
            Some(json!({"kind": "postgres_outbox", "database_url": app_db_url})),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let path = format!("/v1/apps/shop/sources/{}", source["id"].as_str().unwrap());
    let t = allowed.stop().await;
    let mut app_db = sqlx::PgConnection::connect(&app_db_url).await.unwrap();
    sqlx::query("SELECT picloud.publish('orders', 'placed', '{\"id\": 1}')")
        .execute(&mut app_db)
        .await
        .unwrap();
    let strict = spawn_existing(t, ServeArgs::for_tests()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let (_, source) = strict.call(Method::GET, &path, Some(&key), None).await;
        if !source["status"]["last_error"].is_null() {
            break source;
        }
        assert!(tokio::time::Instant::now() < deadline, "{source}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = refused["status"]["last_error"].as_str().unwrap();
    assert!(error.contains("refused address"), "{error}");
    assert_eq!(refused["status"]["connected"], false, "{refused}");
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM picloud.outbox")
        .fetch_one(&mut app_db)
        .await
        .unwrap();
    assert_eq!(waiting, 1, "the row left the app database");
    let (status, _) = strict
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 404, "nothing was published to orders");
}

/// Source `path` once `ready` holds for it (bounded wait).
async fn wait_for(s: &Setup, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, source) = s.app.call(Method::GET, path, Some(&s.key), None).await;
        if ready(&source) {
            return source;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test!(the_documented_grants_are_enough);
async fn the_documented_grants_are_enough(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    // Roles are the server's, not the database's: names of their own per test.
    let suffix = picloud_shared::ids::random_id("r").to_lowercase();
    let (relay, writer) = (format!("relay_{suffix}"), format!("app_{suffix}"));
    for statement in [
        format!("CREATE ROLE {relay} LOGIN PASSWORD 'relay-pw'"),
        format!("CREATE ROLE {writer} LOGIN PASSWORD 'app-pw'"),
        // docs/sources.md, "Grants":
        format!("GRANT USAGE ON SCHEMA picloud TO {relay}"),
        format!("GRANT SELECT, DELETE ON picloud.outbox TO {relay}"),
        format!("GRANT USAGE ON SCHEMA picloud TO {writer}"),
        format!("GRANT EXECUTE ON FUNCTION picloud.publish(TEXT, TEXT, JSONB, TEXT) TO {writer}"),
    ] {
        sqlx::query(&statement).execute(&s.app_db).await.unwrap();
    }
    let as_role = |role: &str, password: &str| {
        let mut url = reqwest::Url::parse(&s.app_db_url).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    };
    let (status, body) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/sources",
            Some(&s.key),
            Some(json!({"kind": "postgres_outbox", "database_url": as_role(&relay, "relay-pw")})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let app_role = PgPoolOptions::new()
        .max_connections(1)
        .connect(&as_role(&writer, "app-pw"))
        .await
        .unwrap();
    sqlx::query("SELECT picloud.publish('orders', 'placed', '{\"by\": \"app role\"}')")
        .execute(&app_role)
        .await
        .unwrap();
    let events = s.events("orders", 1).await;
    assert_eq!(events[0]["data"]["by"], "app role");
    // The app's role can publish and nothing else: the outbox is not its to read.
    let read = sqlx::query("SELECT * FROM picloud.outbox")
        .execute(&app_role)
        .await;
    assert!(read.is_err(), "the app role could read the outbox");
    app_role.close().await;
}

/// The app publishes `count` rows to "orders" with data 0..count, in one transaction.
async fn backlog(app_db: &PgPool, count: usize) {
    sqlx::query(
        "INSERT INTO picloud.outbox (topic, type, data)
         SELECT 'orders', 'placed', to_jsonb(g) FROM generate_series(0, $1 - 1) g",
    )
    .bind(count as i64)
    .execute(app_db)
    .await
    .unwrap();
}

/// Checks that `events` carry the data 0..count, each once.
fn each_once(events: &[Value], count: usize) {
    let mut seen: Vec<i64> = events.iter().map(|e| e["data"].as_i64().unwrap()).collect();
    seen.sort();
    let duplicates = seen.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(duplicates, 0, "{duplicates} rows published twice");
    assert_eq!(seen, (0..count as i64).collect::<Vec<_>>(), "rows missing");
}

/// Every event of `topic` (all pages).
async fn all_events(app: &TestApp, key: &str, topic: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e: &Value| e["seq"].as_i64().unwrap());
        let path = format!("/v1/apps/shop/topics/{topic}/events?after={after}&limit=1000");
        let (status, page) = app.call(Method::GET, &path, Some(key), None).await;
        if status == 404 {
            return events; // no such topic yet
        }
        assert_eq!(status, 200, "{page}");
        let got = page["events"].as_array().cloned().unwrap_or_default();
        if got.is_empty() {
            return events;
        }
        events.extend(got);
    }
}

backend_test!(a_subscriber_sees_every_relayed_event_once);
async fn a_subscriber_sees_every_relayed_event_once(t: TestDb) {
    use crate::common::sse::Subscribe;
    let Some(s) = setup(t).await else { return };
    s.app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&s.key),
            Some(json!({"name": "orders"})),
        )
        .await;
    s.app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/orders/external",
            Some(&s.key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    let (status, token) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/subscriber-tokens",
            Some(&s.key),
            Some(json!({"topics": ["orders"]})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap();
    let mut subscriber = s
        .app
        .subscribe(
            "shop",
            &["orders"],
            Subscribe {
                token: Some(token),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    subscriber.expect("hello").await;
    s.add_source().await;
    backlog(&s.app_db, 300).await;
    for n in 300..400 {
        s.publish("orders", "placed", json!(n), None).await;
    }
    let frames = subscriber.events(400).await;
    let events: Vec<Value> = frames.iter().map(|f| f.data.clone()).collect();
    each_once(&events, 400);
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "frames out of order");
}

backend_test!(the_app_database_going_away_mid_relay_loses_nothing);
async fn the_app_database_going_away_mid_relay_loses_nothing(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    // The test's own connections are named, so only the relay's are cut.
    let options: sqlx::postgres::PgConnectOptions = s.app_db_url.parse().unwrap();
    let test_db = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.application_name("picloud-test"))
        .await
        .unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&test_db)
        .await
        .unwrap();
    // ALTER DATABASE is run from another database of the server.
    let admin_url = std::env::var(picloud_manager_core::testing::TEST_DATABASE_URL_ENV).unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .unwrap();
    let cut = |allow: bool| {
        let (test_db, admin) = (test_db.clone(), admin.clone());
        let database = database.clone();
        async move {
            sqlx::query(&format!(
                "ALTER DATABASE {database} ALLOW_CONNECTIONS {allow}"
            ))
            .execute(&admin)
            .await
            .unwrap();
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name <> 'picloud-test'",
            )
            .execute(&test_db)
            .await
            .unwrap();
        }
    };
    backlog(&test_db, 20_000).await;
    let source = s.add_source().await;
    let path = format!("/v1/apps/shop/sources/{}", source["id"].as_str().unwrap());
    // Cut the relay off while it works through the backlog, twice; the second time the
    // database refuses new connections until the relay has reported the failure.
    s.events("orders", 1).await;
    cut(true).await;
    s.events("orders", 2001).await;
    cut(false).await;
    wait_for(&s, &path, |source| {
        !source["status"]["last_error"].is_null()
    })
    .await;
    sqlx::query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    drained(&test_db, Duration::from_secs(60)).await;
    each_once(&all_events(&s.app, &s.key, "orders").await, 20_000);
    wait_for(&s, &path, |source| source["status"]["connected"] == true).await;
}

backend_test!(two_nodes_relay_a_source_once_and_hand_it_over);
async fn two_nodes_relay_a_source_once_and_hand_it_over(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    let source = s.add_source().await;
    let path = format!("/v1/apps/shop/sources/{}", source["id"].as_str().unwrap());
    let first = wait_for(&s, &path, |source| source["status"]["connected"] == true).await;
    let holder = first["status"]["relay_node"].clone();
    // A node of its own pool: stopping the first closes the first's.
    let second = spawn_existing(s.app.t.another_node(s.app.t.url.clone()), source_args()).await;
    backlog(&s.app_db, 3000).await;
    s.drained().await;
    // The first node stops (cleanly): the second takes the source over at once.
    let Setup {
        app, key, app_db, ..
    } = s;
    // Kept: on SQLite it holds the database file the second node uses.
    let _database = app.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let taken = loop {
        let (_, source) = second.call(Method::GET, &path, Some(&key), None).await;
        let node = &source["status"]["relay_node"];
        if !node.is_null() && *node != holder {
            break source;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never taken over: {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(taken["status"]["relay_node"], holder);
    sqlx::query(
        "INSERT INTO picloud.outbox (topic, type, data)
         SELECT 'orders', 'placed', to_jsonb(g) FROM generate_series(3000, 3999) g",
    )
    .execute(&app_db)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = all_events(&second, &key, "orders").await;
        if events.len() >= 4000 {
            each_once(&events, 4000);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 4000",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

backend_test!(kill_9_mid_relay_publishes_each_row_once_after_the_restart);
async fn kill_9_mid_relay_publishes_each_row_once_after_the_restart(t: TestDb) {
    use crate::common::Server;
    const ROWS: usize = 20_000;
    let Some(app_db_url) = app_database().await else {
        eprintln!("skipped: the app database needs a test PostgreSQL server");
        return;
    };
    app_schema::install(&app_db_url, "picloud").await.unwrap();
    let app_db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&app_db_url)
        .await
        .unwrap();
    backlog(&app_db, ROWS).await;
    let dir = t.dir.path().join("data");
    let args = [
        "--database-url",
        t.url.as_str(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--dispatch-lease-sec",
        "3",
        "--webhook-timeout-sec",
        "2",
        "--source-allow-private",
        "true",
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
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let source = server
        .send(
            Method::POST,
            "/v1/apps/shop/sources",
            &key,
            json!({"kind": "postgres_outbox", "database_url": app_db_url}),
        )
        .await;
    assert!(source["id"].is_string(), "{source}");
    // Crash once the relay is under way: some rows published, most still waiting.
    let client = reqwest::Client::new();
    let read = |addr: String, after: i64| {
        let request = client
            .get(format!(
                "http://{addr}/v1/apps/shop/topics/orders/events?after={after}&limit=1000"
            ))
            .bearer_auth(&key);
        async move {
            let page: Value = request.send().await.unwrap().json().await.unwrap();
            page["events"].as_array().cloned().unwrap_or_default()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while read(server.addr.clone(), 0).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.crash().await;
    let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM picloud.outbox")
        .fetch_one(&app_db)
        .await
        .unwrap();
    assert!(waiting > 0, "the crash came after the end");

    let mut server = Server::start(&args).await;
    drained(&app_db, Duration::from_secs(60)).await;
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e: &Value| e["seq"].as_i64().unwrap());
        let page = read(server.addr.clone(), after).await;
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    each_once(&events, ROWS);
    server.terminate();
    assert_eq!(server.wait().await, 0);
}

backend_test!(a_source_dead_letter_replays_by_publishing_its_row_once);
async fn a_source_dead_letter_replays_by_publishing_its_row_once(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    let source = s.add_source().await;
    let source_id = source["id"].as_str().unwrap();
    s.publish("bad topic!", "placed", json!(1), None).await;
    s.drained().await;
    // A row the relay refused for a reason the operator has since fixed (say, a larger
    // PICLOUD_MAX_EVENT_BYTES): its dead letter keeps the row.
    s.source_dead_letter(source_id, 99, json!({"n": 7})).await;
    // Still refused: a 400 that says why.
    let (status, answer) = s
        .app
        .call(
            Method::POST,
            &format!(
                "/v1/apps/shop/dead-letters/{}/replay",
                s.dead_letter_id(1).await
            ),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still cannot be published"));
    // Publishable now: replayed twice, published once.
    for _ in 0..2 {
        let (status, answer) = s
            .app
            .call(
                Method::POST,
                &format!(
                    "/v1/apps/shop/dead-letters/{}/replay",
                    s.dead_letter_id(99).await
                ),
                Some(&s.key),
                None,
            )
            .await;
        assert_eq!((status, &answer["count"]), (200, &json!(1)), "{answer}");
    }
    let events = s.events("orders", 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"], json!({"n": 7}));
    // "Replay all" leaves a source's dead letters alone.
    let (status, answer) = s
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/dead-letters/replay",
            Some(&s.key),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, &answer["count"]), (200, &json!(0)), "{answer}");
}

backend_test!(a_selection_of_dead_letters_replays_source_rows_too);
async fn a_selection_of_dead_letters_replays_source_rows_too(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    let source = s.add_source().await;
    let source_id = source["id"].as_str().unwrap();
    s.publish("bad topic!", "placed", json!(1), None).await;
    s.drained().await;
    s.source_dead_letter(source_id, 99, json!({"n": 8})).await;
    let (bad, good) = (s.dead_letter_id(1).await, s.dead_letter_id(99).await);
    let replay = |ids: Vec<i64>| {
        s.app.call(
            Method::POST,
            "/v1/apps/shop/dead-letters/replay",
            Some(&s.key),
            Some(json!({"ids": ids})),
        )
    };
    // One selected row still cannot be published: a 400 naming it, and nothing replayed.
    let (status, answer) = replay(vec![bad, good]).await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("dead letter {bad}")), "{message}");
    let (_, letter) = s
        .app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/dead-letters/{good}"),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(letter["replayed_at"], Value::Null, "{letter}");
    // The rest of the selection replays: the row is published, once however often.
    for _ in 0..2 {
        let (status, answer) = replay(vec![good]).await;
        assert_eq!((status, &answer["count"]), (200, &json!(1)), "{answer}");
    }
    let events = s.events("orders", 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"], json!({"n": 8}));
}

backend_test!(a_refused_row_reaches_the_dead_letter_triggers_once);
async fn a_refused_row_reaches_the_dead_letter_triggers_once(t: TestDb) {
    let Some(s) = setup(t).await else { return };
    crate::script_handlers::save(
        &s.app,
        &s.key,
        "on_dead",
        r#"pubsub::publish("alerts", "dead", #{ trigger: event.dead_letter.trigger_id, row: event.event.source_row });"#,
    )
    .await;
    crate::dispatch::create_trigger(
        &s.app,
        &s.key,
        json!({"kind": "dead_letter"}),
        json!({"kind": "script", "script": "on_dead"}),
        3,
    )
    .await;
    let source = s.add_source().await;
    s.publish("bad topic!", "placed", json!({"id": 7}), None)
        .await;
    s.drained().await;
    // Met again (a relay that stopped before its delete): no second dead letter, no
    // second alert.
    sqlx::query(
        "INSERT INTO picloud.outbox (id, topic, type, data) OVERRIDING SYSTEM VALUE
         VALUES (1, 'bad topic!', 'placed', '{\"id\": 7}')",
    )
    .execute(&s.app_db)
    .await
    .unwrap();
    s.drained().await;
    s.publish("orders", "placed", json!("after"), None).await;
    s.events("orders", 1).await;
    s.events("alerts", 1).await;
    crate::dispatch::settle(&s.app).await; // every delivery made, a second one too
    let alerts = s.events("alerts", 1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["data"]["trigger"], source["id"]);
    assert_eq!(
        alerts[0]["data"]["row"],
        json!({"topic": "bad topic!", "type": "placed", "data": {"id": 7}, "idempotency_key": null})
    );
}
