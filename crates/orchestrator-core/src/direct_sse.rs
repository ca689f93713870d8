//! SSE streams written straight to the socket.
//!
//! A connection whose first request is a subscription (`GET /v1/apps/{app}/realtime`,
//! HTTP/1.1, without a dashboard session cookie), possibly after CORS preflights, is
//! answered here instead of through the HTTP stack: the same checks
//! ([`crate::realtime_api`]'s `start`), then a response head and the frames written as
//! they are, the body ending when the connection closes. A subscriber then costs a task,
//! its [`Subscription`] and its socket: no HTTP buffers held for the life of the stream
//! and no per-frame trip through the middleware. The front door answers the preflights
//! and computes the CORS headers with the routed path's own CORS layer, so both paths
//! answer browsers alike. Everything else, including dashboard subscriptions (a
//! superuser session), takes the routed path, which speaks the same protocol.

use std::fmt::Write as _;
use std::io::IoSlice;
use std::time::Duration;

use axum::http::header::{
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, ORIGIN, TRANSFER_ENCODING,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use futures::FutureExt;
use picloud_shared::error::{ErrorBody, ErrorDetail};
use picloud_shared::extract::session_cookie;
use picloud_shared::ApiError;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::realtime_api::{start, RealtimeState};

/// Longest request head read while deciding; longer heads take the routed path.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most headers a direct subscription may carry.
const MAX_HEADERS: usize = 64;

/// The route template, for request metrics.
pub const ROUTE: &str = "/v1/apps/{app}/realtime";

/// A subscription request recognised from its head.
#[derive(Debug)]
pub struct SubscribeHead {
    /// The `{app}` path segment.
    pub app: String,
    /// The query string (without `?`).
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
}

/// Outcome of looking at the bytes read so far.
#[derive(Debug)]
pub enum Recognised {
    /// The head is not complete yet.
    Partial,
    /// A subscription this module serves.
    Subscribe(SubscribeHead),
    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, no
    /// body) for the subscription route: the first `len` bytes.
    Preflight {
        /// The request headers.
        headers: HeaderMap,
        /// Length of the request head.
        len: usize,
    },
    /// A subscription or preflight whose body framing is not plainly "no body": any
    /// `Transfer-Encoding`, more than one `Content-Length`, or one that is not zero.
    /// Answered with a 400 and the connection closed ([`reject_framing`]): its body bytes
    /// must never be read as the next request.
    BadFraming,
    /// Anything else: hand the connection to the HTTP stack.
    Other,
}

/// Decides from the next bytes of a connection whether they are a direct subscription
/// or a preflight for one.
pub fn recognise(bytes: &[u8]) -> Recognised {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => return Recognised::Partial,
        _ => return Recognised::Other,
    };
    let preflight = match (request.method, request.version) {
        (Some("GET"), Some(1)) => false,
        (Some("OPTIONS"), Some(1)) => true,
        _ => return Recognised::Other,
    };
    let Some(target) = request.path else {
        return Recognised::Other;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(app) = path
        .strip_prefix("/v1/apps/")
        .and_then(|rest| rest.strip_suffix("/realtime"))
        .filter(|app| !app.is_empty() && !app.contains(['/', '%']))
    else {
        return Recognised::Other;
    };
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Recognised::Other;
        };
        map.append(name, value);
    }
    // A dashboard session makes the subscriber a superuser: the auth middleware decides.
    // The embedding site's own cookies do not matter here.
    if session_cookie(&map).is_some() {
        return Recognised::Other;
    }
    if !bodyless(&map) {
        return Recognised::BadFraming;
    }
    if preflight {
        return if map.contains_key(ORIGIN) && map.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            Recognised::Preflight { headers: map, len }
        } else {
            Recognised::Other
        };
    }
    Recognised::Subscribe(SubscribeHead {
        app: app.to_owned(),
        query: query.to_owned(),
        headers: map,
    })
}

/// Whether a request's headers say plainly that it has no body: no `Transfer-Encoding`
/// and at most one `Content-Length` field, whose value is digits only and zero. Anything
/// else (`0, 5`, `+0`, a second field) could be read differently by another parser, so
/// the direct path refuses it instead of guessing where the request ends.
fn bodyless(headers: &HeaderMap) -> bool {
    if headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => true,
        (Some(only), None) => {
            let digits = only.as_bytes();
            !digits.is_empty() && digits.iter().all(|&b| b == b'0')
        }
        (Some(_), Some(_)) => false,
    }
}

