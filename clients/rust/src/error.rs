//! The one error type of the SDK, and the API's machine-readable error codes.
//!
//! Every failed call returns [`Error`]. An answer of the server that is not a success
//! becomes [`Error::Api`], carrying the API's `code` (from the body
//! `{"error":{"code","message"}}`), the HTTP status, the message and the request id the
//! server sent in `x-request-id`. Match on [`ErrorCode`], never on messages.
//!
//! ```no_run
//! use picloud_client::{Client, Error, ErrorCode};
//!
//! # async fn run(client: Client) -> Result<(), Error> {
//! match client.topics().get("orders").await {
//!     Ok(topic) => println!("orders is at seq {}", topic.last_seq),
//!     Err(Error::Api(e)) if e.code == ErrorCode::TopicNotFound => println!("no such topic"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Anything a token provider or another caller-supplied hook may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call of the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No HTTP answer came: the connection was refused, reset or timed out.
    #[error("network error: {0}")]
    Network(#[source] reqwest::Error),
    /// The server answered with something the API does not promise (not JSON, or JSON
    /// of another shape).
    #[error("invalid response (HTTP {status}): {message}")]
    InvalidResponse {
        /// The HTTP status of the answer.
        status: u16,
        /// What was wrong with it.
        message: String,
        /// The server's `x-request-id`, when it sent one.
        request_id: Option<String>,
    },
    /// The client was set up wrong (a malformed base URL, no app for an app route).
    #[error("configuration error: {0}")]
    Config(String),
    /// A webhook delivery failed verification.
    #[error(transparent)]
    Webhook(#[from] crate::webhooks::WebhookError),
    /// The realtime server speaks a protocol major version this SDK does not know.
    #[error("realtime protocol incompatible: {0}")]
    ProtocolIncompatible(String),
    /// No byte arrived on a realtime stream for twice the heartbeat interval.
    #[error("no data on the realtime stream for {0:?}: the connection is dead")]
    HeartbeatTimeout(Duration),
    /// The server ended a realtime stream without saying why (it shut down, say).
    #[error("the server ended the realtime stream")]
    StreamEnded,
    /// The realtime token provider failed or returned no token.
    #[error("the token provider failed: {0}")]
    TokenProvider(#[source] BoxError),
}

impl Error {
    /// The API's error code, for [`Error::Api`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The HTTP status of an answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `x-request-id` of the failed request, when it sent one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api(e) => e.request_id.as_deref(),
            Error::InvalidResponse { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The error for a non-2xx answer: its status, headers (for `x-request-id` and
    /// `Retry-After`) and body (`{"error":{"code","message"}}`, or anything else, which
    /// becomes the code `http_<status>`). For answers of requests made without the SDK.
    pub fn from_response(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Self {
        let status = reqwest::StatusCode::from_u16(status)
            .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        crate::http::api_error(status, headers, body)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The API's machine-readable code, or `http_<status>` ([`ErrorCode::Unknown`]) when
    /// the body was not an API error.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// The server's `x-request-id`, to find the request in its log.
    pub request_id: Option<String>,
    /// The line of a script compile error.
    pub line: Option<u64>,
    /// The column of a script compile error.
    pub column: Option<u64>,
    /// How long the server asked to wait (`Retry-After`), when it did.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

/// The JSON body of every error response (`ErrorBody` in the API document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// Line of the error in the submitted source (script compile errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Column of the error in the submitted source (script compile errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

crate::string_enum! {
    /// A machine-readable error code; clients match on these, never on messages.
    ///
    /// A code this SDK does not know yet (from a newer server), and the `http_<status>`
    /// the SDK makes up for an answer that is not an API error, are
    /// [`ErrorCode::Unknown`].
    ErrorCode {
        /// The body is not valid JSON.
        InvalidJson = "invalid_json",
        /// The request is malformed or breaks a rule.
        InvalidRequest = "invalid_request",
        /// The body was not sent as `Content-Type: application/json`.
        UnsupportedMediaType = "unsupported_media_type",
        /// The body is larger than the server's limit.
        PayloadTooLarge = "payload_too_large",
        /// Missing or invalid credentials.
        Unauthorized = "unauthorized",
        /// The credentials may not do this.
        Forbidden = "forbidden",
        /// No such route or resource.
        NotFound = "not_found",
        /// The route does not take this method.
        MethodNotAllowed = "method_not_allowed",
        /// No such app.
        AppNotFound = "app_not_found",
        /// No such API key.
        KeyNotFound = "key_not_found",
        /// The app id is taken.
        AppExists = "app_exists",
        /// No such topic.
        TopicNotFound = "topic_not_found",
        /// The topic is already registered.
        TopicExists = "topic_exists",
        /// The admin exists already.
        AdminExists = "admin_exists",
        /// No such trigger.
        TriggerNotFound = "trigger_not_found",
        /// No such delivery.
        DeliveryNotFound = "delivery_not_found",
        /// No such dead letter.
        DeadLetterNotFound = "dead_letter_not_found",
        /// No such script.
        ScriptNotFound = "script_not_found",
        /// No such source.
        SourceNotFound = "source_not_found",
        /// The script does not compile (see `line` and `column`).
        ScriptCompileError = "script_compile_error",
        /// Too many requests or streams: wait (`Retry-After`).
        RateLimited = "rate_limited",
        /// The server cannot serve now (its database, say): wait (`Retry-After`).
        Unavailable = "unavailable",
        /// The server failed.
        Internal = "internal",
        /// The request took too long to arrive.
        RequestTimeout = "request_timeout",
        /// The request's headers are too large.
        HeadersTooLarge = "headers_too_large",
    }
}
