//! The request body deadline: a body must arrive in full within the body timeout of its
//! request head. A stalled body (a POST announcing 100 MB and sending nothing) ends
//! with an error when the deadline passes; whatever the handler answered is then
//! replaced by 408 with `connection: close`, so the client learns why and the
//! connection does not wait for bytes that will never come.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use picloud_shared::{ApiError, ErrorCode};
use tokio::time::Sleep;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Whether a request's body missed its deadline; see [`limit`].
pub struct BodyDeadline {
    expired: Option<Arc<AtomicBool>>,
}

/// Puts a deadline of `timeout` from now on `request`'s body (requests without a body
/// are left alone).
pub fn limit<B>(request: Request<B>, timeout: Duration) -> (Request<Body>, BodyDeadline)
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if request.body().is_end_stream() {
        return (request.map(Body::new), BodyDeadline { expired: None });
    }
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
        })
    });
    (
        request,
        BodyDeadline {
            expired: Some(expired),
        },
    )
}

impl BodyDeadline {
    /// `response`, or 408 with `connection: close` if the body missed its deadline.
    pub fn answer(self, response: Response<Body>) -> Response<Body> {
        match self.expired {
            Some(expired) if expired.load(Ordering::Acquire) => {
                let mut response = ApiError::new(
                    ErrorCode::RequestTimeout,
                    "the request body did not arrive in time",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            _ => response,
        }
    }
}

/// The body timed out (what the handler reading it sees).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A body that fails once its deadline passes.
struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