/// Answers a [`Recognised::BadFraming`] request: a 400 JSON error, then the connection
/// is closed without reading further (as the HTTP stack does for malformed framing).
/// Returns the status, for request metrics.
pub async fn reject_framing(socket: &mut TcpStream, request_id: &str) -> StatusCode {
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

/// Serves a recognised subscription on the stream runtime (see
/// [`crate::stream_runtime`]); see [`serve`]. `held` is dropped when the stream ends.
#[allow(clippy::too_many_arguments)] // each is one thing the stream needs or holds
pub fn spawn(
    rt: RealtimeState,
    socket: TcpStream,
    head: SubscribeHead,
    response_headers: HeaderMap,
    request_id: String,
    span: tracing::Span,
    on_status: impl FnOnce(StatusCode) + Send + 'static,
    held: impl Send + 'static,
) {
    // A socket belongs to the runtime that registered it: move it over.
    let Ok(socket) = socket.into_std() else {
        return;
    };
    let runtime = rt.streams.clone();
    runtime.spawn(async move {
        // Whatever the caller holds for the stream's life (its connection slot).
        let _held = held;
        let Ok(socket) = TcpStream::from_std(socket) else {
            return;
        };
        serve(
            rt,
            socket,
            head,
            response_headers,
            &request_id,
            span,
            on_status,
        )
        .await;
    });
}

/// Serves a recognised subscription on `socket` until the stream ends or the client
/// goes away. `response_headers` (CORS) go on the response, whatever its status.
/// `on_status` is told the response status once the head is written (for request
/// metrics).
pub async fn serve(
    rt: RealtimeState,
    mut socket: TcpStream,
    head: SubscribeHead,
    response_headers: HeaderMap,
    request_id: &str,
    span: tracing::Span,
    on_status: impl FnOnce(StatusCode),
) {
    let _ = socket.set_nodelay(true);
    // Requests with a cookie (a dashboard session) never come here: no superuser. The span
    // covers the checks; the stream itself is not instrumented (a span entered on every
    // frame is a measurable share of a fan-out).
    let started = start(&rt, &head.app, &head.query, &head.headers, false)
        .instrument(span)
        .await;
    let subscription = match started {
        Ok(subscription) => subscription,
        Err(error) => {
            let error = ApiError::from(error);
            let status = error.code.status();
            let _ = socket
                .write_all(&error_response(
                    status,
                    error,
                    &response_headers,
                    request_id,
                ))
                .await;
            let _ = socket.shutdown().await;
            on_status(status);
            return;
        }
    };
    drop(head);
    let mut response_head = response_head(StatusCode::OK, &response_headers, None);
    // Nothing of the request is kept for the life of the stream.
    drop(response_headers);
    response_head.extend_from_slice(
        format!(
            "content-type: text/event-stream\r\ncache-control: no-cache\r\n\
             x-accel-buffering: no\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n"
        )
        .as_bytes(),
    );
    if socket.write_all(&response_head).await.is_err() {
        return;
    }
    drop(response_head);
    on_status(StatusCode::OK);
    let mut subscription = subscription;
    let mut batch: Vec<Bytes> = Vec::new();
    let (mut reader, mut socket) = socket.split();
    let mut unread = [0u8; 512];
    let mut discarded = 0;
    loop {
        // The read half is watched so a client that goes away frees its stream (and
        // its slot) at once, not at the next heartbeat's failed write. A subscriber has
        // nothing more to say: what it sends anyway is dropped, up to a bound.
        let first = tokio::select! {
            biased;
            read = reader.read(&mut unread) => match read {
                Ok(n) if n > 0 && discarded + n <= MAX_DISCARDED => {
                    discarded += n;
                    continue;
                }
                _ => return, // closed, reset, or too chatty
            },
            chunk = subscription.next_chunk() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        // Whatever else is ready now goes out in the same write: a subscriber that fell
        // behind catches up with fewer system calls, so a busy server slows down less.
        batch.push(first);
        let mut bytes = batch[0].len();
        while batch.len() < MAX_BATCH_CHUNKS && bytes < MAX_BATCH_BYTES && subscription.has_ready()
        {
            match subscription.next_chunk().now_or_never() {
                Some(Some(chunk)) => {
                    bytes += chunk.len();
                    batch.push(chunk);
                }
                Some(None) | None => break,
            }
        }
        if write_all_vectored(&mut socket, &mut batch).await.is_err() {
            return; // the client went away
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
}

/// Most bytes a subscriber may send while its stream runs before it is closed.
const MAX_DISCARDED: usize = 16 * 1024;

/// Most chunks gathered into one write.
const MAX_BATCH_CHUNKS: usize = 64;

/// Most bytes gathered into one write (a batch may end up to one chunk over).
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Writes every chunk of `batch` (emptying it) with as few system calls as the socket
/// takes.
async fn write_all_vectored(
    socket: &mut (impl AsyncWrite + Unpin),
    batch: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    if let [only] = batch.as_slice() {
        socket.write_all(only).await?;
        batch.clear();
        return Ok(());
    }
    let mut start = 0;
    while start < batch.len() {
        let mut slices = [IoSlice::new(&[]); MAX_BATCH_CHUNKS];
        let count = (batch.len() - start).min(MAX_BATCH_CHUNKS);
        for (slice, chunk) in slices.iter_mut().zip(&batch[start..start + count]) {
            *slice = IoSlice::new(chunk);
        }
        let mut written = socket.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while start < batch.len() && written >= batch[start].len() {
            written -= batch[start].len();
            start += 1;
        }
        if written > 0 {
            let rest = batch[start].slice(written..);
            batch[start] = rest;
        }
    }
    batch.clear();
    Ok(())
}

/// The start of an HTTP/1.1 response head: the status line, `date`, `headers` and, when
/// given, `content-length`. The caller adds its own headers and the blank line.
pub fn response_head(
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
        error: ErrorDetail {
            code: error.code,
            message: error.message,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(head: &str) -> &'static str {
        match recognise(head.as_bytes()) {
            Recognised::Partial => "partial",
            Recognised::Subscribe(_) => "subscribe",
            Recognised::Preflight { .. } => "preflight",
            Recognised::BadFraming => "bad framing",
            Recognised::Other => "other",
        }
    }

    #[test]
    fn only_plain_subscriptions_are_taken() {
        let ok =
            "GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\nhost: x\r\nlast-event-id: a:1\r\n\r\n";
        assert_eq!(kind(ok), "subscribe");
        let Recognised::Subscribe(head) = recognise(ok.as_bytes()) else {
            unreachable!()
        };
        assert_eq!(
            (head.app.as_str(), head.query.as_str()),
            ("shop", "topic=a")
        );
        assert_eq!(head.headers["last-event-id"], "a:1");
        assert_eq!(
            kind("GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\nhost: x\r\n"),
            "partial"
        );
        for other in [
            "POST /v1/apps/shop/realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/realtime HTTP/1.0\r\n\r\n",
            "GET /v1/apps/shop/realtime/subscribers HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/topics HTTP/1.1\r\n\r\n",
            "GET /v1/apps//realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/%73hop/realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/realtime HTTP/1.1\r\ncookie: picloud_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n",
            "OPTIONS /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\n\r\n",
            "OPTIONS /v1/apps/shop/topics HTTP/1.1\r\norigin: http://x\r\naccess-control-request-method: GET\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert_eq!(kind(other), "other", "{other:?}");
        }
        let huge = format!(
            "GET /v1/apps/shop/realtime?{} HTTP/1.1\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(kind(&huge), "other");
    }

    #[test]
    fn cross_origin_subscriptions_and_their_preflights_are_taken() {
        // The embedding site's cookies and Origin do not send a subscriber elsewhere.
        assert_eq!(
            kind("GET /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\ncookie: theme=dark\r\n\r\n"),
            "subscribe"
        );
        let preflight = "OPTIONS /v1/apps/shop/realtime?topic=a HTTP/1.1\r\norigin: http://x\r\n\
                         access-control-request-method: GET\r\n\r\n";
        let next = format!("{preflight}GET /v1/apps/shop/realtime HTTP/1.1\r\n");
        let Recognised::Preflight { headers, len } = recognise(next.as_bytes()) else {
            panic!("not a preflight")
        };
        assert_eq!(
            (len, headers["origin"].to_str().unwrap()),
            (preflight.len(), "http://x")
        );
        assert_eq!(kind(&next[len..]), "partial");
    }

    #[test]
    fn requests_on_the_direct_path_with_a_body_are_refused() {
        let preflight = "OPTIONS /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\n\
                         access-control-request-method: GET\r\n";
        let get = "GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\n";
        for start in [preflight, get] {
            for framing in [
                "content-length: 3\r\n",
                "content-length: 0\r\ncontent-length: 3\r\n",
                "content-length: 0\r\ncontent-length: 0\r\n",
                "content-length: 0, 3\r\n",
                "content-length: +0\r\n",
                "content-length: -0\r\n",
                "content-length: \r\n",
                "transfer-encoding: chunked\r\n",
                "content-length: 0\r\ntransfer-encoding: chunked\r\n",
                "transfer-encoding: identity\r\n",
            ] {
                let head = format!("{start}{framing}\r\n");
                assert_eq!(kind(&head), "bad framing", "{head:?}");
            }
            for framing in ["", "content-length: 0\r\n", "content-length: 00\r\n"] {
                let head = format!("{start}{framing}\r\n");
                assert_ne!(kind(&head), "bad framing", "{head:?}");
                assert_ne!(kind(&head), "other", "{head:?}");
            }
        }
    }
}
