//! Admin accounts and their sessions in storage, on both backends.

use std::time::Duration;

use picloud_manager_core::admins::hash_password;
use picloud_manager_core::{backend_test, Error};

backend_test! {
    async fn admins_are_unique_by_lower_cased_email_and_take_their_sessions_along(t) {
        let db = &t.db;
        let hash = hash_password("a long enough password").unwrap();
        let ada = db.create_admin(" Ada@Example.com", &hash).await.unwrap();
        assert_eq!(ada.admin.email, "ada@example.com");
        let taken = db.create_admin("ADA@example.COM", &hash).await.unwrap_err();
        assert!(matches!(taken, Error::AdminExists(ref e) if e == "ada@example.com"), "{taken}");

        let credentials = db.admin_credentials("ADA@EXAMPLE.COM").await.unwrap().expect("found");
        assert_eq!(credentials.admin, ada.admin);
        assert_eq!(credentials.password_hash, hash);
        assert!(db.admin_credentials("bob@example.com").await.unwrap().is_none());

        let session = db.create_admin_session(&ada.admin.id, Duration::from_secs(60)).await.unwrap();
        let found = db.find_admin_session(&session.secret).await.unwrap().expect("signed in");
        assert_eq!((found.admin.email.as_str(), found.csrf_token.as_str()), ("ada@example.com", session.csrf_token.as_str()));
        assert!(db.find_admin_session(&session.csrf_token).await.unwrap().is_none(), "the CSRF token is no session secret");
        let stored: Vec<Vec<u8>> = picloud_manager_core::on_db!(db, pool => {
            sqlx::query_scalar("SELECT id FROM admin_sessions").fetch_all(pool).await.unwrap()
        });
        assert_eq!(stored, vec![picloud_manager_core::admin_sessions::session_id(&session.secret).to_vec()], "only the digest is stored");

        db.delete_admin("ada@example.com").await.unwrap();
        assert!(db.find_admin_session(&session.secret).await.unwrap().is_none(), "deleting an admin signs them out");
        assert!(matches!(db.delete_admin("ada@example.com").await, Err(Error::AdminNotFound(_))));
    }
}

backend_test! {
    async fn failures_count_up_lock_and_reset(t) {
        let db = &t.db;
        let ada = db.create_admin("ada@example.com", "x").await.unwrap().admin;
        for _ in 0..4 {
            assert_eq!(db.record_failed_sign_in(&ada.id, 1_000).await.unwrap(), None);
        }
        assert_eq!(db.record_failed_sign_in(&ada.id, 1_000).await.unwrap(), Some(31_000));
        assert_eq!(db.record_failed_sign_in(&ada.id, 2_000).await.unwrap(), Some(62_000));
        let record = &db.list_admins().await.unwrap()[0];
        assert_eq!((record.failed_attempts, record.locked_until), (6, Some(62_000)));
        db.reset_failed_sign_ins(&ada.id).await.unwrap();
        let record = &db.list_admins().await.unwrap()[0];
        assert_eq!((record.failed_attempts, record.locked_until), (0, None));
    }
}
