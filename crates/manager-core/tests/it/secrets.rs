//! Secrets at rest on both backends: trigger signing secrets and subscriber-token keys
//! are stored sealed under the master key, a wrong key is refused at unlock, rotation
//! re-seals everything, and plaintext rows of an earlier version are sealed at unlock.

use picloud_manager_core::db::PoolSize;
use picloud_manager_core::secret_box::{MasterKey, SEALED_PREFIX};
use picloud_manager_core::secrets_at_rest::KEY_CHECK_SETTING;
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::triggers::{
    Handler, NewTrigger, TopicPattern, TriggerSource, WebhookUrl,
};
use picloud_manager_core::{backend_test, on_db, Db, Error};
use picloud_shared::realtime::{RealtimeStore, SigningKey, SUBSCRIBER_TOKEN_PURPOSE};
use picloud_shared::AppId;

fn shop() -> AppId {
    AppId::parse("shop").unwrap()
}

fn new_trigger() -> NewTrigger {
    NewTrigger::new(
        TriggerSource::Topic {
            topic: TopicPattern::parse("orders").unwrap(),
        },
        Handler::Webhook {
            url: WebhookUrl::parse("https://example.com/hook").unwrap(),
        },
    )
}

/// A trigger's raw `(secret, previous_secret)` columns.
async fn raw_trigger(db: &Db, id: &str) -> (String, Option<String>) {
    on_db!(db, pool, {
        sqlx::query_as("SELECT secret, previous_secret FROM triggers WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

/// Every raw `app_secrets.secret` column.
async fn raw_app_secrets(db: &Db) -> Vec<Vec<u8>> {
    on_db!(db, pool, {
        sqlx::query_scalar("SELECT secret FROM app_secrets ORDER BY kid")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

fn signing_key(kid: &str, byte: u8) -> SigningKey {
    SigningKey {
        kid: kid.to_owned(),
        secret: vec![byte; 32],
        created_at: 1,
        retired_at: None,
    }
}

async fn connect(t: &TestDb) -> Db {
    Db::connect(&t.url, PoolSize(2)).await.unwrap()
}

/// A trigger with a rotated secret and one subscriber-token key; returns the trigger id,
/// its current and previous secrets.
async fn populate(db: &Db) -> (String, String, String) {
    db.create_app(&shop(), "Shop").await.unwrap();
    let created = db.create_trigger(&shop(), new_trigger()).await.unwrap();
    let id = created.trigger.id;
    let rotated = db.rotate_trigger_secret("shop", &id).await.unwrap();
    db.insert_signing_key(&shop(), SUBSCRIBER_TOKEN_PURPOSE, &signing_key("k1", 7))
        .await
        .unwrap();
    (id, rotated.secret, created.secret)
}

/// Asserts the secrets `populate` stored read back as they were written.
async fn assert_secrets_read_back(db: &Db, id: &str, secret: &str) {
    assert_eq!(db.trigger_secret("shop", id).await.unwrap(), secret);
    let keys = db
        .signing_keys(&shop(), SUBSCRIBER_TOKEN_PURPOSE)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].secret, vec![7u8; 32]);
}

backend_test!(stored_secrets_are_sealed_and_read_back_as_written);
async fn stored_secrets_are_sealed_and_read_back_as_written(t: TestDb) {
    let db = &t.db;
    let (id, secret, previous) = populate(db).await;
    let (raw_secret, raw_previous) = raw_trigger(db, &id).await;
    let raw_previous = raw_previous.unwrap();
    for (raw, plain) in [(&raw_secret, &secret), (&raw_previous, &previous)] {
        assert!(raw.starts_with(SEALED_PREFIX), "sealed: {raw}");
        assert!(
            !raw.contains(plain.trim_start_matches("whsec_")),
            "no plaintext in {raw}"
        );
    }
    let raw_keys = raw_app_secrets(db).await;
    assert!(raw_keys[0].starts_with(SEALED_PREFIX.as_bytes()));
    assert!(
        !raw_keys[0].windows(32).any(|w| w == [7u8; 32]),
        "no plaintext key bytes"
    );
    assert_secrets_read_back(db, &id, &secret).await;

    // A sealed value moved to another row does not open there.
    let other = db
        .create_trigger(&shop(), new_trigger())
        .await
        .unwrap()
        .trigger
        .id;
    on_db!(db, pool, {
        sqlx::query("UPDATE triggers SET secret = $1 WHERE id = $2")
            .bind(&raw_secret)
            .bind(&other)
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });
    assert!(matches!(
        db.trigger_secret("shop", &other).await,
        Err(Error::Secrets(_))
    ));
}

backend_test!(a_wrong_master_key_is_refused_at_unlock_with_a_clear_error);
async fn a_wrong_master_key_is_refused_at_unlock_with_a_clear_error(t: TestDb) {
    let (id, secret, _) = populate(&t.db).await;
    let wrong = MasterKey::generate();
    let db = connect(&t).await;
    let error = db.unlock_secrets(wrong.clone()).await.unwrap_err();
    assert!(matches!(error, Error::MasterKeyMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(wrong.id()) && message.contains(t.master_key().id()),
        "{message}"
    );
    assert!(
        !message.contains(wrong.to_base64().as_str()),
        "the key itself is never shown"
    );
    // Still locked: nothing is read or minted with the wrong key.
    assert!(matches!(
        db.trigger_secret("shop", &id).await,
        Err(Error::SecretsLocked)
    ));
    // The right key still unlocks it.
    let db = connect(&t).await;
    db.unlock_secrets(t.master_key()).await.unwrap();
    assert_secrets_read_back(&db, &id, &secret).await;
}

backend_test!(rotation_reseals_every_secret_and_only_the_new_key_unlocks_after);
async fn rotation_reseals_every_secret_and_only_the_new_key_unlocks_after(t: TestDb) {
    let (id, secret, previous) = populate(&t.db).await;
    let before = raw_trigger(&t.db, &id).await;
    let new = MasterKey::generate();
    let resealed = t.db.rotate_master_key(new.clone()).await.unwrap();
    assert_eq!(
        resealed.rekeyed, 3,
        "current and previous trigger secret, one signing key"
    );
    let after = raw_trigger(&t.db, &id).await;
    assert_ne!(before, after);
    assert!(after.0.contains(new.id()) && after.1.unwrap().contains(new.id()));
    assert_secrets_read_back(&t.db, &id, &secret).await;

    let old_key = connect(&t).await;
    assert!(matches!(
        old_key.unlock_secrets(t.master_key()).await,
        Err(Error::MasterKeyMismatch { .. })
    ));
    let new_key = connect(&t).await;
    new_key.unlock_secrets(new).await.unwrap();
    assert_secrets_read_back(&new_key, &id, &secret).await;
    let rotated = new_key.rotate_trigger_secret("shop", &id).await.unwrap();
    assert_eq!(
        new_key.trigger_secret("shop", &id).await.unwrap(),
        rotated.secret
    );
    assert_ne!(rotated.secret, previous);
}

backend_test!(plaintext_rows_of_an_earlier_version_are_sealed_at_unlock);
async fn plaintext_rows_of_an_earlier_version_are_sealed_at_unlock(t: TestDb) {
    let (id, secret, previous) = populate(&t.db).await;
    // What a version before sealing wrote: plaintext columns and no key check.
    on_db!(&t.db, pool, {
        sqlx::query("UPDATE triggers SET secret = $1, previous_secret = $2 WHERE id = $3")
            .bind(&secret)
            .bind(&previous)
            .bind(&id)
            .execute(pool)
            .await
            .map(drop)
            .unwrap();
        sqlx::query("UPDATE app_secrets SET secret = $1")
            .bind(vec![7u8; 32])
            .execute(pool)
            .await
            .map(drop)
            .unwrap();
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(KEY_CHECK_SETTING)
            .execute(pool)
            .await
            .map(drop)
            .unwrap();
    });

    let db = connect(&t).await;
    let resealed = db.unlock_secrets(t.master_key()).await.unwrap();
    assert_eq!((resealed.plaintext, resealed.rekeyed), (3, 0));
    let (raw_secret, raw_previous) = raw_trigger(&db, &id).await;
    assert!(
        raw_secret.starts_with(SEALED_PREFIX) && raw_previous.unwrap().starts_with(SEALED_PREFIX)
    );
    assert!(raw_app_secrets(&db)
        .await
        .iter()
        .all(|raw| raw.starts_with(SEALED_PREFIX.as_bytes())));
    assert_secrets_read_back(&db, &id, &secret).await;

    // Idempotent: the next start changes nothing, and the key check is back.
    let again = connect(&t).await;
    assert_eq!(
        again
            .unlock_secrets(t.master_key())
            .await
            .unwrap()
            .plaintext,
        0
    );
    assert_eq!(raw_trigger(&again, &id).await.0, raw_secret);
    let wrong = connect(&t).await;
    assert!(matches!(
        wrong.unlock_secrets(MasterKey::generate()).await,
        Err(Error::MasterKeyMismatch { .. })
    ));
}
