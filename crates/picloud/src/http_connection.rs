//! Serves the connections the front door hands over with hyper's HTTP/1.1 server, with
//! the timeouts axum's own `serve` cannot set: a keep-alive connection waiting longer
//! than the idle timeout for its next request head is closed (hyper's header read
//! timeout, which starts as soon as a connection goes idle), a head larger than the
//! limit gets 431, and a request body must arrive within the body timeout
//! ([`crate::body_timeout`]). Each connection is watched for graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::body_timeout;

/// Limits applied to every request of a connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a keep-alive connection may wait for its next request head.
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive, from its head.
    pub body_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
}

/// The HTTP stack's side of serving: the built router and the connection settings.
pub struct HttpConnections {
    builder: http1::Builder,
    router: Router,
    body_timeout: Duration,
}

impl HttpConnections {
    /// Serves `router` (built once; each request gets a cheap clone) under `limits`.
    pub fn new(router: Router, limits: HttpLimits) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true);
        HttpConnections {
            builder,
            router,
            body_timeout: limits.body_timeout,
        }
    }

    /// Serves one connection from `peer` until it closes, or, once `watcher` signals
    /// shutdown, until its request in flight is answered. Each request carries the peer
    /// as axum's `ConnectInfo<SocketAddr>` (the sign-in throttle counts by it).
    pub fn serve<I>(
        &self,
        io: I,
        peer: SocketAddr,
        watcher: Watcher,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let body_timeout = self.body_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move {
                let mut request = request;
                request.extensions_mut().insert(ConnectInfo(peer));
                let (request, deadline) = body_timeout::limit(request, body_timeout);
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(deadline.answer(response))
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        let watched = watcher.watch(connection);
        async move {
            if let Err(error) = watched.await {
                // Clients going away, timeouts and malformed requests end up here.
                tracing::debug!(%error, "connection ended with an error");
            }
        }
    }
}
