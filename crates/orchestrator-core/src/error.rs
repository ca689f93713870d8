//! The orchestrator-core error type and its one mapping onto the HTTP error taxonomy.

use picloud_shared::access::app_not_found;
use picloud_shared::realtime::StoreError;
use picloud_shared::{ApiError, ErrorCode};

/// Everything that can go wrong in the realtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed (the store logged what is internal).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request field is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// A subscription names a topic that does not exist or is not external. One answer
    /// for both, so internal topics cannot be probed.
    #[error("no such subscribable topic")]
    NotSubscribable,
    /// A subscriber token is missing, malformed, forged, expired, of another app or does
    /// not cover the topics. Which of these stays in a debug log.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The app has as many open streams as it may.
    #[error("this app has {0} open realtime streams, its limit; retry later")]
    AppStreamLimit(usize),
    /// The token's subject (`sub`) has as many open streams of the app as it may.
    #[error("this token's subject has {0} open realtime streams, its limit; retry later")]
    SubjectStreamLimit(usize),
    /// The server has as many open streams as it may.
    #[error("the server is at its limit of {0} realtime streams; retry later")]
    ServerStreamLimit(usize),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(StoreError::Unavailable(_)) => ApiError::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry later",
            ),
            Error::Store(StoreError::Refused(message)) => ApiError::invalid(message),
            Error::Store(StoreError::AppNotFound(app)) => app_not_found(&app),
            Error::Store(StoreError::Failed(_)) => ApiError::internal(),
            Error::Invalid(message) => ApiError::invalid(message),
            Error::NotSubscribable => ApiError::new(ErrorCode::NotFound, error.to_string()),
            Error::Unauthorized => ApiError::unauthorized(),
            Error::AppStreamLimit(_) | Error::SubjectStreamLimit(_) => {
                ApiError::new(ErrorCode::RateLimited, error.to_string())
            }
            Error::ServerStreamLimit(_) => ApiError::new(ErrorCode::Unavailable, error.to_string()),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        ApiError::from(self).into_response()
    }
}
