//! Throwaway databases for tests, on both backends (feature `testing`).
//!
//! Every storage test runs twice through [`backend_test!`]: on a fresh SQLite file, and on
//! a fresh PostgreSQL database created on the server named by
//! `PICLOUD_TEST_DATABASE_URL` (which `scripts/test.sh` always sets; without it the
//! PostgreSQL half says it was skipped).

use picloud_shared::ids::random_id;

use crate::db::{Backend, Db, PoolSize};
use crate::secret_box::{MasterKey, KEY_FILE_NAME};

/// The variable naming a PostgreSQL server tests may create databases on.
pub const TEST_DATABASE_URL_ENV: &str = "PICLOUD_TEST_DATABASE_URL";

/// A migrated, empty database that lives as long as this value.
#[derive(Debug)]
pub struct TestDb {
    /// A pool to it.
    pub db: Db,
    /// Its URL, for starting a server on it.
    pub url: String,
    /// For SQLite, the folder holding the file (and a data dir for a server).
    pub dir: tempfile::TempDir,
}

impl TestDb {
    /// A fresh database on `backend`; `None` for PostgreSQL when no test server is set.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        TestDb::migrated_through(backend, i64::MAX).await
    }

    /// A fresh database on `backend` with the migrations up to `version` only, for
    /// testing the later ones on data in the old schema.
    pub async fn migrated_through(backend: Backend, version: i64) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("picloud.db").display()),
            Backend::Postgres => fresh_postgres_database().await?,
        };
        let db = Db::connect(&url, PoolSize(8))
            .await
            .expect("connect test database");
        db.migrate_through(version)
            .await
            .expect("migrate test database");
        let t = TestDb { db, url, dir };
        t.db.unlock_secrets(t.master_key())
            .await
            .expect("unlock test database");
        Some(t)
    }

    /// The data dir a server started on this database uses (`--data-dir`): it holds the
    /// master key file the database is unlocked with.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Another handle on this database for a second node, reached at `url` (this one's,
    /// or one with other connection options): the same pool, and a data dir of its own
    /// holding the same master key, as every node of one database needs.
    pub fn another_node(&self, url: String) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let other = TestDb {
            db: self.db.clone(),
            url,
            dir,
        };
        std::fs::create_dir_all(other.data_dir()).expect("second node's data dir");
        std::fs::copy(
            self.data_dir().join(KEY_FILE_NAME),
            other.data_dir().join(KEY_FILE_NAME),
        )
        .expect("copy the master key");
        other
    }

    /// The database's master key, from (or created in) [`TestDb::data_dir`].
    pub fn master_key(&self) -> MasterKey {
        MasterKey::load_or_create(&self.data_dir().join(KEY_FILE_NAME))
            .expect("test master key")
            .0
    }

    /// A new pool to this database, unlocked with its master key, as a restarted
    /// server would open it.
    pub async fn reconnect(&self) -> Db {
        let db = Db::connect(&self.url, PoolSize(8))
            .await
            .expect("reconnect test database");
        db.unlock_secrets(self.master_key())
            .await
            .expect("unlock test database");
        db
    }
}

/// A new, empty PostgreSQL database on the test server for an app's own data (an outbox
/// source), whichever backend PiCloud's storage is on; `None` when no test server is set.
pub async fn app_database() -> Option<String> {
    fresh_postgres_database().await
}

/// Creates an empty database on the test PostgreSQL server and returns its URL.
async fn fresh_postgres_database() -> Option<String> {
    let admin_url = std::env::var(TEST_DATABASE_URL_ENV).ok()?;
    let name = random_id("picloud_test");
    let admin = Db::connect(&admin_url, PoolSize(1))
        .await
        .expect("connect to PICLOUD_TEST_DATABASE_URL");
    crate::on_db!(&admin, pool, {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(pool)
            .await
            .map(drop)
            .expect("create test database")
    });
    admin.close().await;
    Some(with_database_name(&admin_url, &name))
}

/// `url` with its database name replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..path_start])
}

/// Runs an ordinary `async fn NAME(t: TestDb)` once per backend, as the tests
/// `NAME::sqlite` and `NAME::postgres`, each with a fresh [`TestDb`]:
///
/// ```ignore
/// backend_test!(apps_can_be_created);
/// async fn apps_can_be_created(t: TestDb) {
///     t.db.create_app(&app, "Shop").await.unwrap();
/// }
/// ```
///
/// The function stays outside the macro, so rustfmt and the IDE see it as plain code.
/// Without [`TEST_DATABASE_URL_ENV`] the PostgreSQL half says it was skipped.
#[macro_export]
macro_rules! backend_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::testing::TestDb::new($crate::db::Backend::Sqlite)
                    .await
                    .expect("sqlite test database");
                super::$name(t).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = $crate::testing::TestDb::new($crate::db::Backend::Postgres).await
                else {
                    eprintln!(
                        "skipped: set {} to run PostgreSQL tests",
                        $crate::testing::TEST_DATABASE_URL_ENV
                    );
                    return;
                };
                super::$name(t).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replacement() {
        assert_eq!(
            with_database_name("postgres://u@h:5/postgres", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database_name("postgres://u@h:5", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database_name("postgres://u@h/db?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}

/// A broadcaster that remembers what it was given, to check what went live.
#[derive(Debug, Default)]
pub struct RecordingBroadcaster {
    events: std::sync::Mutex<Vec<picloud_shared::events::CommittedEvent>>,
}

impl RecordingBroadcaster {
    /// Everything broadcast so far, in order.
    pub fn events(&self) -> Vec<picloud_shared::events::CommittedEvent> {
        self.events.lock().expect("recording lock").clone()
    }
}

impl picloud_shared::events::RealtimeBroadcaster for RecordingBroadcaster {
    fn broadcast(
        &self,
        events: &[picloud_shared::events::CommittedEvent],
    ) -> Result<(), picloud_shared::events::BroadcastError> {
        self.events
            .lock()
            .expect("recording lock")
            .extend_from_slice(events);
        Ok(())
    }
}
