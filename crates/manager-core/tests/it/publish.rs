//! The publish path on both backends: gap-free seqs under concurrency, atomicity,
//! idempotency, auto-registration, batches and retention.

use std::sync::Arc;

use bytes::Bytes;
use picloud_manager_core::backend_test;
use picloud_manager_core::db::Backend;
use picloud_manager_core::publish::{
    NewEvent, Publication, PublishRequest, Publisher, PublisherConfig, WRITER_APPLICATION_NAME,
};
use picloud_manager_core::retention::DEFAULT_DELIVERY_HISTORY;
use picloud_manager_core::testing::{RecordingBroadcaster, TestDb};
use picloud_manager_core::topics::{AuthMode, NewTopic, Retention};
use picloud_manager_core::triggers::{
    Handler, NewTrigger, TopicPattern, TriggerPatch, TriggerSource, WebhookUrl,
};
use picloud_manager_core::{Db, Error};
use picloud_shared::{AppId, TopicName};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Harness {
    db: Db,
    publisher: Publisher,
    broadcast: Arc<RecordingBroadcaster>,
    wake: Arc<Notify>,
    _stop: tokio_util::sync::DropGuard,
}

async fn harness(t: &TestDb, config: PublisherConfig) -> Harness {
    let broadcast = Arc::new(RecordingBroadcaster::default());
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let (publisher, _task) = Publisher::spawn(
        t.db.clone(),
        broadcast.clone(),
        wake.clone(),
        config,
        stop.clone(),
    );
    if t.db.get_app("shop").await.is_err() {
        t.db.create_app(&AppId::parse("shop").unwrap(), "Shop")
            .await
            .unwrap();
    }
    Harness {
        db: t.db.clone(),
        publisher,
        broadcast,
        wake,
        _stop: stop.drop_guard(),
    }
}

fn event(topic: &str, n: u64) -> NewEvent {
    NewEvent {
        topic: TopicName::parse(topic).unwrap(),
        event_type: "message".into(),
        data: Bytes::from(format!("{{\"n\":{n}}}")),
    }
}

fn request(events: Vec<NewEvent>) -> PublishRequest {
    PublishRequest {
        app: AppId::parse("shop").unwrap(),
        events,
        idempotency_key: None,
    }
}

