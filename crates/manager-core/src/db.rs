//! The storage interface: one [`Db`] handle over SQLite (the embedded default) or
//! PostgreSQL (production, several nodes).
//!
//! Every query is written once, in SQL both databases accept (`$1` placeholders, integer
//! milliseconds for times, bytes for payloads), and [`on_db!`](crate::on_db) runs it on
//! whichever pool is configured. The query *text* is not checked at compile time (PiCloud uses
//! `sqlx::query`, not the `query!` macros, so building needs no database); what the
//! compiler checks is the Rust around it, once per backend: binds, decoded row types and
//! the pool's methods must work for both. The SQL itself is checked by the storage
//! tests, every one of which runs on both backends (`backend_test!`). Where the two
//! dialects genuinely differ, a query matches on [`Db`] and spells out both.
//!
//! Which transaction to open:
//! - [`begin_write`] for every transaction that writes. On SQLite it is
//!   `BEGIN IMMEDIATE`, which takes the write lock up front; a plain `BEGIN` that reads
//!   first and writes later fails with `SQLITE_BUSY` when another writer got in between,
//!   and SQLite cannot wait that out. On PostgreSQL the two are the same.
//! - `pool.begin()` only for a transaction that reads several statements from one
//!   snapshot and writes nothing.
//! - No transaction for a single statement: it is atomic by itself.
//!
//! The hot writers (publish, the dispatcher's claims and recorder) also take the
//! [`WriteGate`] first on SQLite, see [`Db::write_gate`].

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions;

use crate::error::{Error, Result};
use crate::migrations;
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
    Sqlite(SqlitePool, WriteGate, PoolState),
    /// PostgreSQL.
    Postgres(PgPool, PoolState),
}

/// What this process keeps beside its pool, shared by every clone of the [`Db`]: whether
/// writes are failing (for readiness) and the vault holding the master key.
#[derive(Debug, Clone, Default)]
pub struct PoolState {
    health: WriteHealth,
    pub(crate) vault: Vault,
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`:
/// `on_db!(db, pool, { sqlx::query("…").execute(pool).await })`. The body is compiled
/// once per backend, so it must type-check against both. Every argument is an
/// expression, so rustfmt formats the body like any other code.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident, $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool, ..) => $body,
            $crate::db::Db::Postgres($pool, ..) => $body,
        }
    };
}

/// Declares a struct and reads it from a result row of either backend, each field from
/// the column of its name: what `#[derive(sqlx::FromRow)]` does, without sqlx's macro
/// crate, which compiles sqlx's drivers and tokio a second time for the build host.
///
/// ```ignore
/// crate::db::row_struct! {
///     #[derive(Debug)]
///     struct AppRow { id: String, created_at: i64 }
/// }
/// ```
macro_rules! row_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty, )*
        }

        impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for $name
        where
            &'r str: ::sqlx::ColumnIndex<R>,
            $( $ty: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>, )*
        {
            fn from_row(row: &'r R) -> ::std::result::Result<Self, ::sqlx::Error> {
                Ok(Self {
                    $( $field: ::sqlx::Row::try_get(row, stringify!($field))?, )*
                })
            }
        }
    };
}
pub(crate) use row_struct;

/// Queues a process's SQLite writers in memory. SQLite has one writer at a time; a writer
/// that finds the lock taken waits in SQLite's busy handler, which sleeps in steps of up
/// to 100 ms. The hot writers (the publish writer, the dispatcher's claims and its outcome
/// recorder) take this gate first, so they wait for each other in FIFO order instead.
///
/// The gate also holds the process's write connection: a SQLite connection of its own,
/// outside the pool, that the publish writer drives directly from its thread. Through
/// the pool, every statement is a hand-off to the connection's worker thread and back;
/// a publish group is a handful of statements, and those hand-offs were most of its
/// time (bench/RESULTS.md, issue #17 item 3). Its calls block: only code on a thread of
/// its own (the publish writer) may run statements on it.
#[derive(Debug, Clone)]
pub struct WriteGate(Arc<tokio::sync::Mutex<rusqlite::Connection>>);

impl WriteGate {
    fn new(connection: rusqlite::Connection) -> Self {
        WriteGate(Arc::new(tokio::sync::Mutex::new(connection)))
    }
}

