//! Keeps connections usable after a request is answered without reading its body.
//!
//! Early rejections (401 and 403 from the access middleware, 404/405 fallbacks, 413,
//! 415, bad JSON) answer before the request body is read. Most clients send the body in
//! a separate write after the head; when the handler has dropped an unread body, hyper
//! reads only what already arrived and otherwise closes the connection after the
//! response, without saying so, and the client's next request on it fails. This
//! middleware keeps the body out of the handler's hands: afterwards it reads and
//! discards what is left, up to [`MAX_DRAIN`] bytes within [`DRAIN_TIMEOUT`], and when
//! that is not enough the response carries `connection: close`, so the client knows.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Most unread body bytes discarded to keep a connection open.
pub const MAX_DRAIN: u64 = 64 * 1024;

/// Longest wait for the rest of an unread body.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The middleware: runs the request, then drains what the handler left of its body (see
/// the module documentation).
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    // A client waiting for `100 Continue` has not sent its body: reading it now would
    // ask for a body only to discard it.
    let awaits_continue = parts.headers.contains_key(header::EXPECT);
    let shared = SharedBody(Arc::new(Mutex::new(body)));
    let mut response = next
        .run(Request::from_parts(parts, Body::new(shared.clone())))
        .await;
    let left = std::mem::replace(&mut *shared.lock(), Body::empty());
    if left.is_end_stream() {
        return response;
    }
    if awaits_continue || !drain(left).await {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end, discarding it; whether that took at most [`MAX_DRAIN`] bytes
/// and [`DRAIN_TIMEOUT`].
async fn drain(mut body: Body) -> bool {
    if body.size_hint().lower() > MAX_DRAIN {
        return false;
    }
    let mut read = 0u64;
    let reading = async {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame {
                Ok(frame) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > MAX_DRAIN {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIMEOUT, reading)
        .await
        .unwrap_or(false)
}

/// The request body as the handler sees it, while the middleware keeps a handle on it.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    fn lock(&self) -> MutexGuard<'_, Body> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut *self.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint()
    }
}
