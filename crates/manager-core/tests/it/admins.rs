//! Admin accounts and their sessions in storage, on both backends.

use std::time::Duration;

use picloud_manager_core::admins::{hash_password, SignInClaim, LOCKOUT_AFTER};
use picloud_manager_core::testing::TestDb;
use picloud_manager_core::{backend_test, on_db, Error};

backend_test!(admins_are_unique_by_lower_cased_email_and_take_their_sessions_along);
async fn admins_are_unique_by_lower_cased_email_and_take_their_sessions_along(t: TestDb) {
    let db = &t.db;
    let hash = hash_password("a long enough password").unwrap();
    let ada = db.create_admin(" Ada@Example.com", &hash).await.unwrap();
    assert_eq!(ada.admin.email, "ada@example.com");
    let taken = db.create_admin("ADA@example.COM", &hash).await.unwrap_err();
    assert!(
        matches!(taken, Error::AdminExists(ref e) if e == "ada@example.com"),
        "{taken}"
    );

    let credentials = db
        .admin_credentials("ADA@EXAMPLE.COM")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(credentials.admin, ada.admin);
    assert_eq!(credentials.password_hash, hash);
    assert!(db
        .admin_credentials("bob@example.com")
        .await
        .unwrap()
        .is_none());

    let session = db
        .create_admin_session(&ada.admin.id, Duration::from_secs(60))
        .await
        .unwrap();
    let found = db
        .find_admin_session(&session.secret)
        .await
        .unwrap()
        .expect("signed in");
    assert_eq!(
        (found.admin.email.as_str(), found.csrf_token.as_str()),
        ("ada@example.com", session.csrf_token.as_str())
    );
    assert!(
        db.find_admin_session(&session.csrf_token)
            .await
            .unwrap()
            .is_none(),
        "the CSRF token is no session secret"
    );
    let stored: Vec<Vec<u8>> = picloud_manager_core::on_db!(db, pool, {
        sqlx::query_scalar("SELECT id FROM admin_sessions")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        stored,
        vec![picloud_manager_core::admin_sessions::session_id(&session.secret).to_vec()],
        "only the digest is stored"
    );

    db.delete_admin("ada@example.com").await.unwrap();
    assert!(
        db.find_admin_session(&session.secret)
            .await
            .unwrap()
            .is_none(),
        "deleting an admin signs them out"
    );
    assert!(matches!(
        db.delete_admin("ada@example.com").await,
        Err(Error::AdminNotFound(_))
    ));
}

backend_test!(attempts_are_counted_before_checking_lock_and_reset);
async fn attempts_are_counted_before_checking_lock_and_reset(t: TestDb) {
    let db = &t.db;
    let ada = db.create_admin("ada@example.com", "x").await.unwrap().admin;
    let checked = |claim: SignInClaim| match claim {
        SignInClaim::Check(c) => c.locked_until,
        other => panic!("expected a check, got {other:?}"),
    };
    for _ in 0..4 {
        assert_eq!(
            checked(db.claim_sign_in("Ada@Example.com", 1_000).await.unwrap()),
            None
        );
    }
    // The fifth attempt is still checked, but it locks the account in advance.
    assert_eq!(
        checked(db.claim_sign_in("ada@example.com", 1_000).await.unwrap()),
        Some(31_000)
    );
    assert!(matches!(
        db.claim_sign_in("ada@example.com", 30_999).await.unwrap(),
        SignInClaim::Locked(31_000)
    ));
    assert_eq!(
        checked(db.claim_sign_in("ada@example.com", 31_000).await.unwrap()),
        Some(91_000),
        "doubled"
    );
    let record = &db.list_admins().await.unwrap()[0];
    assert_eq!(
        (record.failed_attempts, record.locked_until),
        (6, Some(91_000))
    );
    db.reset_failed_sign_ins(&ada.id).await.unwrap();
    let record = &db.list_admins().await.unwrap()[0];
    assert_eq!((record.failed_attempts, record.locked_until), (0, None));
    assert!(matches!(
        db.claim_sign_in("nobody@example.com", 1_000).await.unwrap(),
        SignInClaim::Unknown
    ));

    // Locks are capped at 15 minutes, and unlocking clears them.
    on_db!(db, pool, {
        sqlx::query("UPDATE admins SET failed_attempts = 30")
            .execute(pool)
            .await
            .map(drop)
            .unwrap()
    });
    assert_eq!(
        checked(db.claim_sign_in("ada@example.com", 0).await.unwrap()),
        Some(15 * 60 * 1000)
    );
    let before = db.unlock_admin("ADA@example.com").await.unwrap();
    assert_eq!(
        (before.failed_attempts, before.locked_until),
        (31, Some(15 * 60 * 1000))
    );
    let record = &db.list_admins().await.unwrap()[0];
    assert_eq!((record.failed_attempts, record.locked_until), (0, None));
    assert!(matches!(
        db.unlock_admin("nobody@example.com").await,
        Err(Error::AdminNotFound(_))
    ));
}

backend_test!(parallel_attempts_get_at_most_the_allowance_of_checks);
async fn parallel_attempts_get_at_most_the_allowance_of_checks(t: TestDb) {
    let db = &t.db;
    db.create_admin("ada@example.com", "x").await.unwrap();
    let claims =
        futures::future::join_all((0..30).map(|_| db.claim_sign_in("ada@example.com", 1_000)))
            .await;
    let checks = claims
        .iter()
        .filter(|c| matches!(c, Ok(SignInClaim::Check(_))))
        .count();
    let locked = claims
        .iter()
        .filter(|c| matches!(c, Ok(SignInClaim::Locked(31_000))))
        .count();
    assert_eq!(
        (checks, locked),
        (LOCKOUT_AFTER as usize, 30 - LOCKOUT_AFTER as usize),
        "{claims:?}"
    );
    assert_eq!(
        db.list_admins().await.unwrap()[0].failed_attempts,
        LOCKOUT_AFTER
    );
}
