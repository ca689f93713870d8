//! The dispatcher on both backends when code that should not fail does, with faults
//! injected through `Dispatcher::with_faults`: a delivery attempt that panics, a claim
//! query that fails. Deliveries go to a loopback receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picloud_manager_core::dispatcher::outbox::ClaimedRow;
use picloud_manager_core::dispatcher::{Dispatcher, DispatcherConfig, Faults};
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::triggers::{
    Handler, NewTrigger, Pacing, RetryPolicy, TopicPattern, TriggerSource, WebhookUrl,
};
use picloud_manager_core::{backend_test, on_db, Db};
use picloud_shared::AppId;
use tokio_util::sync::CancellationToken;

/// A loopback receiver answering 200; returns its URL and the seqs it received.
async fn receiver() -> (String, Arc<Mutex<Vec<i64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| async move {
            kept.lock()
                .unwrap()
                .push(body["seq"].as_i64().unwrap_or(-1));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, seen)
}

/// App `shop` with one trigger on `orders` and `events` events already committed, each
/// with one pending outbox row for the trigger. Returns the trigger id.
async fn seed(db: &Db, url: &str, max_attempts: u32, pacing: Pacing, events: i64) -> String {
    let app = AppId::parse("shop").unwrap();
    db.create_app(&app, "Shop").await.unwrap();
    let mut new = NewTrigger::new(
        TriggerSource::Topic {
            topic: TopicPattern::parse("orders").unwrap(),
        },
        Handler::Webhook {
            url: WebhookUrl::parse(url).unwrap(),
        },
    );
    new.retry = RetryPolicy::new(max_attempts, Some(vec![1])).unwrap();
    new.pacing = pacing;
    let trigger = db.create_trigger(&app, new).await.unwrap().trigger.id;
    on_db!(db, pool, {
        sqlx::query("INSERT INTO topics (app_id, name, last_seq, created_at, updated_at) VALUES ('shop', 'orders', $1, 0, 0)")
            .bind(events).execute(pool).await.unwrap();
        for seq in 1..=events {
            sqlx::query("INSERT INTO topic_events (app_id, topic, seq, id, event_type, payload, published_at)
                         VALUES ('shop', 'orders', $1, $2, 'message', $3, 0)")
                .bind(seq).bind(format!("evt_{seq}")).bind(b"{}".to_vec())
                .execute(pool).await.unwrap();
            sqlx::query("INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts, next_attempt_at, created_at, updated_at)
                         VALUES ('shop', $1, 'orders', $2, 'pending', 0, 0, 0, 0)")
                .bind(&trigger).bind(seq).execute(pool).await.unwrap();
        }
    });
    trigger
}

fn dispatcher(t: &TestDb, config: DispatcherConfig, faults: Faults) -> Dispatcher {
    Dispatcher::new(t.db.clone(), config, Default::default()).with_faults(faults)
}

/// `(seq, state, attempts)` of every outbox row, once none is pending (bounded).
async fn settled(db: &Db, within: Duration) -> Vec<(i64, String, i64)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows: Vec<(i64, String, i64)> = on_db!(db, pool, {
            sqlx::query_as(
                "SELECT seq, state, attempts FROM outbox WHERE dead_letter_id IS NULL ORDER BY seq",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        if rows.iter().all(|(_, state, _)| state != "pending") {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

backend_test!(a_panicking_delivery_is_a_failed_attempt_and_frees_its_paced_slot);
async fn a_panicking_delivery_is_a_failed_attempt_and_frees_its_paced_slot(t: TestDb) {
    let (url, seen) = receiver().await;
    let pacing = Pacing {
        max_in_flight: Some(1),
        max_per_second: None,
    };
    seed(&t.db, &url, 2, pacing, 3).await;
    let faults = Faults {
        panic_if: Some(Arc::new(|row: &ClaimedRow| row.seq == 1)),
        ..Faults::default()
    };
    let stop = CancellationToken::new();
    let dispatcher = dispatcher(&t, DispatcherConfig::for_tests(), faults);
    let running = tokio::spawn(dispatcher.run(stop.clone()));

    // The panicking row uses up its attempts and is dead-lettered; the trigger's only
    // in-flight slot comes back each time, so the other rows are delivered.
    let rows = settled(&t.db, Duration::from_secs(20)).await;
    assert_eq!(
        rows,
        [
            (1, "dead".to_owned(), 2),
            (2, "delivered".to_owned(), 1),
            (3, "delivered".to_owned(), 1),
        ]
    );
    assert_eq!(*seen.lock().unwrap(), [2, 3]);
    let errors: Vec<Option<String>> = on_db!(&t.db, pool, {
        sqlx::query_scalar("SELECT error FROM delivery_attempts ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.as_deref() == Some("internal error while delivering"))
            .count(),
        2,
        "{errors:?}"
    );
    stop.cancel();
    running.await.unwrap();
}

backend_test!(rows_claimed_as_probes_are_delivered_when_the_due_claim_fails);
async fn rows_claimed_as_probes_are_delivered_when_the_due_claim_fails(t: TestDb) {
    let (url, seen) = receiver().await;
    let trigger = seed(&t.db, &url, 3, Pacing::default(), 1).await;
    // The trigger's circuit is open and its cool-down over: the row goes out as a probe.
    on_db!(&t.db, pool, {
        sqlx::query(
            "UPDATE triggers SET circuit_state = 'open', circuit_open_until = 0 WHERE id = $1",
        )
        .bind(&trigger)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
    });
    let faults = Faults {
        failing_due_claims: Arc::new(AtomicUsize::new(1)),
        ..Faults::default()
    };
    let failing = faults.failing_due_claims.clone();
    let stop = CancellationToken::new();
    // A lease far longer than the test: a dropped probe would sit out all of it.
    let config = DispatcherConfig {
        lease: Duration::from_secs(600),
        ..DispatcherConfig::for_tests()
    };
    let running = tokio::spawn(dispatcher(&t, config, faults).run(stop.clone()));

    let rows = settled(&t.db, Duration::from_secs(10)).await;
    assert_eq!(
        failing.load(Ordering::SeqCst),
        0,
        "the due claim failed once"
    );
    assert_eq!(
        rows,
        [(1, "delivered".to_owned(), 1)],
        "delivered with the attempt it was claimed for"
    );
    assert_eq!(*seen.lock().unwrap(), [1]);
    stop.cancel();
    running.await.unwrap();
}
