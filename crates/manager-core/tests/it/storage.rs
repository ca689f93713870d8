//! Storage conformance: every test runs on SQLite and on PostgreSQL.

use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::Error;
use picloud_shared::{AppId, Scope, ScopeSet};

fn app(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

fn scopes(list: &[Scope]) -> ScopeSet {
    list.iter().copied().collect()
}

backend_test!(apps_create_list_get_delete);
async fn apps_create_list_get_delete(t: TestDb) {
    let db = &t.db;
    assert!(db.list_apps().await.unwrap().is_empty());
    let shop = db.create_app(&app("shop"), "Shop").await.unwrap();
    assert_eq!(shop.name, "Shop");
    db.create_app(&app("blog"), "Blog").await.unwrap();
    let ids: Vec<String> = db
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(ids, ["blog", "shop"]);
    assert_eq!(db.get_app("shop").await.unwrap(), shop);
    assert!(matches!(
        db.create_app(&app("shop"), "Again").await,
        Err(Error::AppExists(_))
    ));
    db.delete_app("shop").await.unwrap();
    assert!(matches!(
        db.get_app("shop").await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.delete_app("shop").await,
        Err(Error::AppNotFound(_))
    ));
}

backend_test!(app_names_are_validated);
async fn app_names_are_validated(t: TestDb) {
    assert!(matches!(
        t.db.create_app(&app("shop"), "  ").await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        t.db.create_app(&app("shop"), &"n".repeat(201)).await,
        Err(Error::Invalid(_))
    ));
}

backend_test!(keys_are_stored_hashed_and_found_by_secret);
async fn keys_are_stored_hashed_and_found_by_secret(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let created = db
        .create_key(
            Some(&app("shop")),
            "web",
            scopes(&[Scope::PubsubPublish, Scope::AppRead]),
        )
        .await
        .unwrap();
    assert!(created.secret.starts_with(&created.key.prefix));
    let hash = picloud_manager_core::api_keys::hash_secret(&created.secret);
    let (found, stored_hash, _) = db.find_active_key(&hash).await.unwrap().unwrap();
    assert_eq!(found, created.key);
    assert_eq!(stored_hash, hash.to_vec());
    assert_eq!(found.scopes, [Scope::AppRead, Scope::PubsubPublish]);

    // The secret itself is nowhere in the table.
    let secret_bytes = created.secret.as_bytes().to_vec();
    let rows: Vec<(String, String, Vec<u8>)> = picloud_manager_core::on_db!(db, pool, {
        sqlx::query_as("SELECT prefix, scopes, secret_hash FROM api_keys")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    for (prefix, scope_text, stored) in rows {
        assert!(!created.secret.eq(&prefix) && !scope_text.contains(&created.secret));
        assert_ne!(stored, secret_bytes);
    }
}

backend_test!(revoked_keys_are_not_found_and_revocation_is_scoped);
async fn revoked_keys_are_not_found_and_revocation_is_scoped(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    db.create_app(&app("blog"), "Blog").await.unwrap();
    let created = db
        .create_key(Some(&app("shop")), "web", scopes(&[Scope::AppRead]))
        .await
        .unwrap();
    // Another app's id or the instance scope cannot revoke it.
    assert!(matches!(
        db.revoke_key(Some("blog"), &created.key.id).await,
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        db.revoke_key(None, &created.key.id).await,
        Err(Error::KeyNotFound(_))
    ));
    let revoked = db.revoke_key(Some("shop"), &created.key.id).await.unwrap();
    let first = revoked.revoked_at.expect("revoked_at set");
    let again = db.revoke_key(Some("shop"), &created.key.id).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(first),
        "second revoke keeps the first time"
    );
    let hash = picloud_manager_core::api_keys::hash_secret(&created.secret);
    assert!(db.find_active_key(&hash).await.unwrap().is_none());
    assert_eq!(db.list_keys(Some("shop")).await.unwrap().len(), 1);
}

backend_test!(key_rules_by_kind);
async fn key_rules_by_kind(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    assert!(matches!(
        db.create_key(Some(&app("shop")), "x", scopes(&[Scope::InstanceAdmin]))
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        db.create_key(None, "x", scopes(&[Scope::AppRead])).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        db.create_key(Some(&app("nope")), "x", scopes(&[Scope::AppRead]))
            .await,
        Err(Error::AppNotFound(_))
    ));
    let instance = db
        .create_key(None, "ops", scopes(&[Scope::InstanceAdmin]))
        .await
        .unwrap();
    let listed = db.list_keys(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, instance.key.id);
    assert!(db.list_keys(Some("shop")).await.unwrap().is_empty());
}

backend_test!(deleting_an_app_removes_its_keys);
async fn deleting_an_app_removes_its_keys(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let created = db
        .create_key(Some(&app("shop")), "web", scopes(&[Scope::AppRead]))
        .await
        .unwrap();
    db.delete_app("shop").await.unwrap();
    let hash = picloud_manager_core::api_keys::hash_secret(&created.secret);
    assert!(db.find_active_key(&hash).await.unwrap().is_none());
    let count: i64 = picloud_manager_core::on_db!(db, pool, {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(count, 0);
}

/// Writes an outbox row of app `shop` for `trigger`, event `orders`#`seq`, in `state`,
/// created at `created` and finished at `finished` (ms).
async fn add_delivery(
    db: &picloud_manager_core::Db,
    trigger: &str,
    seq: i64,
    state: &str,
    created: i64,
    finished: Option<i64>,
) {
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query(
            "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                                 next_attempt_at, created_at, updated_at, finished_at)
             VALUES ('shop', $1, 'orders', $2, $3, 1, $4, $4, $4, $5)",
        )
        .bind(trigger)
        .bind(seq)
        .bind(state)
        .bind(created)
        .bind(finished)
        .execute(pool)
        .await
        .unwrap();
    });
}

/// Records one attempt (a 200, started when its delivery was created) for every outbox
/// row.
async fn add_attempt_to_every_delivery(db: &picloud_manager_core::Db) {
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query(
            "INSERT INTO delivery_attempts (outbox_id, app_id, attempt, started_at, duration_ms, status_code)
             SELECT id, app_id, 1, created_at, 1, 200 FROM outbox",
        )
        .execute(pool)
        .await
        .unwrap();
    });
}