/// The rows of `table`.
pub(crate) async fn count(db: &Db, table: &str) -> i64 {
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

/// Creates an enabled webhook trigger of app `shop` on `source` through the real API;
/// returns its id.
pub(crate) async fn add_trigger(db: &Db, source: &str) -> String {
    let new = NewTrigger::new(
        TriggerSource::Topic {
            topic: TopicPattern::parse(source).unwrap(),
        },
        Handler::Webhook {
            url: WebhookUrl::parse("https://example.com/hook").unwrap(),
        },
    );
    db.create_trigger(&AppId::parse("shop").unwrap(), new)
        .await
        .unwrap()
        .trigger
        .id
}

async fn disable_trigger(db: &Db, id: &str) {
    let patch = TriggerPatch {
        enabled: Some(false),
        ..TriggerPatch::default()
    };
    db.update_trigger("shop", id, patch).await.unwrap();
}

backend_test!(concurrent_publishers_get_gap_free_seqs_in_commit_order);
async fn concurrent_publishers_get_gap_free_seqs_in_commit_order(t: TestDb) {
    // Two writers on one database stand for two nodes.
    let a = harness(&t, PublisherConfig::default()).await;
    let b = harness(&t, PublisherConfig::default()).await;
    let reader_db = t.db.clone();
    let done = CancellationToken::new();
    let reader_done = done.clone();
    // A reader tailing the log must only ever see the next seq: a gap it saw would be
    // one filled later by a commit that came after a higher seq.
    let reader = tokio::spawn(async move {
        let mut last = 0i64;
        loop {
            let finished = reader_done.is_cancelled();
            let events = match reader_db.read_events("shop", "orders", last, 1000).await {
                Ok(events) => events,
                Err(Error::Database(_)) => continue,
                Err(e) => panic!("{e}"),
            };
            for e in events {
                assert_eq!(e.seq, last + 1, "reader saw a gap after {last}");
                last = e.seq;
            }
            if finished {
                return last;
            }
            tokio::task::yield_now().await;
        }
    });
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let publisher = if task % 2 == 0 {
            a.publisher.clone()
        } else {
            b.publisher.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(1000);
            for i in 0..1000 {
                let answer = publisher
                    .publish(request(vec![event("orders", task * 1000 + i)]))
                    .await
                    .unwrap();
                seqs.push(answer.events[0].seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one client's seqs increase"
        );
        all.extend(seqs);
    }
    done.cancel();
    assert_eq!(reader.await.unwrap(), 8000, "the reader saw every event");
    all.sort_unstable();
    assert_eq!(all, (1..=8000).collect::<Vec<i64>>());
    assert_eq!(
        t.db.get_topic("shop", "orders").await.unwrap().last_seq,
        8000
    );
    assert_eq!(count(&t.db, "topic_events").await, 8000);
}

backend_test!(writers_taking_seqs_on_the_same_topics_do_not_deadlock);
/// Two writers (two nodes) committing groups that touch the same topics: each group locks
/// its topics' rows to take seqs, and unless every group takes them in one order, two
/// groups each holding a row the other wants wait for each other until PostgreSQL aborts
/// one; its requests, retried alone, deadlock again, and the publish fails.
async fn writers_taking_seqs_on_the_same_topics_do_not_deadlock(t: TestDb) {
    let a = harness(&t, PublisherConfig::default()).await;
    let b = harness(&t, PublisherConfig::default()).await;
    let topics = ["t0", "t1", "t2", "t3"];
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let publisher = if task % 2 == 0 {
            a.publisher.clone()
        } else {
            b.publisher.clone()
        };
        tasks.push(tokio::spawn(async move {
            for i in 0..30u64 {
                // Each request names the four topics in another order.
                let events = (0..4)
                    .map(|k| event(topics[((task + i + k) % 4) as usize], i))
                    .collect();
                publisher
                    .publish(request(events))
                    .await
                    .expect("every publish commits");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(count(&t.db, "topic_events").await, 8 * 30 * 4);
}

backend_test!(one_event_row_and_one_outbox_row_per_matching_trigger);
async fn one_event_row_and_one_outbox_row_per_matching_trigger(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    let exact = add_trigger(&h.db, "orders.created").await;
    let prefix = add_trigger(&h.db, "orders.*").await;
    let all = add_trigger(&h.db, "*").await;
    add_trigger(&h.db, "users").await;
    let answer = h
        .publisher
        .publish(request(vec![event("orders.created", 1)]))
        .await
        .unwrap();
    assert_eq!(answer.events[0].deliveries, 3);
    assert_eq!(count(&h.db, "topic_events").await, 1);
    assert_eq!(count(&h.db, "outbox").await, 3);
    let mut triggers: Vec<String> = picloud_manager_core::on_db!(&h.db, pool, {
        sqlx::query_scalar("SELECT trigger_id FROM outbox WHERE topic = 'orders.created' AND seq = 1 AND state = 'pending'")
            .fetch_all(pool).await.unwrap()
    });
    triggers.sort();
    let mut want = vec![exact, prefix, all.clone()];
    want.sort();
    assert_eq!(triggers, want);
    // A disabled trigger stops matching at once: the change moved the app's generation.
    disable_trigger(&h.db, &all).await;
    let answer = h
        .publisher
        .publish(request(vec![event("orders.created", 2)]))
        .await
        .unwrap();
    assert_eq!(answer.events[0].deliveries, 2);
    // The dispatcher was told there is work.
    tokio::time::timeout(std::time::Duration::from_secs(5), h.wake.notified())
        .await
        .expect("dispatcher woken");
}

backend_test!(a_failure_before_commit_leaves_nothing);
async fn a_failure_before_commit_leaves_nothing(t: TestDb) {
    let config = PublisherConfig {
        before_commit: Some(Arc::new(|| Err(Error::Invalid("injected failure".into())))),
        ..PublisherConfig::default()
    };
    let h = harness(&t, config).await;
    add_trigger(&h.db, "orders").await;
    let result = h
        .publisher
        .publish(request(vec![event("orders", 1), event("audit", 2)]))
        .await;
    assert!(
        matches!(result, Err(Error::Invalid(ref m)) if m == "injected failure"),
        "{result:?}"
    );
    assert_eq!(count(&h.db, "topic_events").await, 0);
    assert_eq!(count(&h.db, "outbox").await, 0);
    assert_eq!(
        count(&h.db, "topics").await,
        0,
        "the auto-registration rolled back too"
    );
    assert!(h.broadcast.events().is_empty(), "nothing was broadcast");
}

/// On SQLite the publish writer commits on a connection of its own, outside the pool (the
/// write gate's): an ack must be as durable there, so it runs WAL with synchronous=FULL
/// and foreign keys, and waits for a busy lock like the pool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_write_connection_commits_durably() {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let conn = t.db.write_gate().await.expect("SQLite has a write gate");
    let setting = |name: &str| -> String {
        conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|value| match value {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(text) => text,
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(setting("journal_mode"), "wal");
    assert_eq!(setting("synchronous"), "2", "FULL: every commit is fsynced");
    assert_eq!(setting("foreign_keys"), "1");
    assert_eq!(setting("busy_timeout"), "10000");
}

/// On SQLite, a transaction whose COMMIT and ROLLBACK both failed (as on a full disk)
/// stays open on the write connection; the next group must end it rather than fail on
/// `BEGIN` from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_on_the_sqlite_write_connection_is_ended() {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let h = harness(&t, PublisherConfig::default()).await;
    t.db.write_gate()
        .await
        .expect("SQLite has a write gate")
        .execute_batch("BEGIN")
        .unwrap();
    let answer = h
        .publisher
        .publish(request(vec![event("orders", 1)]))
        .await
        .expect("the publish after it commits");
    assert_eq!(answer.events[0].seq, 1);
    assert_eq!(count(&h.db, "topic_events").await, 1);
}

/// On PostgreSQL the publish writer keeps a connection of its own; one the server dropped
/// while it sat idle (a restart, an administrator) is opened again, not used dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_postgres_connection_is_reopened_after_the_server_dropped_it() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        eprintln!("skipped: PICLOUD_TEST_DATABASE_URL is not set");
        return;
    };
    let h = harness(&t, PublisherConfig::default()).await;
    h.publisher
        .publish(request(vec![event("orders", 1)]))
        .await
        .unwrap();
    let terminated: Vec<bool> = picloud_manager_core::on_db!(&t.db, pool, {
        sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(WRITER_APPLICATION_NAME)
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        terminated,
        [true],
        "the writer has one connection of its own"
    );
    // Idle long enough to be checked before it is used again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let answer = h
        .publisher
        .publish(request(vec![event("orders", 2)]))
        .await
        .expect("the next publish commits on a new connection");
    assert_eq!(answer.events[0].seq, 2);
}

backend_test!(committed_events_are_broadcast_in_order_after_commit);
async fn committed_events_are_broadcast_in_order_after_commit(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    let answer = h
        .publisher
        .publish(request(vec![event("a", 1), event("b", 2), event("a", 3)]))
        .await
        .unwrap();
    let seqs: Vec<(String, i64)> = answer
        .events
        .iter()
        .map(|e| (e.topic.clone(), e.seq))
        .collect();
    assert_eq!(seqs, [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]);
    let live = h.broadcast.events();
    assert_eq!(live.len(), 3);
    assert_eq!(
        (live[2].topic.as_str(), live[2].seq, &live[2].data[..]),
        ("a", 2, &b"{\"n\":3}"[..])
    );
    assert_eq!(live[0].id, answer.events[0].id);
}

backend_test!(idempotent_retries_return_the_first_answer_and_write_nothing);
async fn idempotent_retries_return_the_first_answer_and_write_nothing(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    let keyed = |n| PublishRequest {
        idempotency_key: Some("order-42".into()),
        ..request(vec![event("orders", n)])
    };
    let first = h.publisher.publish(keyed(1)).await.unwrap();
    assert!(!first.replayed);
    let again = h.publisher.publish(keyed(2)).await.unwrap();
    assert_eq!(
        again,
        Publication {
            events: first.events.clone(),
            replayed: true
        }
    );
    assert_eq!(count(&h.db, "topic_events").await, 1);
    assert_eq!(h.broadcast.events().len(), 1, "a replay broadcasts nothing");
    // Two retries racing in one group also agree.
    let (x, y) = tokio::join!(
        h.publisher.publish(PublishRequest {
            idempotency_key: Some("k2".into()),
            ..request(vec![event("orders", 3)])
        }),
        h.publisher.publish(PublishRequest {
            idempotency_key: Some("k2".into()),
            ..request(vec![event("orders", 4)])
        }),
    );
    assert_eq!(x.unwrap().events, y.unwrap().events);
    assert_eq!(count(&h.db, "topic_events").await, 2);
}

backend_test!(publishing_registers_unknown_topics_as_internal);
async fn publishing_registers_unknown_topics_as_internal(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    h.publisher
        .publish(request(vec![event("new.topic", 1)]))
        .await
        .unwrap();
    let topic = h.db.get_topic("shop", "new.topic").await.unwrap();
    assert!(!topic.external_subscribable);
    assert_eq!(topic.auth_mode, AuthMode::Token);
    assert_eq!((topic.last_seq, topic.event_count), (1, 1));
    let missing = PublishRequest {
        app: AppId::parse("ghost").unwrap(),
        ..request(vec![event("x", 1)])
    };
    assert!(matches!(
        h.publisher.publish(missing).await,
        Err(Error::AppNotFound(_))
    ));
}

backend_test!(one_bad_request_does_not_fail_its_group);
async fn one_bad_request_does_not_fail_its_group(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    let ghost = PublishRequest {
        app: AppId::parse("ghost").unwrap(),
        ..request(vec![event("x", 1)])
    };
    let (good, bad) = tokio::join!(
        h.publisher.publish(request(vec![event("x", 2)])),
        h.publisher.publish(ghost)
    );
    assert_eq!(good.unwrap().events[0].seq, 1);
    assert!(matches!(bad, Err(Error::AppNotFound(_))));
}

backend_test!(retention_prunes_old_events_but_keeps_what_deliveries_need);
async fn retention_prunes_old_events_but_keeps_what_deliveries_need(t: TestDb) {
    let h = harness(&t, PublisherConfig::default()).await;
    h.db.create_topic(
        "shop",
        NewTopic {
            name: TopicName::parse("orders").unwrap(),
            auth_mode: AuthMode::Token,
            retention: Retention {
                max_events: Some(3),
                max_age_secs: None,
            },
        },
    )
    .await
    .unwrap();
    let trigger = add_trigger(&h.db, "orders").await;
    h.publisher
        .publish(request(vec![event("orders", 1)]))
        .await
        .unwrap();
    // Seq 1 now has a pending delivery; deliver nothing, publish more without the trigger.
    disable_trigger(&h.db, &trigger).await;
    for n in 2..=10 {
        h.publisher
            .publish(request(vec![event("orders", n)]))
            .await
            .unwrap();
    }
    let pruned =
        h.db.prune(picloud_shared::time::now_ms(), DEFAULT_DELIVERY_HISTORY)
            .await
            .unwrap();
    assert_eq!(pruned.events, 6, "seqs 2..=7 pruned");
    let seqs: Vec<i64> =
        h.db.read_events("shop", "orders", 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
    assert_eq!(
        seqs,
        [1, 8, 9, 10],
        "seq 1 kept for its pending delivery, the last 3 by retention"
    );

    // Age: everything is older than a minute in the future, but the count limit and
    // the pending delivery still hold.
    let later = picloud_shared::time::now_ms() + 10 * 24 * 3600 * 1000;
    h.db.prune(later, DEFAULT_DELIVERY_HISTORY).await.unwrap();
    assert_eq!(
        h.db.read_events("shop", "orders", 0, 100)
            .await
            .unwrap()
            .len(),
        4,
        "no age limit on this topic"
    );
}
