//! The front door: accepts TCP connections, reads the first request head, and hands the
//! connection once to where it belongs: a subscription (or a CORS preflight for one) to
//! the direct SSE path ([`picloud_orchestrator_core::direct_sse`]), which owns it from
//! then on and may hand it back; anything else to the HTTP stack
//! ([`crate::http_connection`]), with the bytes already read replayed first.
//!
//! It also guards the door: every connection takes a slot of the
//! [`ConnectionLimits`] before anything is read (over a cap: a short 503 or 429 and the
//! connection closes), a first head must arrive within the header timeout (else the
//! connection closes) and be no larger than the header limit (else 431).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use picloud_orchestrator_core::direct_sse::{self, HeadError, HeadLimits, Outcome, Recognised};
use picloud_orchestrator_core::realtime_api::RealtimeState;
use picloud_shared::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{service_fn, Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use crate::connection_limits::{count_refused, ConnectionLimits, ConnectionSlot};

/// What the front door enforces before a connection reaches a handler.
#[derive(Clone)]
pub struct DoorRules {
    /// The caps on open connections.
    pub limits: ConnectionLimits,
    /// How long a new connection may take to send its first request head.
    pub header_timeout: Duration,
    /// Largest first request head, in bytes.
    pub max_header_bytes: usize,
}

impl DoorRules {
    fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            timeout: self.header_timeout,
            max_bytes: self.max_header_bytes,
        }
    }
}

/// The connections the HTTP stack serves.
pub struct FrontDoor {
    handed_over: mpsc::Receiver<(Replayed, SocketAddr)>,
}

impl FrontDoor {
    /// Starts accepting on `listener` until `stop`. `cors` is the CORS layer of the
    /// routed path, if origins are configured.
    pub fn open(
        listener: TcpListener,
        realtime: RealtimeState,
        cors: Option<CorsLayer>,
        rules: DoorRules,
        stop: CancellationToken,
    ) -> Self {
        let (hand_over, handed_over) = mpsc::channel(1024);
        let door = Entrance {
            realtime,
            cors,
            rules,
        };
        tokio::spawn(accept_loop(listener, door, hand_over, stop));
        FrontDoor { handed_over }
    }

    /// The next connection for the HTTP stack; `None` once the accept loop stopped.
    pub async fn accept(&mut self) -> Option<(Replayed, SocketAddr)> {
        self.handed_over.recv().await
    }
}

async fn accept_loop(
    listener: TcpListener,
    door: Entrance,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => match door.rules.limits.acquire(peer.ip()) {
                Ok(slot) => {
                    tokio::spawn(triage(socket, slot, peer, door.clone(), hand_over.clone()));
                }
                Err(refusal) => refuse(socket, refusal.into()),
            },
            Err(error) => {
                // Out of file descriptors and the like: back off briefly, as axum does.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers `error` (with `connection: close`) and closes, without reading anything: the
/// answer is one small write, tried once, so a refusal never waits on the client.
fn refuse(socket: TcpStream, error: ApiError) {
    let status = error.code.status();
    let response = direct_sse::error_response(
        status,
        error,
        &HeaderMap::new(),
        &uuid::Uuid::new_v4().to_string(),
    );
    // Straight to the descriptor (non-blocking): a fresh socket's send buffer is empty,
    // and the reactor may not have seen it writable yet.
    if let Ok(mut socket) = socket.into_std() {
        let _ = io::Write::write(&mut socket, &response);
    }
}

/// Reads the first request head and sends the connection where it belongs: to the
/// direct path (which may hand it back) or to the HTTP stack.
async fn triage(
    mut socket: TcpStream,
    slot: ConnectionSlot,
    peer: SocketAddr,
    door: Entrance,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
) {
    let mut read = Vec::with_capacity(1024);
    let limits = door.rules.head_limits();
    let outcome = match direct_sse::read_head(&mut socket, &mut read, limits).await {
        Ok(Recognised::Other) => Outcome::HandBack {
            socket,
            read,
            held: slot,
        },
        Ok(first) => {
            let realtime = door.realtime.clone();
            direct_sse::take(&realtime, &door, socket, read, first, limits, slot).await
        }
        Err(error) => Outcome::NoHead(error, socket),
    };
    match outcome {
        Outcome::Served => {}
        Outcome::HandBack { socket, read, held } => {
            let _ = hand_over
                .send((Replayed::new(socket, read, held), peer))
                .await;
        }
        Outcome::NoHead(HeadError::TooLarge, socket) => {
            count_refused("header_too_large");
            let limit = door.rules.max_header_bytes;
            refuse(
                socket,
                ApiError::new(
                    ErrorCode::HeadersTooLarge,
                    format!("the request head is larger than {limit} bytes"),
                ),
            );
        }
        Outcome::NoHead(HeadError::Timeout, _) => count_refused("header_timeout"),
        Outcome::NoHead(HeadError::Closed, _) => {}
    }
}

/// What the front door lends the direct path ([`direct_sse::Door`]): the routed path's
/// CORS layer and the request metrics.
#[derive(Clone)]
struct Entrance {
    realtime: RealtimeState,
    cors: Option<CorsLayer>,
    rules: DoorRules,
}

impl direct_sse::Door for Entrance {
    async fn cors(&self, method: Method, headers: HeaderMap) -> Option<(StatusCode, HeaderMap)> {
        let cors = self.cors.as_ref()?;
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.headers_mut() = headers;
        let service = cors.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        match service.oneshot(request).await {
            Ok(response) => Some((response.status(), response.headers().clone())),
            Err(never) => match never {},
        }
    }

    fn record_request(&self, method: &Method, status: StatusCode, started: Instant) {
        crate::telemetry::record_request(method, direct_sse::ROUTE.to_owned(), status, started);
    }
}

/// A connection whose first bytes were already read: they are read again first. It
/// holds its connection slot until dropped.
pub struct Replayed {
    prefix: Vec<u8>,
    position: usize,
    socket: TcpStream,
    _slot: ConnectionSlot,
}

impl Replayed {
    fn new(socket: TcpStream, prefix: Vec<u8>, slot: ConnectionSlot) -> Self {
        Replayed {
            prefix,
            position: 0,
            socket,
            _slot: slot,
        }
    }
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.position < this.prefix.len() {
            let rest = &this.prefix[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            if this.position == this.prefix.len() {
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}