backend_test!(deleting_an_app_removes_its_deliveries);
async fn deleting_an_app_removes_its_deliveries(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let trigger = crate::publish::add_trigger(db, "orders").await;
    let count = |table| crate::publish::count(db, table);
    add_delivery(db, &trigger, 1, "delivered", 0, None).await;
    add_attempt_to_every_delivery(db).await;
    assert_eq!(
        (count("outbox").await, count("delivery_attempts").await),
        (1, 1)
    );
    db.delete_app("shop").await.unwrap();
    assert_eq!(
        (count("outbox").await, count("delivery_attempts").await),
        (0, 0)
    );
}

backend_test!(deliveries_finished_beyond_the_history_are_pruned_with_their_attempts);
async fn deliveries_finished_beyond_the_history_are_pruned_with_their_attempts(t: TestDb) {
    use picloud_manager_core::deliveries::DeliveryFilter;
    use picloud_manager_core::retention::DEFAULT_DELIVERY_HISTORY;
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let trigger = crate::publish::add_trigger(db, "orders").await;
    let now = picloud_shared::time::now_ms();
    let days = |n: i64| now - n * 24 * 3600 * 1000;
    let history = DEFAULT_DELIVERY_HISTORY;
    let history_days = (history.as_secs() / (24 * 3600)) as i64;
    // (seq, state, created, finished), in id order: the first two finished before the
    // history's start; the third was created then but finished since (a long retry);
    // the fourth is still pending; the fifth is today's.
    let old = history_days + 10;
    let rows = [
        (1, "delivered", days(old), Some(days(old))),
        (2, "dead", days(old), Some(days(history_days + 1))),
        (3, "delivered", days(old), Some(days(history_days - 1))),
        (4, "pending", days(old), None),
        (5, "delivered", now, Some(now)),
    ];
    for (seq, state, created, finished) in rows {
        add_delivery(db, &trigger, seq, state, created, finished).await;
    }
    add_attempt_to_every_delivery(db).await;

    let pruned = db.prune(now, history).await.unwrap();
    assert_eq!(pruned.deliveries, 2);
    let filter = DeliveryFilter {
        limit: 100,
        ..DeliveryFilter::default()
    };
    let kept: Vec<i64> = db
        .list_deliveries("shop", &filter)
        .await
        .unwrap()
        .iter()
        .map(|delivery| delivery.seq)
        .collect();
    assert_eq!(kept, [5, 4, 3], "newest first");
    assert_eq!(crate::publish::count(db, "delivery_attempts").await, 3);
    assert_eq!(
        db.prune(now, history).await.unwrap().deliveries,
        0,
        "nothing more"
    );
}