/// How long a SQLite connection waits for another's write lock before failing busy.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every SQLite connection's settings: WAL with `synchronous=FULL`, so a commit is on
/// disk when it returns; foreign keys on; hot pages kept in memory and the rest read
/// through mmap rather than copied in with read(2) on every cache miss.
const SQLITE_PRAGMAS: [(&str, &str); 5] = [
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("cache_size", "-65536"),
    ("mmap_size", "268435456"),
];

/// Opens the write connection of [`WriteGate`] on the database `options` name, with the
/// pool's settings.
fn open_writer_connection(
    options: &SqliteConnectOptions,
    in_memory: bool,
) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if in_memory {
        // sqlx names an in-memory database `file:sqlx-in-memory-N` and shares it
        // between its connections through the shared cache; so does this one.
        flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    let connection = rusqlite::Connection::open_with_flags(options.get_filename(), flags)?;
    connection.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    for (name, value) in SQLITE_PRAGMAS {
        connection.pragma_update(None, name, value)?;
    }
    // Room for every statement the publish writer prepares.
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

/// Whether this process's writes are failing, for readiness. A write that fails in the
/// database (disk full, I/O error, no connection) marks it; the next write that commits
/// clears it. A mark also fades after [`WRITE_FAILURE_HOLD`], so a node that readiness
/// took out of rotation (and that so gets no writes to prove itself) is tried again.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth(Arc<Mutex<Option<Instant>>>);

/// How long one failed write keeps readiness down unless a later write commits.
pub const WRITE_FAILURE_HOLD: Duration = Duration::from_secs(10);

impl WriteHealth {
    /// Records a write that failed in the database.
    pub fn failed(&self) {
        *self.0.lock().expect("write health lock") = Some(Instant::now());
    }

    /// Records a write that committed.
    pub fn succeeded(&self) {
        *self.0.lock().expect("write health lock") = None;
    }

    /// Whether a write failed recently and none has committed since.
    pub fn is_failing(&self) -> bool {
        self.0
            .lock()
            .expect("write health lock")
            .is_some_and(|at| at.elapsed() < WRITE_FAILURE_HOLD)
    }
}

/// How long a request waits for a pooled connection (or for the database to accept a
/// new one) before it is answered `503 unavailable`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How many connections a pool may open (the server's comes from
/// `--database-max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct PoolSize(pub u32);

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`) with the default acquire
    /// timeout; see [`Db::connect_with`].
    pub async fn connect(url: &str, size: PoolSize) -> Result<Db> {
        Db::connect_with(url, size, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// Connects to `url` (`sqlite://PATH` or `postgres://…`); waiting for a connection
    /// longer than `acquire_timeout` fails with `PoolTimedOut` (answered 503). A SQLite
    /// file and its parent folder are created if missing. A connection left inside a
    /// transaction (its COMMIT or ROLLBACK failed) is closed, never reused.
    pub async fn connect_with(url: &str, size: PoolSize, acquire_timeout: Duration) -> Result<Db> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let mut options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .log_statements(log::LevelFilter::Trace);
                for (name, value) in SQLITE_PRAGMAS {
                    options = options.pragma(name, value);
                }
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
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            // The ping runs after the rollback a dropped transaction
                            // queued, so the depth read next is the settled one.
                            sqlx::Connection::ping(conn).await?;
                            Ok(keep_after_release(conn))
                        })
                    })
                    .connect_with(options.clone())
                    .await?;
                let writer = open_writer_connection(&options, in_memory)?;
                Ok(Db::Sqlite(
                    pool,
                    WriteGate::new(writer),
                    PoolState::default(),
                ))
            }
            Some(Backend::Postgres) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(url)?
                    .log_statements(log::LevelFilter::Trace);
                let pool = PgPoolOptions::new()
                    .max_connections(size.0.max(1))
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                    // A dropped transaction's rollback is queued with its depth already
                    // lowered, so no round trip is needed to read the settled depth.
                    .after_release(|conn, _| Box::pin(async move { Ok(keep_after_release(conn)) }))
                    .connect_with(options)
                    .await?;
                Ok(Db::Postgres(pool, PoolState::default()))
            }
            None => Err(Error::UnsupportedDatabaseUrl(redact_url(url))),
        }
    }

    /// On SQLite, waits for this process's write gate and holds it until the guard drops
    /// (the guard is the gate's write connection, see [`WriteGate`]); on PostgreSQL,
    /// which has row locks, returns at once with no guard.
    pub async fn write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<rusqlite::Connection>> {
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

    /// Whether this process's writes are failing; see [`WriteHealth`].
    pub fn write_health(&self) -> &WriteHealth {
        &self.state().health
    }

    /// What this process keeps beside the pool.
    pub(crate) fn state(&self) -> &PoolState {
        match self {
            Db::Sqlite(_, _, state) | Db::Postgres(_, state) => state,
        }
    }

    /// Brings the schema up to date with the migrations embedded in the binary.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_through(i64::MAX).await
    }

    /// Applies the embedded migrations numbered up to `version` (the server applies
    /// them all; tests start from an older schema with it).
    pub async fn migrate_through(&self, version: i64) -> Result<()> {
        let migrator = migrations::migrator(self.backend(), version).await?;
        match self {
            Db::Sqlite(pool, ..) => {
                // SQLite cannot alter a constraint, so some migrations rebuild a table;
                // with foreign keys on, dropping the old table would delete the rows
                // that reference it. Migrations run on a connection of their own with
                // foreign keys off (SQLite's documented way), then every key is checked.
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA foreign_keys = OFF")
                    .execute(&mut *conn)
                    .await?;
                let migrated = migrator.run(&mut *conn).await;
                let checked = match migrated {
                    Ok(()) => sqlx::query("PRAGMA foreign_key_check")
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(Error::from),
                    Err(e) => Err(e.into()),
                };
                let restored = sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await;
                if checked.is_err() || restored.is_err() {
                    // Never hand the pool a connection that may still have keys off.
                    sqlx::Connection::close(conn.detach()).await?;
                }
                let broken = checked?;
                if !broken.is_empty() {
                    return Err(Error::Corrupt(format!(
                        "{} rows break a foreign key after migrating",
                        broken.len()
                    )));
                }
            }
            Db::Postgres(pool, _) => migrator.run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_db!(
            self,
            pool,
            sqlx::query("SELECT 1").execute(pool).await.map(drop)?
        );
        Ok(())
    }

    /// Closes every connection, waiting for queries in flight.
    pub async fn close(&self) {
        on_db!(self, pool, pool.close().await)
    }
}

