//! The front door: accepts TCP connections, reads the first request head, and either
//! serves an SSE subscription straight on the socket
//! ([`picloud_orchestrator_core::direct_sse`]) or hands the connection, with the bytes
//! already read replayed first, to the HTTP stack ([`crate::http_connection`]).
//! A browser subscribing from another origin sends a CORS preflight first, usually on
//! the same connection: the front door answers it (with the routed path's own CORS
//! layer, so the answer is the same) and looks at the next request.
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

use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use picloud_orchestrator_core::direct_sse::{self, Recognised, MAX_HEAD};
use picloud_orchestrator_core::realtime_api::RealtimeState;
use picloud_shared::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{service_fn, Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use crate::connection_limits::{count_refused, ConnectionLimits, ConnectionSlot};

/// Most CORS preflights answered on one connection before it goes to the HTTP stack.
const MAX_PREFLIGHTS: usize = 4;

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
        tokio::spawn(accept_loop(
            listener, realtime, cors, rules, hand_over, stop,
        ));
        FrontDoor { handed_over }
    }

    /// The next connection for the HTTP stack; `None` once the accept loop stopped.
    pub async fn accept(&mut self) -> Option<(Replayed, SocketAddr)> {
        self.handed_over.recv().await
    }
}

async fn accept_loop(
    listener: TcpListener,
    realtime: RealtimeState,
    cors: Option<CorsLayer>,
    rules: DoorRules,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => match rules.limits.acquire(peer.ip()) {
                Ok(slot) => {
                    tokio::spawn(triage(
                        socket,
                        slot,
                        peer,
                        realtime.clone(),
                        cors.clone(),
                        rules.clone(),
                        hand_over.clone(),
                    ));
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

/// Whether `bytes` hold a whole request head (they reach its empty line).
fn head_ends(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// Reads the first request head and sends the connection where it belongs.
async fn triage(
    mut socket: TcpStream,
    slot: ConnectionSlot,
    peer: SocketAddr,
    realtime: RealtimeState,
    cors: Option<CorsLayer>,
    rules: DoorRules,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
) {
    let mut read = Vec::with_capacity(1024);
    let mut deadline = tokio::time::Instant::now() + rules.header_timeout;
    let mut preflights = 0;
    let head = loop {
        match direct_sse::recognise(&read) {
            Recognised::Partial => {}
            Recognised::Subscribe(head) => break Some(head),
            Recognised::Preflight { headers, len } if preflights < MAX_PREFLIGHTS => {
                // Without CORS configured the HTTP stack gives the usual answer.
                let Some(cors) = &cors else { break None };
                let started = Instant::now();
                let (status, headers) = cors_answer(cors, Method::OPTIONS, headers).await;
                let mut response = direct_sse::response_head(status, &headers, Some(0));
                response.extend_from_slice(
                    format!("x-request-id: {}\r\n\r\n", uuid::Uuid::new_v4()).as_bytes(),
                );
                if socket.write_all(&response).await.is_err() {
                    return;
                }
                crate::telemetry::record_request(
                    &Method::OPTIONS,
                    direct_sse::ROUTE.to_owned(),
                    status,
                    started,
                );
                read.drain(..len);
                preflights += 1;
                deadline = tokio::time::Instant::now() + rules.header_timeout;
                continue;
            }
            Recognised::BadFraming => {
                let started = Instant::now();
                let request_id = uuid::Uuid::new_v4().to_string();
                let status = direct_sse::reject_framing(&mut socket, &request_id).await;
                let route = direct_sse::ROUTE.to_owned();
                crate::telemetry::record_request(&Method::GET, route, status, started);
                return;
            }
            Recognised::Preflight { .. } => break None,
            Recognised::Other if read.len() < MAX_HEAD || head_ends(&read) => break None,
            // A head longer than direct subscriptions may have: read on, up to the limit.
            Recognised::Other => {}
        }
        if read.len() >= rules.max_header_bytes {
            count_refused("header_too_large");
            let limit = rules.max_header_bytes;
            refuse(
                socket,
                ApiError::new(
                    ErrorCode::HeadersTooLarge,
                    format!("the request head is larger than {limit} bytes"),
                ),
            );
            return;
        }
        if read.len() == read.capacity() {
            read.reserve(read.len().min(MAX_HEAD));
        }
        match tokio::time::timeout_at(deadline, socket.read_buf(&mut read)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return, // closed before a full head
            Ok(Ok(_)) => {}
            Err(_) => {
                count_refused("header_timeout");
                return;
            }
        }
    };
    match head {
        Some(head) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let span = tracing::info_span!(
                "request",
                method = "GET",
                path = direct_sse::ROUTE,
                request_id,
                direct = true
            );
            let started = Instant::now();
            drop(read);
            // A cross-origin subscriber gets the CORS headers the routed path would add.
            let response_headers = match &cors {
                Some(cors) if head.headers.contains_key(ORIGIN) => {
                    cors_answer(cors, Method::GET, head.headers.clone()).await.1
                }
                _ => HeaderMap::new(),
            };
            direct_sse::spawn(
                realtime,
                socket,
                head,
                response_headers,
                request_id,
                span,
                move |status| {
                    crate::telemetry::record_request(
                        &Method::GET,
                        direct_sse::ROUTE.to_owned(),
                        status,
                        started,
                    );
                },
                slot,
            );
        }
        None => {
            let _ = hand_over
                .send((Replayed::new(socket, read, slot), peer))
                .await;
        }
    }
}

/// What `cors` answers to a request with `method` and `headers`: for a preflight the
/// whole response, otherwise the headers it adds to the response.
async fn cors_answer(
    cors: &CorsLayer,
    method: Method,
    headers: HeaderMap,
) -> (StatusCode, HeaderMap) {
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.headers_mut() = headers;
    let service = cors.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    match service.oneshot(request).await {
        Ok(response) => (response.status(), response.headers().clone()),
        Err(never) => match never {},
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
