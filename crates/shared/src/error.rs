//! The error taxonomy on the wire: every failure is a status plus
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! [`ErrorCode::status`] is the one place a code is mapped to an HTTP status; each
//! crate turns its own error enum into an [`ApiError`] and never picks statuses itself.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A machine-readable error code; clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    InvalidJson,
    /// The request is well-formed but a field is wrong; the message says which.
    InvalidRequest,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// No API key, or one that is unknown, malformed or revoked. Deliberately generic.
    Unauthorized,
    /// The key is valid but lacks the scope the route needs.
    Forbidden,
    /// No route has this path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The app does not exist, or the key may not see it.
    AppNotFound,
    /// The API key does not exist in this app.
    KeyNotFound,
    /// An app with this id already exists.
    AppExists,
    /// The topic does not exist in this app.
    TopicNotFound,
    /// A topic with this name already exists in this app.
    TopicExists,
    /// An admin with this email already exists.
    AdminExists,
    /// The trigger does not exist in this app.
    TriggerNotFound,
    /// The delivery does not exist in this app.
    DeliveryNotFound,
    /// The dead letter does not exist in this app.
    DeadLetterNotFound,
    /// The script (or the version of it) does not exist in this app.
    ScriptNotFound,
    /// The source does not exist in this app.
    SourceNotFound,
    /// The script's source does not compile; `line` and `column` say where.
    ScriptCompileError,
    /// Too many requests or connections; retry later.
    RateLimited,
    /// A dependency (the database) is unreachable.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log, never here.
    Internal,
    /// The request (its body) did not arrive in time; the connection is closed.
    RequestTimeout,
    /// The request line and headers are larger than the configured limit.
    HeadersTooLarge,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest | ErrorCode::ScriptCompileError => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound
            | ErrorCode::AppNotFound
            | ErrorCode::KeyNotFound
            | ErrorCode::TopicNotFound
            | ErrorCode::TriggerNotFound
            | ErrorCode::DeliveryNotFound
            | ErrorCode::DeadLetterNotFound
            | ErrorCode::ScriptNotFound
            | ErrorCode::SourceNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::AppExists | ErrorCode::TopicExists | ErrorCode::AdminExists => {
                StatusCode::CONFLICT
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }
}

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Where in a submitted source text, for errors about one (a script's).
    pub at: Option<SourcePosition>,
}

/// A place in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourcePosition {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            at: None,
        }
    }

    /// The error, pointing at `at` in the submitted source.
    pub fn at(mut self, at: SourcePosition) -> Self {
        self.at = Some(at);
        self
    }

    /// The one 401 every authentication failure gets, so callers learn nothing about
    /// which check failed.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or invalid credentials")
    }

    /// A 400 naming what is wrong with the request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// A 500 whose detail stays in the server log.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// Line of the error in the submitted source (script compile errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column of the error in the submitted source (script compile errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl ErrorDetail {
    /// The body of `error`.
    pub fn of(error: ApiError) -> Self {
        ErrorDetail {
            code: error.code,
            message: error.message,
            line: error.at.map(|at| at.line),
            column: error.at.map(|at| at.column),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let code = self.code;
        let body = ErrorBody {
            error: ErrorDetail::of(self),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if code == ErrorCode::Unavailable {
            // A dependency is down: tell clients when a retry makes sense.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The `Retry-After` (seconds) sent with every `unavailable` answer.
pub const UNAVAILABLE_RETRY_AFTER_SECS: &str = "2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_snake_case() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::AppNotFound).unwrap(),
            "\"app_not_found\""
        );
    }

    #[test]
    fn response_has_status_and_json_body() {
        let response = ApiError::new(ErrorCode::AppExists, "app 'x' exists").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