backend_test!(a_history_longer_than_one_pruning_step_is_pruned_in_one_pass);
async fn a_history_longer_than_one_pruning_step_is_pruned_in_one_pass(t: TestDb) {
    use picloud_manager_core::retention::DEFAULT_DELIVERY_HISTORY;
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let trigger = crate::publish::add_trigger(db, "orders").await;
    let now = picloud_shared::time::now_ms();
    let old = now - 2 * DEFAULT_DELIVERY_HISTORY.as_millis() as i64;
    // 2,500 deliveries finished long ago (more than two of the pass's steps), then one
    // pending and one finished today.
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query(
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
             INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                                 next_attempt_at, created_at, updated_at, finished_at)
             SELECT 'shop', $1, 'orders', i, 'delivered', 1, $2, $2, $2, $2 FROM n",
        )
        .bind(&trigger)
        .bind(old)
        .execute(pool)
        .await
        .unwrap();
    });
    add_delivery(db, &trigger, 2501, "pending", now, None).await;
    add_delivery(db, &trigger, 2502, "delivered", now, Some(now)).await;

    let pruned = db.prune(now, DEFAULT_DELIVERY_HISTORY).await.unwrap();
    assert_eq!(pruned.deliveries, 2500);
    assert_eq!(crate::publish::count(db, "outbox").await, 2);
}

backend_test!(last_used_is_recorded_and_never_moves_back);
async fn last_used_is_recorded_and_never_moves_back(t: TestDb) {
    let db = &t.db;
    let created = db
        .create_key(None, "ops", scopes(&[Scope::InstanceAdmin]))
        .await
        .unwrap();
    let id = created.key.id.clone();
    db.record_key_use(&[(id.clone(), 2_000)]).await.unwrap();
    db.record_key_use(&[(id.clone(), 1_000)]).await.unwrap();
    let keys = db.list_keys(None).await.unwrap();
    assert_eq!(keys[0].last_used_at, Some(2_000));
}

backend_test!(bootstrap_key_is_created_exactly_once);
async fn bootstrap_key_is_created_exactly_once(t: TestDb) {
    let db = &t.db;
    let attempts = futures_join(db).await;
    assert_eq!(
        attempts.iter().filter(|k| k.is_some()).count(),
        1,
        "one winner"
    );
    assert!(db.bootstrap_instance_key().await.unwrap().is_none());
    let keys = db.list_keys(None).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].scopes, [Scope::InstanceAdmin]);
}

/// Four concurrent bootstrap attempts.
async fn futures_join(
    db: &picloud_manager_core::Db,
) -> Vec<Option<picloud_manager_core::api_keys::CreatedKey>> {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.bootstrap_instance_key().await })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        // A losing SQLite writer may see "database is locked" only past the busy timeout;
        // every attempt must succeed or lose cleanly.
        results.push(handle.await.unwrap().unwrap());
    }
    results
}

backend_test!(no_bootstrap_key_when_an_instance_key_exists);
async fn no_bootstrap_key_when_an_instance_key_exists(t: TestDb) {
    t.db.create_key(None, "ops", scopes(&[Scope::InstanceAdmin]))
        .await
        .unwrap();
    assert!(t.db.bootstrap_instance_key().await.unwrap().is_none());
    assert_eq!(t.db.list_keys(None).await.unwrap().len(), 1);
}

backend_test!(migrations_are_idempotent_and_ping_works);
async fn migrations_are_idempotent_and_ping_works(t: TestDb) {
    t.db.migrate().await.unwrap();
    t.db.ping().await.unwrap();
}

