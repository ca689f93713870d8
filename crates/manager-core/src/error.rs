//! The manager-core error type and its one mapping onto the HTTP error taxonomy.

use picloud_shared::access::app_not_found;
use picloud_shared::error::SourcePosition;
use picloud_shared::{ApiError, AppId, ErrorCode};

/// Everything that can go wrong in manager-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The publish writer's own SQLite connection failed (see
    /// [`WriteGate`](crate::db::WriteGate)).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names no backend PiCloud supports.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://…")]
    UnsupportedDatabaseUrl(String),
    /// An app with this id exists already.
    #[error("app '{0}' already exists")]
    AppExists(AppId),
    /// No such app.
    #[error("app '{0}' not found")]
    AppNotFound(String),
    /// No such API key (in this app).
    #[error("API key '{0}' not found")]
    KeyNotFound(String),
    /// No such topic in this app.
    #[error("topic '{0}' not found")]
    TopicNotFound(String),
    /// A topic with this name exists already.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// No such trigger in this app.
    #[error("trigger '{0}' not found")]
    TriggerNotFound(String),
    /// No such delivery in this app.
    #[error("delivery '{0}' not found")]
    DeliveryNotFound(String),
    /// No such dead letter in this app.
    #[error("dead letter '{0}' not found")]
    DeadLetterNotFound(String),
    /// No such script (or version of it) in this app.
    #[error("script '{0}' not found")]
    ScriptNotFound(String),
    /// No such source in this app.
    #[error("source '{0}' not found")]
    SourceNotFound(String),
    /// A script's source does not compile.
    #[error("the script does not compile: {0}")]
    ScriptCompile(picloud_executor_core::CompileError),
    /// An admin with this email exists already.
    #[error("an admin with email '{0}' already exists")]
    AdminExists(String),
    /// No admin has this email.
    #[error("no admin with email '{0}'")]
    AdminNotFound(String),
    /// A request is over a size limit; the message says which.
    #[error("{0}")]
    TooLarge(String),
    /// A request field is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The connection to the database was lost while a publish was committing: it may
    /// or may not have been stored. A retry with the same idempotency key is answered
    /// from the first attempt if that one was stored.
    #[error(
        "the database connection was lost while the publish committed: it may or may not \
         have been stored; retry with the same Idempotency-Key"
    )]
    CommitOutcomeUnknown,
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Something PiCloud stored cannot be read back (an id that no longer parses, an
    /// event payload that is not JSON): our fault, never the client's, so it is logged
    /// and answered as a 500.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A stored secret could not be sealed or opened, or the key file not read.
    #[error("secrets at rest: {0}")]
    Secrets(String),
    /// A secret was needed before the database was unlocked with the master key.
    #[error("secrets at rest: the database was not unlocked with the master key")]
    SecretsLocked,
    /// The master key given is not the one this database's secrets are sealed under.
    #[error(
        "the master key {given} cannot open this database's secrets, which are sealed under \
         master key {stored}: start every node with the key in use (PICLOUD_MASTER_KEY, or \
         master.key in the data dir); see docs/operations.md"
    )]
    MasterKeyMismatch {
        /// The id of the key the database's check value was sealed under.
        stored: String,
        /// The id of the key given.
        given: String,
    },
    /// A source's relay could not go on (the app's database closed the connection,
    /// PiCloud's writes failed); it retries after a back-off.
    #[error("{0}")]
    SourceRelay(String),
    /// Too much password hashing is running or queued; retry in a second.
    #[error("the server is busy checking passwords; retry in a second")]
    Busy,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::AppExists(_) => ApiError::new(ErrorCode::AppExists, error.to_string()),
            Error::AppNotFound(app) => app_not_found(&app),
            Error::KeyNotFound(_) => ApiError::new(ErrorCode::KeyNotFound, error.to_string()),
            Error::TopicNotFound(_) => ApiError::new(ErrorCode::TopicNotFound, error.to_string()),
            Error::TopicExists(_) => ApiError::new(ErrorCode::TopicExists, error.to_string()),
            Error::TriggerNotFound(_) => {
                ApiError::new(ErrorCode::TriggerNotFound, error.to_string())
            }
            Error::DeliveryNotFound(_) => {
                ApiError::new(ErrorCode::DeliveryNotFound, error.to_string())
            }
            Error::DeadLetterNotFound(_) => {
                ApiError::new(ErrorCode::DeadLetterNotFound, error.to_string())
            }
            Error::ScriptNotFound(_) => ApiError::new(ErrorCode::ScriptNotFound, error.to_string()),
            Error::SourceNotFound(_) => ApiError::new(ErrorCode::SourceNotFound, error.to_string()),
            Error::ScriptCompile(ref compile) => {
                let at = SourcePosition {
                    line: compile.line,
                    column: compile.column,
                };
                ApiError::new(ErrorCode::ScriptCompileError, error.to_string()).at(at)
            }
            Error::AdminExists(_) => ApiError::new(ErrorCode::AdminExists, error.to_string()),
            Error::AdminNotFound(_) => ApiError::new(ErrorCode::NotFound, error.to_string()),
            Error::TooLarge(message) => ApiError::new(ErrorCode::PayloadTooLarge, message),
            Error::Invalid(message) => ApiError::invalid(message),
            Error::ShuttingDown | Error::Busy | Error::CommitOutcomeUnknown => {
                ApiError::new(ErrorCode::Unavailable, error.to_string())
            }
            Error::Database(ref e) if is_unstorable_text(e) => ApiError::invalid(
                "text in the request (path, query or body) must not contain NUL characters",
            ),
            Error::Database(ref e) if is_unavailable(e) => database_unavailable(e),
            Error::Sqlite(ref e) if is_sqlite_unavailable(e) => database_unavailable(e),
            Error::Database(_)
            | Error::Sqlite(_)
            | Error::Migrate(_)
            | Error::UnsupportedDatabaseUrl(_)
            | Error::Corrupt(_)
            | Error::SourceRelay(_)
            | Error::Secrets(_)
            | Error::SecretsLocked
            | Error::MasterKeyMismatch { .. } => {
                tracing::error!(error = %error, "internal error");
                ApiError::internal()
            }
        }
    }
}

