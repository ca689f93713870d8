//! Storage failures as a client sees them.

mod common;

use common::{code, spawn_app};
use picloud_manager_core::{backend_test, on_db};
use reqwest::Method;

backend_test! {
    async fn unreadable_stored_data_is_a_500_not_a_400(t) {
        let app = spawn_app(t).await;
        on_db!(&app.t.db, pool => {
            sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ('Not An Id!', 'x', 0)")
                .execute(pool)
                .await
                .map(drop)
                .unwrap()
        });
        let (status, body) = app.call(Method::GET, "/v1/apps", Some(&app.admin_key), None).await;
        assert_eq!((status, code(&body)), (500, "internal"), "{body}");
    }
}