backend_test!(widening_trigger_handlers_keeps_every_delivery);
async fn widening_trigger_handlers_keeps_every_delivery(t: TestDb) {
    // Migration 6 rebuilds `triggers` on SQLite; the outbox rows and attempts that
    // reference a trigger must come through it (a drop with foreign keys on would
    // cascade into them).
    let old = TestDb::migrated_through(t.db.backend(), 5).await.unwrap();
    let db = &old.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    picloud_manager_core::on_db!(db, pool, {
        for statement in [
            "INSERT INTO triggers (id, app_id, source_kind, source_topic, handler_kind,
                 handler_url, secret, retry_max_attempts, created_at, updated_at)
             VALUES ('trg_1', 'shop', 'topic', 'orders', 'webhook', 'https://h.io/x',
                 'whsec_x', 8, 1, 1)",
            "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                 next_attempt_at, created_at, updated_at)
             VALUES ('shop', 'trg_1', 'orders', 1, 'delivered', 1, 0, 1, 1),
                    ('shop', 'trg_1', 'orders', 2, 'pending', 0, 0, 1, 1)",
            "INSERT INTO delivery_attempts (outbox_id, app_id, attempt, started_at,
                 duration_ms, status_code)
             SELECT id, 'shop', 1, 1, 3, 200 FROM outbox WHERE seq = 1",
        ] {
            sqlx::query(statement).execute(pool).await.unwrap();
        }
    });
    db.migrate().await.unwrap();
    let counts: (i64, i64, String, String) = picloud_manager_core::on_db!(db, pool, {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COUNT(*) FROM delivery_attempts),
                    handler_kind, handler_target
             FROM triggers WHERE id = 'trg_1'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        counts,
        (2, 1, "webhook".to_owned(), "https://h.io/x".to_owned())
    );
    // Foreign keys still hold after the rebuild: deleting the trigger takes its rows.
    picloud_manager_core::on_db!(db, pool, {
        sqlx::query("DELETE FROM triggers WHERE id = 'trg_1'")
            .execute(pool)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    });
}

backend_test!(script_runs_store_in_batches_drop_deleted_apps_and_trim);
async fn script_runs_store_in_batches_drop_deleted_apps_and_trim(t: TestDb) {
    use picloud_manager_core::run_log::{RunLogLine, RunRecord};
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let run = |app: &str, n: i64| RunRecord {
        app: app.to_owned(),
        script: "greet".to_owned(),
        version: n,
        kind: "function",
        started_at: 1_000 + n,
        duration_us: n,
        outcome: if n % 2 == 0 { "ok" } else { "error" },
        error: (n % 2 == 1).then(|| format!("failed {n}")),
        logs: vec![RunLogLine {
            at_ms: 0,
            level: "info".to_owned(),
            message: format!("line {n}"),
        }],
        dropped_logs: 0,
        request_id: Some(format!("req-{n}")),
        delivery_id: None,
    };
    // More runs than one INSERT carries, with runs of an app that no longer exists
    // among them: those are dropped, the rest stored whole and in order.
    let mut batch: Vec<RunRecord> = (1..=300).map(|n| run("shop", n)).collect();
    batch.insert(10, run("gone", 7));
    batch.push(run("gone", 8));
    db.record_script_runs(&batch, 1000).await.unwrap();
    let stored = db
        .list_script_runs("shop", "greet", None, 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 300);
    let versions: Vec<i64> = stored.iter().map(|r| r.version).collect();
    assert_eq!(versions, (1..=300).rev().collect::<Vec<_>>());
    let newest = &stored[0];
    assert_eq!(
        (
            newest.outcome.as_str(),
            newest.error.as_deref(),
            newest.logs[0].message.as_str(),
            newest.request_id.as_deref()
        ),
        ("ok", None, "line 300", Some("req-300"))
    );
    assert_eq!(stored[1].error.as_deref(), Some("failed 299"));

    // The next batch trims the app's log to its newest runs.
    db.record_script_runs(&[run("shop", 301)], 250)
        .await
        .unwrap();
    let stored = db
        .list_script_runs("shop", "greet", None, 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 250);
    assert_eq!((stored[0].version, stored[249].version), (301, 52));
}

/// PostgreSQL: a pooled connection the server dropped while it sat idle (a restart, a
/// proxy's idle timeout) is pinged before it is handed out and replaced, so the next
/// query works. (One back in the pool for less than a second is handed out without a
/// ping: it was just used, and a ping on every acquire is a round trip per statement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_while_idle_is_replaced_not_handed_out() {
    use picloud_manager_core::db::{Backend, PoolSize};
    use picloud_manager_core::{on_db, Db};
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        eprintln!("skipped: PICLOUD_TEST_DATABASE_URL is not set");
        return;
    };
    let backend_pid = |db: Db| async move {
        on_db!(&db, pool, {
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(pool)
                .await
        })
    };
    let db = Db::connect(&t.url, PoolSize(1)).await.unwrap();
    let first = backend_pid(db.clone()).await.unwrap();
    let terminated: bool = on_db!(&t.db, pool, {
        sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(terminated);
    // Idle long enough to be checked before it is handed out again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = backend_pid(db.clone())
        .await
        .expect("the dropped connection is replaced");
    assert_ne!(first, second);
}
