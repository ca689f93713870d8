//! SSE streams written straight to the socket.
//!
//! A connection whose first request is a subscription (`GET /v1/apps/{app}/realtime`,
//! HTTP/1.1, without a dashboard session cookie), possibly after CORS preflights, is
//! served here instead of through the HTTP stack: the same checks
//! ([`crate::realtime_api`]'s `start`), then a response head and the frames written as
//! they are, the body ending when the connection closes. A subscriber then costs a task,
//! its [`Subscription`](crate::stream::Subscription) and its socket: no HTTP buffers held
//! for the life of the stream and no per-frame trip through the middleware. Everything
//! else, including dashboard subscriptions (a superuser session), takes the routed path,
//! which speaks the same protocol.
//!
//! The server's front door reads the first request head ([`read_head`]) and, when it is
//! one of ours, hands the connection over once ([`take`]); from then on this module owns
//! it: preflights, refusals, the stream. The front door lends what belongs to the
//! server, not to realtime, through [`Door`]: the CORS policy (the routed path's own, so
//! both paths answer browsers alike) and request metrics.
//!
//! - `head`: reading and recognising request heads.
//! - `response`: the bytes of the responses written here.
//! - `stream`: one subscription's stream.

mod head;
mod response;
mod stream;

use std::future::Future;
use std::time::Instant;

use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use head::{read_head, HeadError, HeadLimits, Recognised, SubscribeHead, MAX_HEAD};
pub use response::error_response;

use crate::realtime_api::RealtimeState;

/// The route template, for request metrics.
pub const ROUTE: &str = "/v1/apps/{app}/realtime";

/// Most CORS preflights answered on one connection before it goes to the HTTP stack.
const MAX_PREFLIGHTS: usize = 4;

/// What the server lends the direct path: its CORS policy and its request metrics.
pub trait Door: Clone + Send + Sync + 'static {
    /// The CORS policy's answer to a request with `method` and `headers`: for a preflight
    /// the whole response's status and headers, otherwise the headers to add to the
    /// response. `None` when no CORS policy is configured (preflights then go to the HTTP
    /// stack, which gives the usual answer).
    fn cors(
        &self,
        method: Method,
        headers: HeaderMap,
    ) -> impl Future<Output = Option<(StatusCode, HeaderMap)>> + Send;

    /// Counts one answered request to [`ROUTE`] in the request metrics.
    fn record_request(&self, method: &Method, status: StatusCode, started: Instant);
}

/// What became of a connection handed to [`take`].
pub enum Outcome<H> {
    /// Served here to its end (or to its stream's start: the stream runs on).
    Served,
    /// The next request is not for the direct path: serve `socket` over the HTTP stack,
    /// reading `read` first. `held` comes back with it.
    HandBack {
        /// The connection.
        socket: TcpStream,
        /// Bytes already read from it: the start of the next request.
        read: Vec<u8>,
        /// What the caller handed over with the connection.
        held: H,
    },
    /// No further request head could be read after a preflight.
    NoHead(HeadError, TcpStream),
}

/// Takes over a connection whose bytes so far, `read`, are `first` (anything but
/// [`Recognised::Other`] and [`Recognised::Partial`]): answers preflights and reads on,
/// refuses bad framing, or starts the subscription's stream. `held` (the connection's
/// slot) lives as long as the connection stays here.
pub async fn take<D: Door, H: Send + 'static>(
    rt: &RealtimeState,
    door: &D,
    mut socket: TcpStream,
    mut read: Vec<u8>,
    first: Recognised,
    limits: HeadLimits,
    held: H,
) -> Outcome<H> {
    let mut next = first;
    let mut preflights = 0;
    loop {
        match next {
            Recognised::Subscribe(head) => {
                drop(read);
                subscribe(rt, door, socket, head, held).await;
                return Outcome::Served;
            }
            Recognised::BadFraming => {
                let started = Instant::now();
                let request_id = uuid::Uuid::new_v4().to_string();
                let status = response::reject_framing(&mut socket, &request_id).await;
                door.record_request(&Method::GET, status, started);
                return Outcome::Served;
            }
            Recognised::Preflight { headers, len } if preflights < MAX_PREFLIGHTS => {
                let started = Instant::now();
                let Some((status, headers)) = door.cors(Method::OPTIONS, headers).await else {
                    return Outcome::HandBack { socket, read, held };
                };
                let mut answer = response::response_head(status, &headers, Some(0));
                answer.extend_from_slice(
                    format!("x-request-id: {}\r\n\r\n", uuid::Uuid::new_v4()).as_bytes(),
                );
                if socket.write_all(&answer).await.is_err() {
                    return Outcome::Served; // the client went away
                }
                door.record_request(&Method::OPTIONS, status, started);
                read.drain(..len);
                preflights += 1;
            }
            Recognised::Preflight { .. } | Recognised::Other | Recognised::Partial => {
                return Outcome::HandBack { socket, read, held };
            }
        }
        next = match read_head(&mut socket, &mut read, limits).await {
            Ok(recognised) => recognised,
            Err(error) => return Outcome::NoHead(error, socket),
        };
    }
}

/// Starts the stream of a recognised subscription on the stream runtime, with the CORS
/// headers the routed path would add for a cross-origin subscriber.
async fn subscribe<D: Door, H: Send + 'static>(
    rt: &RealtimeState,
    door: &D,
    socket: TcpStream,
    head: SubscribeHead,
    held: H,
) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "request",
        method = "GET",
        path = ROUTE,
        request_id,
        direct = true
    );
    let started = Instant::now();
    let response_headers = if head.headers.contains_key(ORIGIN) {
        let cors = door.cors(Method::GET, head.headers.clone()).await;
        cors.map(|(_, headers)| headers).unwrap_or_default()
    } else {
        HeaderMap::new()
    };
    let door = door.clone();
    stream::spawn(
        rt.clone(),
        socket,
        head,
        response_headers,
        request_id,
        span,
        move |status| door.record_request(&Method::GET, status, started),
        held,
    );
}
