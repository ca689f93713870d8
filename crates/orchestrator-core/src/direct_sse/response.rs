//! The bytes of the responses the direct path writes itself.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use picloud_shared::error::{ErrorBody, ErrorDetail};
use picloud_shared::ApiError;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The start of an HTTP/1.1 response head: the status line, `date`, `headers` and, when
/// given, `content-length`. The caller adds its own headers and the blank line.
pub(super) fn response_head(
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<usize>,
) -> Vec<u8> {
    let mut out = String::new();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let _ = write!(
        out,
        "date: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    if let Some(length) = content_length {
        let _ = write!(out, "content-length: {length}\r\n");
    }
    let mut out = out.into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A complete JSON error response that closes the connection: `error` with `status`,
/// `headers` (CORS) and the request id.
pub fn error_response(
    status: StatusCode,
    error: ApiError,
    headers: &HeaderMap,
    request_id: &str,
) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail::of(error),
    })
    .expect("error bodies serialize");
    let mut out = response_head(status, headers, Some(body.len()));
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// Answers a [`super::Recognised::BadFraming`] request: a 400 JSON error, then the connection
/// is closed without reading further (as the HTTP stack does for malformed framing).
/// Returns the status, for request metrics.
pub(super) async fn reject_framing(socket: &mut TcpStream, request_id: &str) -> StatusCode {
    let error = ApiError::invalid(
        "this request's body framing is not accepted here: no Transfer-Encoding, \
         and at most one Content-Length, of 0",
    );
    let status = error.code.status();
    let response = error_response(status, error, &HeaderMap::new(), request_id);
    if socket.write_all(&response).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
    }
    status
}