/// The answer to a request whose database cannot serve now (see [`is_unavailable`]).
fn database_unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "database unavailable");
    ApiError::new(
        ErrorCode::Unavailable,
        "the database is unavailable; retry later",
    )
}

/// Whether `error` means the connection it came through is gone (lost, or the server
/// going away), not that one statement failed: a connection kept for later must then be
/// opened again, and a COMMIT sent on it may or may not have committed.
pub(crate) fn connection_lost(error: &sqlx::Error) -> bool {
    is_unavailable(error) || !matches!(error, sqlx::Error::Database(_))
}

/// Whether `error` means the database cannot serve now (unreachable, overloaded, out
/// of space), so a retry later may succeed: answered 503 with `Retry-After`.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => match postgres_code(e.as_ref()) {
            // SQLSTATE classes: 08 connection exception, 53 insufficient resources (disk
            // full, too many connections), 57 operator intervention (shutdown).
            Some(sqlstate) => ["08", "53", "57"]
                .iter()
                .any(|class| sqlstate.starts_with(class)),
            None => e
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(is_sqlite_unavailable_code),
        },
        _ => false,
    }
}

/// [`is_unavailable`] for an error of the write connection.
fn is_sqlite_unavailable(error: &rusqlite::Error) -> bool {
    match error {
        rusqlite::Error::SqliteFailure(e, _) => is_sqlite_unavailable_code(e.extended_code),
        _ => false,
    }
}

/// Whether a SQLite result code means the database cannot serve now. The primary code is
/// the low byte: BUSY (5), IOERR (10), FULL (13).
fn is_sqlite_unavailable_code(code: i32) -> bool {
    matches!(code & 0xff, 5 | 10 | 13)
}

/// Whether `error` is PostgreSQL refusing text it cannot store: a NUL character
/// (SQLSTATE 22021, character not in repertoire; 22P05, untranslatable character).
/// The client sent it, so it is a 400; SQLite stores such text as given.
fn is_unstorable_text(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            postgres_code(e.as_ref()).is_some_and(|code| code == "22021" || code == "22P05")
        }
        _ => false,
    }
}

/// The SQLSTATE of a PostgreSQL error; `None` for other engines' errors (SQLite's
/// numeric codes could be mistaken for SQLSTATEs made of digits).
fn postgres_code(error: &dyn sqlx::error::DatabaseError) -> Option<&str> {
    error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .map(|pg| pg.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn status(error: Error) -> StatusCode {
        ApiError::from(error).code.status()
    }

    #[test]
    fn duplicates_are_conflicts() {
        assert_eq!(
            status(Error::AdminExists("a@b.c".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(Error::TopicExists("orders".into())),
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn unreadable_stored_data_is_our_fault_not_the_callers() {
        assert_eq!(
            status(Error::Corrupt("event 1 is not JSON".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
