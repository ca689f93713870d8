//! Secrets at rest end to end: a database written before sealing keeps signing webhooks
//! and verifying tokens after a start that seals it, and the data dir, the SQLite files
//! and the key file are private to PiCloud's user.

use std::time::Duration;

use crate::common::sink::Sink;
use crate::common::sse::Subscribe;
use crate::common::{spawn_app_with, spawn_existing};
use clap::Parser;
use picloud::config::{Cli, ServeArgs};
use picloud_manager_core::secret_box::SEALED_PREFIX;
use picloud_manager_core::secrets_at_rest::KEY_CHECK_SETTING;
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::{backend_test, on_db};
use picloud_shared::realtime::{RealtimeStore, SUBSCRIBER_TOKEN_PURPOSE};
use picloud_shared::AppId;
use reqwest::Method;
use serde_json::json;

fn fast_args() -> ServeArgs {
    let mut args = ServeArgs::for_tests();
    args.dispatch_backoff_scale = 0.001;
    args.dispatch_poll_ms = 50;
    args.webhook_allow_private = true;
    args
}

backend_test!(a_database_from_before_sealing_keeps_signing_and_verifying_after_start);
async fn a_database_from_before_sealing_keeps_signing_and_verifying_after_start(t: TestDb) {
    let (sink, base) = Sink::start().await;
    let app = spawn_app_with(t, fast_args()).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "news", "auth_mode": "token"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(json!({
                "source": {"kind": "topic", "topic": "news"},
                "handler": {"kind": "webhook", "url": format!("{base}/hook")},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    sink.secret("hook", &secret);
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/subscriber-tokens",
            Some(&key),
            Some(json!({"topics": ["news"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let signing_keys = app
        .t
        .db
        .signing_keys(&AppId::parse("shop").unwrap(), SUBSCRIBER_TOKEN_PURPOSE)
        .await
        .unwrap();
    let t = app.stop().await;

    // Turn the database into what a version before sealing left: plaintext secrets
    // and no key check.
    let raw = picloud_manager_core::Db::connect(&t.url, picloud_manager_core::db::PoolSize(1))
        .await
        .unwrap();
    on_db!(&raw, pool, {
        sqlx::query("UPDATE triggers SET secret = $1")
            .bind(&secret)
            .execute(pool)
            .await
            .map(drop)
            .unwrap();
        for signing_key in &signing_keys {
            sqlx::query("UPDATE app_secrets SET secret = $1 WHERE kid = $2")
                .bind(&signing_key.secret)
                .bind(&signing_key.kid)
                .execute(pool)
                .await
                .map(drop)
                .unwrap();
        }
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(KEY_CHECK_SETTING)
            .execute(pool)
            .await
            .map(drop)
            .unwrap();
    });
    raw.close().await;

    let app = spawn_existing(t, fast_args()).await;
    let (stored_secret, stored_keys): (String, Vec<Vec<u8>>) = on_db!(&app.t.db, pool, {
        (
            sqlx::query_scalar("SELECT secret FROM triggers")
                .fetch_one(pool)
                .await
                .unwrap(),
            sqlx::query_scalar("SELECT secret FROM app_secrets")
                .fetch_all(pool)
                .await
                .unwrap(),
        )
    });
    assert!(
        stored_secret.starts_with(SEALED_PREFIX) && !stored_secret.contains(&secret[6..]),
        "{stored_secret}"
    );
    assert!(!stored_keys.is_empty());
    for (stored, plain) in stored_keys.iter().zip(&signing_keys) {
        assert!(stored.starts_with(SEALED_PREFIX.as_bytes()));
        assert!(!stored
            .windows(plain.secret.len())
            .any(|w| w == plain.secret.as_slice()));
    }

    // The token minted before still verifies ...
    let mut subscriber = app
        .subscribe(
            "shop",
            &["news"],
            Subscribe {
                token: Some(&token),
                ..Default::default()
            },
        )
        .await
        .expect("a token minted before the start verifies");
    subscriber.expect("hello").await;
    // ... and deliveries are signed with the secret the API revealed.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/news/events",
            Some(&key),
            Some(json!({"data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.received("hook").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = sink.received("hook");
    assert!(
        received[0].signature_valid,
        "signed with the revealed secret"
    );
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_database_files_and_key_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let root = tempfile::tempdir().unwrap();

    // A first start: everything created private.
    let data_dir = root.path().join("data");
    let cli = Cli::parse_from(["picloud", "--data-dir", data_dir.to_str().unwrap(), "serve"]);
    let db = picloud::server::open_database(&cli.database).await.unwrap();
    picloud::master_key::unlock(&db, &cli.database)
        .await
        .unwrap();
    assert_eq!(mode(&data_dir), 0o700, "data dir");
    for file in [
        "picloud.db",
        "picloud.db-wal",
        "picloud.db-shm",
        "master.key",
    ] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    db.close().await;

    // A database an earlier version created world-readable is tightened at start.
    let old_dir = root.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    let old_db = old_dir.join("picloud.db");
    std::fs::write(&old_db, b"").unwrap();
    std::fs::set_permissions(&old_db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cli = Cli::parse_from([
        "picloud",
        "--data-dir",
        old_dir.to_str().unwrap(),
        "migrate",
    ]);
    let db = picloud::server::open_database(&cli.database).await.unwrap();
    assert_eq!(mode(&old_db), 0o600);
    assert_eq!(mode(&old_dir.join("picloud.db-wal")), 0o600);
    db.close().await;
}
