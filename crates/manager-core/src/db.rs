//! The storage interface: one [`Db`] handle over SQLite (the embedded default) or
//! PostgreSQL (production, several nodes).
//!
//! Every query is written once, in SQL both databases accept (`$1` placeholders, integer
//! milliseconds for times, bytes for payloads), and [`on_db!`] runs it on whichever pool
//! is configured, type-checked against both backends at compile time. Where the two
//! dialects genuinely differ, a query matches on [`Db`] and spells out both.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

use crate::error::{Error, Result};
use crate::private_files::{create_private_dir, prepare_sqlite_file};
use crate::secrets_at_rest::Vault;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if any.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// A connection pool to PiCloud's database. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite in WAL mode with `synchronous=FULL`: a commit is on disk when it returns.
    /// The gate queues this process's busy writers (see [`Db::write_gate`]).
    /// The vault holds the master key secrets are sealed under.
    Sqlite(SqlitePool, WriteGate, Vault),
    /// PostgreSQL.
    Postgres(PgPool, Vault),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`. The body is compiled
/// once per backend, so it must type-check against both.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool, ..) => $body,
            $crate::db::Db::Postgres($pool, ..) => $body,
        }
    };
}

/// Queues a process's SQLite writers in memory. SQLite has one writer at a time; a writer
/// that finds the lock taken waits in SQLite's busy handler, which sleeps in steps of up
/// to 100 ms. The hot writers (the publish writer, the dispatcher's claims and its outcome
/// recorder) take this gate first, so they wait for each other in FIFO order instead.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<tokio::sync::Mutex<()>>);

/// How many connections a pool may open.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize(pub u32);

impl Default for PoolSize {
    fn default() -> Self {
        PoolSize(16)
    }
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). A SQLite file (0600) and
    /// its parent folder (0700) are created if missing; see [`prepare_sqlite_file`].
    pub async fn connect(url: &str, size: PoolSize) -> Result<Db> {
        let acquire_timeout = Duration::from_secs(10);
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    // Keep hot pages in memory and read the rest through mmap rather than
                    // copying them in with read(2) on every cache miss.
                    .pragma("cache_size", "-65536")
                    .pragma("mmap_size", "268435456")
                    .log_statements(log::LevelFilter::Trace);
                let file = options.get_filename();
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                if !in_memory {
                    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                        create_private_dir(parent).map_err(sqlx::Error::Io)?;
                    }
                    prepare_sqlite_file(file).map_err(sqlx::Error::Io)?;
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(size.0.max(1))
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Db::Sqlite(pool, WriteGate::default(), Vault::default()))
            }
            Some(Backend::Postgres) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(url)?
                    .log_statements(log::LevelFilter::Trace);
                let pool = PgPoolOptions::new()
                    .max_connections(size.0.max(1))
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Db::Postgres(pool, Vault::default()))
            }
            None => Err(Error::UnsupportedDatabaseUrl(redact_url(url))),
        }
    }

    /// On SQLite, waits for this process's write gate and holds it until the guard drops;
    /// on PostgreSQL, which has row locks, returns at once with no guard.
    pub async fn write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self {
            Db::Sqlite(_, gate, _) => Some(gate.0.clone().lock_owned().await),
            Db::Postgres(..) => None,
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Postgres(..) => Backend::Postgres,
        }
    }

    /// Brings the schema up to date with the migrations embedded in the binary.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(pool, ..) => sqlx::migrate!("../../migrations/sqlite").run(pool).await?,
            Db::Postgres(pool, _) => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Closes every connection, waiting for queries in flight.
    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}

/// Pools that can open a write transaction.
pub trait WritePool {
    /// The database type.
    type Database: sqlx::Database;
    /// Opens a transaction that will write. On SQLite this is `BEGIN IMMEDIATE`: the write
    /// lock is taken up front, so a busy database is waited for (busy timeout) instead of
    /// failing when a read turns into a write.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl WritePool for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// Opens a write transaction on either pool; see [`WritePool::begin_write`].
pub async fn begin_write<P: WritePool>(
    pool: &P,
) -> Result<sqlx::Transaction<'static, P::Database>, sqlx::Error> {
    pool.begin_write().await
}

/// `url` with any password replaced, safe to print.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Whether `error` is a unique-constraint violation (a duplicate key).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_url() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
