//! The dispatcher on both backends when code that should not fail does, with faults
//! injected through `Dispatcher::with_faults`: a delivery attempt that panics, a claim
//! query that fails. Deliveries go to a loopback receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picloud_manager_core::dispatcher::circuit::CircuitPolicy;
use picloud_manager_core::dispatcher::outbox::{AttemptRecord, ClaimedRow, Finished, Verdict};
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
        sqlx::query("INSERT INTO topics (app_id, name, last_seq, created_at, updated_at) VALUES ('shop', 'orders', 0, 0, 0)")
            .execute(pool).await.unwrap();
    });
    for seq in 1..=events {
        add_event(db, &trigger, seq, 0).await;
    }
    trigger
}

/// Commits event `seq` of `shop`'s `orders` with one pending outbox row for `trigger`,
/// due at `due_at`.
async fn add_event(db: &Db, trigger: &str, seq: i64, due_at: i64) {
    on_db!(db, pool, {
        sqlx::query("UPDATE topics SET last_seq = $1 WHERE app_id = 'shop' AND name = 'orders'")
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO topic_events (app_id, topic, seq, id, event_type, payload, published_at)
                     VALUES ('shop', 'orders', $1, $2, 'message', $3, 0)",
        )
        .bind(seq)
        .bind(format!("evt_{seq}"))
        .bind(b"{}".to_vec())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts, next_attempt_at, created_at, updated_at)
                     VALUES ('shop', $1, 'orders', $2, 'pending', 0, $3, $3, $3)")
            .bind(trigger).bind(seq).bind(due_at).execute(pool).await.unwrap();
    });
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

backend_test!(one_recorded_group_keeps_each_attempts_own_outcome);
async fn one_recorded_group_keeps_each_attempts_own_outcome(t: TestDb) {
    // Nothing is sent: the rows are claimed and their outcomes recorded directly.
    seed(&t.db, "http://127.0.0.1:9/hook", 3, Pacing::default(), 3).await;
    let lease_until = picloud_shared::time::now_ms() + 60_000;
    let mut claimed =
        t.db.claim_due("node-a", 10, lease_until, i64::MIN, &[], &[])
            .await
            .unwrap();
    claimed.sort_by_key(|row| row.seq);
    assert_eq!(claimed.len(), 3);
    let attempt = |status: i64, error: Option<&str>| AttemptRecord {
        started_at: 1_000,
        duration_ms: 7,
        status: Some(status),
        error: error.map(str::to_owned),
        response_body: Some(format!("body {status}")),
        response_bytes: Some(8),
    };
    let verdicts = [
        (attempt(200, None), Verdict::Delivered),
        (
            attempt(500, Some("boom")),
            Verdict::Retry {
                next_attempt_at: 4_242,
            },
        ),
        (
            attempt(503, Some("gone")),
            Verdict::Exhausted {
                disable_reason: None,
            },
        ),
    ];
    let group: Vec<Finished> = claimed
        .into_iter()
        .zip(verdicts)
        .map(|(row, (attempt, verdict))| Finished {
            row,
            attempt,
            verdict,
        })
        .collect();

    let dead_letters =
        t.db.record_finished(&group, &CircuitPolicy::STANDARD)
            .await
            .unwrap();

    assert!(dead_letters[0].is_none() && dead_letters[1].is_none());
    let dead_letter = dead_letters[2].expect("the exhausted attempt is dead-lettered");
    type OutboxRow = (
        i64,
        String,
        i64,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
        bool,
    );
    let rows: Vec<OutboxRow> = on_db!(&t.db, pool, {
        sqlx::query_as(
            "SELECT seq, state, next_attempt_at, lease_until, leased_by, last_status, last_error,
                    finished_at IS NOT NULL
             FROM outbox WHERE dead_letter_id IS NULL ORDER BY seq",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        rows,
        [
            (1, "delivered".into(), 0, None, None, Some(200), None, true),
            (
                2,
                "pending".into(),
                4_242,
                None,
                None,
                Some(500),
                Some("boom".into()),
                false
            ),
            (
                3,
                "dead".into(),
                0,
                None,
                None,
                Some(503),
                Some("gone".into()),
                true
            ),
        ],
        "each row got its own attempt's outcome, and every lease was let go"
    );
    type AttemptRow = (
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let attempts: Vec<AttemptRow> = on_db!(&t.db, pool, {
        sqlx::query_as(
            "SELECT o.seq, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error,
                    a.response_body, a.response_bytes
             FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id ORDER BY o.seq",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let expected_attempt = |seq: i64, status: i64, error: Option<&str>| {
        let body = Some(format!("body {status}"));
        (
            seq,
            1,
            1_000,
            7,
            Some(status),
            error.map(str::to_owned),
            body,
            Some(8),
        )
    };
    assert_eq!(
        attempts,
        [
            expected_attempt(1, 200, None),
            expected_attempt(2, 500, Some("boom")),
            expected_attempt(3, 503, Some("gone")),
        ]
    );
    let letter: (i64, Option<String>, Option<i64>) = on_db!(&t.db, pool, {
        sqlx::query_as("SELECT seq, last_error, last_status FROM dead_letters WHERE id = $1")
            .bind(dead_letter)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(letter, (3, Some("gone".into()), Some(503)));
}

backend_test!(a_row_written_due_long_ago_after_others_were_delivered_is_delivered);
async fn a_row_written_due_long_ago_after_others_were_delivered_is_delivered(t: TestDb) {
    // The claim loop scans pending rows from a floor below the earliest due one; a row
    // written later with an older due time (another node whose clock is an hour behind)
    // lies below that floor, and must still be found.
    let (url, seen) = receiver().await;
    let trigger = seed(&t.db, &url, 3, Pacing::default(), 1).await;
    // The first row falls due now, so the floor starts just below now.
    on_db!(&t.db, pool, {
        sqlx::query("UPDATE outbox SET next_attempt_at = $1")
            .bind(picloud_shared::time::now_ms())
            .execute(pool)
            .await
            .unwrap();
    });
    let stop = CancellationToken::new();
    let running = tokio::spawn(
        dispatcher(&t, DispatcherConfig::for_tests(), Faults::default()).run(stop.clone()),
    );
    settled(&t.db, Duration::from_secs(20)).await;

    let an_hour_ago = picloud_shared::time::now_ms() - 3_600_000;
    add_event(&t.db, &trigger, 2, an_hour_ago).await;
    let rows = settled(&t.db, Duration::from_secs(20)).await;
    assert_eq!(
        rows,
        [
            (1, "delivered".to_owned(), 1),
            (2, "delivered".to_owned(), 1)
        ]
    );
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    stop.cancel();
    running.await.unwrap();
}