/// Opens a PostgreSQL connection outside `pool`, with its options, on the current runtime
/// (the publish writer's own), named `application_name` for `pg_stat_activity` unless the
/// database URL names the node; waits no longer than the pool would for one of its own.
pub(crate) async fn open_postgres_connection(
    pool: &PgPool,
    application_name: &str,
) -> Result<sqlx::PgConnection> {
    let mut options = (*pool.connect_options()).clone();
    if options.get_application_name().is_none() {
        options = options.application_name(application_name);
    }
    let timeout = pool.options().get_acquire_timeout();
    match tokio::time::timeout(timeout, sqlx::Connection::connect_with(&options)).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(sqlx::Error::PoolTimedOut.into()),
    }
}

/// How long a pooled connection may sit idle and still be handed out without a ping.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Whether a pooled connection may be handed out: one idle for [`PING_WHEN_IDLE_FOR`] or
/// more must answer a ping first (the database may have restarted or the network dropped
/// it meanwhile; a dead one is closed and another taken). sqlx's default pings on every
/// acquire: a round trip before each statement or transaction (~90 µs of a publish
/// group's ~1.1 ms on PostgreSQL, bench/RESULTS.md, issue #17 item 3). A connection back
/// in the pool for less than that was just used.
async fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    Ok(still_alive(conn, meta.idle_for).await)
}

/// Whether a connection idle for `idle_for` may be used: at once if that is under
/// [`PING_WHEN_IDLE_FOR`], otherwise if it answers a ping.
pub(crate) async fn still_alive<C: sqlx::Connection>(conn: &mut C, idle_for: Duration) -> bool {
    idle_for < PING_WHEN_IDLE_FOR || conn.ping().await.is_ok()
}

