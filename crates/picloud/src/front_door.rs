//! The front door: accepts TCP connections, reads the first request head, and either
//! serves an SSE subscription straight on the socket
//! ([`picloud_orchestrator_core::direct_sse`]) or hands the connection, with the bytes
//! already read replayed first, to the HTTP stack (axum) through its [`Listener`] trait.
//! A browser subscribing from another origin sends a CORS preflight first, usually on
//! the same connection: the front door answers it (with the routed path's own CORS
//! layer, so the answer is the same) and looks at the next request.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use axum::serve::Listener;
use picloud_orchestrator_core::direct_sse::{self, Recognised, MAX_HEAD};
use picloud_orchestrator_core::realtime_api::RealtimeState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{service_fn, Layer, ServiceExt};
use tower_http::cors::CorsLayer;

/// How long a new connection may take to send its first request head before it is
/// handed to the HTTP stack as it is (which applies its own rules).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Most CORS preflights answered on one connection before it goes to the HTTP stack.
const MAX_PREFLIGHTS: usize = 4;

/// The connections the HTTP stack serves, as an axum [`Listener`].
pub struct FrontDoor {
    handed_over: mpsc::Receiver<(Replayed, SocketAddr)>,
    local_addr: SocketAddr,
}

impl FrontDoor {
    /// Starts accepting on `listener` until `stop`. `cors` is the CORS layer of the
    /// routed path, if origins are configured.
    pub fn open(
        listener: TcpListener,
        realtime: RealtimeState,
        cors: Option<CorsLayer>,
        stop: CancellationToken,
    ) -> Self {
        let local_addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let (hand_over, handed_over) = mpsc::channel(1024);
        tokio::spawn(accept_loop(listener, realtime, cors, hand_over, stop));
        FrontDoor {
            handed_over,
            local_addr,
        }
    }
}

impl Listener for FrontDoor {
    type Io = Replayed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handed_over.recv().await {
            Some(connection) => connection,
            // The accept loop stopped (shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    realtime: RealtimeState,
    cors: Option<CorsLayer>,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                tokio::spawn(triage(
                    socket,
                    peer,
                    realtime.clone(),
                    cors.clone(),
                    hand_over.clone(),
                ));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly, as axum does.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads the first request head and sends the connection where it belongs.
async fn triage(
    mut socket: TcpStream,
    peer: SocketAddr,
    realtime: RealtimeState,
    cors: Option<CorsLayer>,
    hand_over: mpsc::Sender<(Replayed, SocketAddr)>,
) {
    let mut read = Vec::with_capacity(1024);
    let mut deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
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
                crate::server::record_request(
                    &Method::OPTIONS,
                    direct_sse::ROUTE.to_owned(),
                    status,
                    started,
                );
                read.drain(..len);
                preflights += 1;
                deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
                continue;
            }
            Recognised::BadFraming => {
                let started = Instant::now();
                let request_id = uuid::Uuid::new_v4().to_string();
                let status = direct_sse::reject_framing(&mut socket, &request_id).await;
                let route = direct_sse::ROUTE.to_owned();
                crate::server::record_request(&Method::GET, route, status, started);
                return;
            }
            Recognised::Preflight { .. } | Recognised::Other => break None,
        }
        if read.len() == read.capacity() {
            read.reserve(read.len().min(MAX_HEAD));
        }
        match tokio::time::timeout_at(deadline, socket.read_buf(&mut read)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return, // closed before a full head
            Ok(Ok(_)) => {}
            Err(_) => break None,
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
                    crate::server::record_request(
                        &Method::GET,
                        direct_sse::ROUTE.to_owned(),
                        status,
                        started,
                    );
                },
            );
        }
        None => {
            let _ = hand_over.send((Replayed::new(socket, read), peer)).await;
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

/// A connection whose first bytes were already read: they are read again first.
pub struct Replayed {
    prefix: Vec<u8>,
    position: usize,
    socket: TcpStream,
}

impl Replayed {
    fn new(socket: TcpStream, prefix: Vec<u8>) -> Self {
        Replayed {
            prefix,
            position: 0,
            socket,
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
