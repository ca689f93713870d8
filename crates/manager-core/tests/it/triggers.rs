//! Trigger storage on both backends: CRUD, generation bumps, isolation between apps,
//! secret rotation and the publish-path query.

use picloud_manager_core::secret_box::Aad;
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::triggers::{
    CircuitState, Handler, NewTrigger, Pacing, RetryPolicy, TopicPattern, TriggerPatch,
    TriggerSource, WebhookUrl, PREVIOUS_SECRET_GRACE_MS,
};
use picloud_manager_core::{backend_test, on_db, Db, Error};
use picloud_shared::time::now_ms;
use picloud_shared::AppId;

fn app(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

fn topic(pattern: &str) -> TriggerSource {
    TriggerSource::Topic {
        topic: TopicPattern::parse(pattern).unwrap(),
    }
}

fn webhook(url: &str) -> Handler {
    Handler::Webhook {
        url: WebhookUrl::parse(url).unwrap(),
    }
}

fn new_trigger(pattern: &str) -> NewTrigger {
    NewTrigger::new(topic(pattern), webhook("https://example.com/hook"))
}

async fn generation(db: &Db, app: &str) -> i64 {
    db.trigger_generation(app).await.unwrap()
}

/// `(secret, previous_secret, previous_secret_until)` as stored, the secrets opened with
/// the database's master key.
async fn stored_secrets(db: &Db, id: &str) -> (String, Option<String>, Option<i64>) {
    let (secret, previous, until): (String, Option<String>, Option<i64>) = on_db!(db, pool, {
        sqlx::query_as(
            "SELECT secret, previous_secret, previous_secret_until FROM triggers WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    let key = db.master_key().unwrap();
    let aad = Aad::trigger_secret(id);
    let open = |sealed: &str| key.open_text(&aad, sealed).unwrap();
    (open(&secret), previous.as_deref().map(open), until)
}

backend_test!(create_list_get_update_delete);
async fn create_list_get_update_delete(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    assert!(db.list_triggers("shop").await.unwrap().is_empty());

    let created = db
        .create_trigger(&app("shop"), new_trigger("orders.*"))
        .await
        .unwrap();
    let trigger = created.trigger.clone();
    assert!(trigger.id.starts_with("trg_"), "{}", trigger.id);
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(trigger.app, app("shop"));
    assert_eq!(trigger.source, topic("orders.*"));
    assert_eq!(trigger.retry, RetryPolicy::default());
    assert!(trigger.enabled && !trigger.ordered);
    assert_eq!(trigger.disabled_reason, None);
    assert_eq!(trigger.created_at, trigger.updated_at);

    assert_eq!(db.get_trigger("shop", &trigger.id).await.unwrap(), trigger);
    assert_eq!(
        db.list_triggers("shop").await.unwrap(),
        std::slice::from_ref(&trigger)
    );
    assert_eq!(
        db.trigger_secret("shop", &trigger.id).await.unwrap(),
        created.secret
    );

    let retry = RetryPolicy::new(3, Some(vec![10])).unwrap();
    let patch = TriggerPatch {
        source: Some(TriggerSource::DeadLetter {}),
        handler: Some(webhook("http://receiver.internal:9000/dl")),
        retry: Some(retry.clone()),
        ordered: Some(true),
        pacing: Some(Pacing {
            max_in_flight: Some(3),
            max_per_second: Some(7),
        }),
        enabled: Some(false),
    };
    let updated = db.update_trigger("shop", &trigger.id, patch).await.unwrap();
    assert_eq!(
        updated.pacing,
        Pacing {
            max_in_flight: Some(3),
            max_per_second: Some(7)
        }
    );
    assert_eq!(
        db.get_trigger("shop", &trigger.id).await.unwrap().pacing,
        updated.pacing,
        "pacing is stored"
    );
    assert_eq!(updated.source, TriggerSource::DeadLetter {});
    assert_eq!(updated.handler, webhook("http://receiver.internal:9000/dl"));
    assert_eq!(updated.retry, retry);
    assert_eq!(updated.retry.schedule_secs(), [10, 10]);
    assert!(updated.ordered && !updated.enabled);
    assert!(updated.updated_at >= trigger.updated_at);
    assert_eq!(updated.created_at, trigger.created_at);
    assert_eq!(db.get_trigger("shop", &trigger.id).await.unwrap(), updated);

    // Only the given fields change.
    let patch = TriggerPatch {
        enabled: Some(true),
        ..TriggerPatch::default()
    };
    let enabled = db.update_trigger("shop", &trigger.id, patch).await.unwrap();
    assert!(enabled.enabled);
    assert_eq!(
        (enabled.source, enabled.retry),
        (updated.source, updated.retry)
    );

    db.delete_trigger("shop", &trigger.id).await.unwrap();
    assert!(matches!(
        db.get_trigger("shop", &trigger.id).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(matches!(
        db.delete_trigger("shop", &trigger.id).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(db.list_triggers("shop").await.unwrap().is_empty());
}

backend_test!(every_change_bumps_the_generation);
async fn every_change_bumps_the_generation(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    db.create_app(&app("blog"), "Blog").await.unwrap();
    assert_eq!(generation(db, "shop").await, 0);

    let id = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap()
        .trigger
        .id;
    assert_eq!(generation(db, "shop").await, 1);
    let patch = TriggerPatch {
        ordered: Some(true),
        ..TriggerPatch::default()
    };
    db.update_trigger("shop", &id, patch).await.unwrap();
    assert_eq!(generation(db, "shop").await, 2);
    db.rotate_trigger_secret("shop", &id).await.unwrap();
    assert_eq!(generation(db, "shop").await, 3);
    db.delete_trigger("shop", &id).await.unwrap();
    assert_eq!(generation(db, "shop").await, 4);

    // Reads, empty patches and failed changes leave it alone; so do other apps.
    db.list_triggers("shop").await.unwrap();
    let _ = db
        .update_trigger("shop", &id, TriggerPatch::default())
        .await;
    let _ = db
        .update_trigger(
            "shop",
            &id,
            TriggerPatch {
                enabled: Some(true),
                ..TriggerPatch::default()
            },
        )
        .await;
    let _ = db.delete_trigger("shop", &id).await;
    let _ = db.rotate_trigger_secret("shop", &id).await;
    assert_eq!(generation(db, "shop").await, 4);
    assert_eq!(generation(db, "blog").await, 0);
    assert!(matches!(
        db.trigger_generation("nope").await,
        Err(Error::AppNotFound(_))
    ));
}

backend_test!(apps_cannot_reach_each_others_triggers);
async fn apps_cannot_reach_each_others_triggers(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    db.create_app(&app("blog"), "Blog").await.unwrap();
    let id = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap()
        .trigger
        .id;

    assert!(db.list_triggers("blog").await.unwrap().is_empty());
    assert!(matches!(
        db.get_trigger("blog", &id).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(matches!(
        db.trigger_secret("blog", &id).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(matches!(
        db.rotate_trigger_secret("blog", &id).await,
        Err(Error::TriggerNotFound(_))
    ));
    let patch = TriggerPatch {
        enabled: Some(false),
        ..TriggerPatch::default()
    };
    assert!(matches!(
        db.update_trigger("blog", &id, patch).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(matches!(
        db.delete_trigger("blog", &id).await,
        Err(Error::TriggerNotFound(_))
    ));
    assert!(db.enabled_topic_triggers("blog").await.unwrap().is_empty());
    // Untouched in its own app.
    assert!(db.get_trigger("shop", &id).await.unwrap().enabled);

    // Unknown apps are app_not_found, not trigger_not_found.
    assert!(matches!(
        db.create_trigger(&app("nope"), new_trigger("x")).await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.list_triggers("nope").await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.get_trigger("nope", &id).await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.trigger_secret("nope", &id).await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.delete_trigger("nope", &id).await,
        Err(Error::AppNotFound(_))
    ));
    assert!(matches!(
        db.rotate_trigger_secret("nope", &id).await,
        Err(Error::AppNotFound(_))
    ));

    // Deleting the app removes its triggers.
    db.delete_app("shop").await.unwrap();
    let count: i64 = on_db!(db, pool, {
        sqlx::query_scalar("SELECT COUNT(*) FROM triggers")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(count, 0);
}

backend_test!(rotation_keeps_the_previous_secret_for_a_day);
async fn rotation_keeps_the_previous_secret_for_a_day(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let created = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap();
    let id = &created.trigger.id;
    assert_eq!(
        stored_secrets(db, id).await,
        (created.secret.clone(), None, None)
    );

    let before = now_ms();
    let rotated = db.rotate_trigger_secret("shop", id).await.unwrap();
    let after = now_ms();
    assert!(rotated.secret.starts_with("whsec_"));
    assert_ne!(rotated.secret, created.secret);
    let expires = rotated.previous_secret_expires_at;
    assert!(
        (before + PREVIOUS_SECRET_GRACE_MS..=after + PREVIOUS_SECRET_GRACE_MS).contains(&expires)
    );
    assert_eq!(
        stored_secrets(db, id).await,
        (
            rotated.secret.clone(),
            Some(created.secret.clone()),
            Some(expires)
        )
    );
    assert_eq!(db.trigger_secret("shop", id).await.unwrap(), rotated.secret);

    // A second rotation retires the first secret for good.
    let again = db.rotate_trigger_secret("shop", id).await.unwrap();
    let (secret, previous, _) = stored_secrets(db, id).await;
    assert_eq!((secret, previous), (again.secret, Some(rotated.secret)));
}

backend_test!(enabled_topic_triggers_are_what_publishing_matches);
async fn enabled_topic_triggers_are_what_publishing_matches(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let shop = app("shop");
    let orders = db
        .create_trigger(&shop, new_trigger("orders.*"))
        .await
        .unwrap()
        .trigger
        .id;
    let all = db
        .create_trigger(&shop, new_trigger("*"))
        .await
        .unwrap()
        .trigger
        .id;
    let disabled = NewTrigger {
        enabled: false,
        ..new_trigger("orders")
    };
    let disabled = db.create_trigger(&shop, disabled).await.unwrap().trigger.id;
    let dead_letter = NewTrigger::new(
        TriggerSource::DeadLetter {},
        webhook("https://example.com/dl"),
    );
    db.create_trigger(&shop, dead_letter).await.unwrap();

    let mut found = db.enabled_topic_triggers("shop").await.unwrap();
    found.sort();
    let mut want = vec![
        (orders.clone(), TopicPattern::parse("orders.*").unwrap()),
        (all.clone(), TopicPattern::parse("*").unwrap()),
    ];
    want.sort();
    assert_eq!(found, want);

    let enable = TriggerPatch {
        enabled: Some(true),
        ..TriggerPatch::default()
    };
    db.update_trigger("shop", &disabled, enable).await.unwrap();
    let disable = TriggerPatch {
        enabled: Some(false),
        ..TriggerPatch::default()
    };
    db.update_trigger("shop", &all, disable).await.unwrap();
    let mut ids: Vec<String> = db
        .enabled_topic_triggers("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let mut want = vec![orders, disabled];
    want.sort();
    assert_eq!(ids, want);
}

backend_test!(enabling_clears_the_disabled_reason);
async fn enabling_clears_the_disabled_reason(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let id = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap()
        .trigger
        .id;
    // The dispatcher disables a trigger with a reason.
    on_db!(db, pool, {
        sqlx::query(
            "UPDATE triggers SET enabled = FALSE, disabled_reason = 'endpoint gone' WHERE id = $1",
        )
        .bind(&id)
        .execute(pool)
        .await
        .map(drop)
        .unwrap()
    });
    let trigger = db.get_trigger("shop", &id).await.unwrap();
    assert_eq!(
        (trigger.enabled, trigger.disabled_reason.as_deref()),
        (false, Some("endpoint gone"))
    );

    let patch = TriggerPatch {
        ordered: Some(true),
        ..TriggerPatch::default()
    };
    let trigger = db.update_trigger("shop", &id, patch).await.unwrap();
    assert_eq!(
        trigger.disabled_reason.as_deref(),
        Some("endpoint gone"),
        "other changes keep it"
    );

    let patch = TriggerPatch {
        enabled: Some(true),
        ..TriggerPatch::default()
    };
    let trigger = db.update_trigger("shop", &id, patch).await.unwrap();
    assert_eq!(
        (trigger.enabled, trigger.disabled_reason.as_deref()),
        (true, None)
    );
    assert_eq!(db.get_trigger("shop", &id).await.unwrap(), trigger);
}

backend_test!(an_open_circuit_says_when_its_probe_is_due);
async fn an_open_circuit_says_when_its_probe_is_due(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let id = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap()
        .trigger
        .id;
    assert_eq!(
        db.get_trigger("shop", &id).await.unwrap().circuit_probe_at,
        None
    );

    let probe_at = now_ms() + 30_000;
    let set_circuit = |state: &'static str| {
        let id = id.clone();
        async move {
            on_db!(db, pool, {
                sqlx::query(
                    "UPDATE triggers SET circuit_state = $2, circuit_open_until = $3 WHERE id = $1",
                )
                .bind(&id)
                .bind(state)
                .bind(probe_at)
                .execute(pool)
                .await
                .unwrap();
            });
        }
    };
    set_circuit("open").await;
    let open = db.get_trigger("shop", &id).await.unwrap();
    assert_eq!(
        (open.circuit_state, open.circuit_probe_at),
        (CircuitState::Open, Some(probe_at))
    );
    assert_eq!(
        db.list_triggers("shop").await.unwrap()[0].circuit_probe_at,
        Some(probe_at)
    );

    // Half-open keeps the column for when its probe started: no time to wait for.
    set_circuit("half_open").await;
    assert_eq!(
        db.get_trigger("shop", &id).await.unwrap().circuit_probe_at,
        None
    );
}

backend_test!(validation_errors);
async fn validation_errors(t: TestDb) {
    // Domain values refuse bad input before any storage call.
    for bad in ["or*ders", "orders*", "*.x", ".*", ""] {
        assert!(TopicPattern::parse(bad).is_err(), "{bad}");
    }
    for bad in ["ftp://x", "not a url", "https://", "mailto:a@b.c"] {
        assert!(
            matches!(WebhookUrl::parse(bad), Err(Error::Invalid(_))),
            "{bad}"
        );
    }
    assert!(matches!(RetryPolicy::new(0, None), Err(Error::Invalid(_))));
    assert!(matches!(RetryPolicy::new(51, None), Err(Error::Invalid(_))));
    assert!(matches!(
        RetryPolicy::new(5, Some(vec![])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        RetryPolicy::new(5, Some(vec![0])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        RetryPolicy::new(5, Some(vec![7 * 86_400 + 1])),
        Err(Error::Invalid(_))
    ));

    // What is stored reads back identically: a custom policy and a maximal one.
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    for retry in [
        RetryPolicy::new(1, None).unwrap(),
        RetryPolicy::new(50, Some(vec![1, 604_800])).unwrap(),
    ] {
        let new = NewTrigger {
            retry: retry.clone(),
            ..new_trigger("orders")
        };
        let id = db
            .create_trigger(&app("shop"), new)
            .await
            .unwrap()
            .trigger
            .id;
        assert_eq!(db.get_trigger("shop", &id).await.unwrap().retry, retry);
    }
}

backend_test!(a_stored_trigger_that_does_not_read_back_is_our_error);
async fn a_stored_trigger_that_does_not_read_back_is_our_error(t: TestDb) {
    let db = &t.db;
    db.create_app(&app("shop"), "Shop").await.unwrap();
    let id = db
        .create_trigger(&app("shop"), new_trigger("orders"))
        .await
        .unwrap()
        .trigger
        .id;
    // A pattern the grammar refuses, as a bad migration or a hand edit could leave.
    on_db!(db, pool, {
        sqlx::query("UPDATE triggers SET source_topic = 'or*ders' WHERE id = $1")
            .bind(&id)
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });
    // Corrupt, answered 500: not Invalid, which would tell the caller their request was
    // wrong.
    let error = db.get_trigger("shop", &id).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
    let error = db.list_triggers("shop").await.unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
}