/// Whether a connection given back to the pool may be reused: not if it still believes
/// it is inside a transaction. That is what a failed COMMIT or ROLLBACK leaves behind
/// (SQLite rolls back by itself on a full disk, so the ROLLBACK sqlx then sends fails
/// too), and every `BEGIN` on such a connection would fail until a restart.
fn keep_after_release<C: sqlx::Connection>(conn: &C) -> bool {
    let in_transaction = conn.is_in_transaction();
    if in_transaction {
        tracing::warn!("closing a database connection left inside a failed transaction");
    }
    !in_transaction
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

/// A write transaction on either backend, for storage code that is clearer split into
/// functions than written inside one [`on_db!`](crate::on_db) body. Statements run
/// through [`on_tx!`](crate::on_tx).
/// Dropped without [`WriteTx::commit`], it rolls back.
pub enum WriteTx {
    /// On SQLite (opened with `BEGIN IMMEDIATE`).
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the open connection of a `&mut` [`WriteTx`]:
/// `on_tx!(tx, conn, { sqlx::query("…").execute(&mut **conn).await })`. Like
/// [`on_db!`](crate::on_db), the body is compiled once per backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident, $body:expr) => {
        match $tx {
            $crate::db::WriteTx::Sqlite($conn) => $body,
            $crate::db::WriteTx::Postgres($conn) => $body,
        }
    };
}

impl Db {
    /// Opens a write transaction (see [`begin_write`]) as a [`WriteTx`].
    pub async fn begin_write_tx(&self) -> Result<WriteTx> {
        Ok(match self {
            Db::Sqlite(pool, ..) => WriteTx::Sqlite(begin_write(pool).await?),
            Db::Postgres(pool, ..) => WriteTx::Postgres(begin_write(pool).await?),
        })
    }
}

impl WriteTx {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<()> {
        match self {
            WriteTx::Sqlite(tx) => tx.commit().await?,
            WriteTx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Query parameters whose values are secrets (libpq's `password`, `sslpassword`).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// `url` with its password and any secret query parameter replaced by `***`, safe to
/// print. Input that does not parse as a URL is replaced whole: it cannot be told
/// apart from a secret.
pub fn redact_url(url: &str) -> String {
    const UNPARSABLE: &str = "<unparsable database URL>";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return UNPARSABLE.to_owned();
    };
    if !parsed.has_host() && parsed.path().contains('@') {
        // `user:secret@host` without `//`: parsed as a path, the secret would show.
        return UNPARSABLE.to_owned();
    }
    if parsed.password().is_some() {
        // Setting a password fails only on URLs that cannot have one.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed
        .query_pairs()
        .any(|(name, _)| SECRET_PARAMS.contains(&name.as_ref()))
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if SECRET_PARAMS.contains(&name.as_ref()) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// One column of `rows`, to bind as an array parameter: PostgreSQL writes a batch as
/// `UNNEST($1::bigint[], …)`, one statement text (and one cached plan) whatever its
/// length, where a VALUES list of each length is a new text to parse and plan.
pub(crate) fn column<'a, R, T>(rows: &'a [R], value: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// Appends `(…)` with one bound parameter per id, for an `IN` list: what SQLite, which
/// has no arrays, takes where PostgreSQL takes `= ANY($n)` and one array (see [`column`]).
pub(crate) fn push_id_list<'args, DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<'args, DB>,
    ids: impl IntoIterator<Item = i64>,
) where
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    query.push("(");
    let mut listed = query.separated(", ");
    for id in ids {
        listed.push_bind(id);
    }
    query.push(")");
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

    #[test]
    fn passwords_in_query_parameters_are_redacted() {
        let redacted = redact_url("postgres://u@h/db?sslmode=require&password=hunter2");
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("sslmode=require"), "{redacted}");
        let redacted = redact_url("postgresql://h/db?sslpassword=s3cr3t&user=u");
        assert!(!redacted.contains("s3cr3t"), "{redacted}");
        assert!(redacted.contains("user=u"), "{redacted}");
    }

    #[test]
    fn an_at_sign_inside_a_password_is_redacted() {
        // Unencoded, as people type it: the last `@` ends the user info.
        let redacted = redact_url("postgres://u:p@ss@h:5432/db");
        assert!(
            !redacted.contains("p@ss") && !redacted.contains("ss@"),
            "{redacted}"
        );
        let redacted = redact_url("postgres://u:p%40ss@h/db");
        assert!(!redacted.contains("p%40ss"), "{redacted}");
        assert!(redacted.starts_with("postgres://u:***@h"), "{redacted}");
    }

    #[test]
    fn unparsable_input_is_not_echoed() {
        for input in ["://u:secret@h/db", "u:secret@h/db", "not a url: secret"] {
            assert!(!redact_url(input).contains("secret"), "{input}");
        }
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
