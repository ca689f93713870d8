//! Realtime delivery for PiCloud: the Server-Sent-Events endpoint, the in-process
//! broadcaster and the HMAC subscriber-token authority.
//!
//! - [`broadcaster`]: per-topic bounded channels fed after each publish commits; it is
//!   the [`picloud_shared::events::RealtimeBroadcaster`] manager-core calls.
//! - [`stream`]: one subscriber's stream — replay from the log, live frames, catch-up
//!   on lag, heartbeats and token expiry; [`sse`] renders its frames and [`cursor`]
//!   its resume cursors.
//! - [`subscriber_token`] (the JWS format) and [`token_authority`] (keys, minting,
//!   verifying, rotation).
//! - [`realtime_api`]: the HTTP routes; [`direct_sse`] serves plain subscriptions
//!   straight on the socket; [`connection_limits`] caps open streams.
//!
//! This crate depends only on `picloud-shared`: it reads storage through
//! [`picloud_shared::realtime::RealtimeStore`], which manager-core implements, so the
//! two never name each other. The wire protocol is in docs/realtime-protocol.md.

use std::sync::Arc;
use std::time::Duration;

use picloud_shared::realtime::RealtimeStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod broadcaster;
pub mod cluster_relay;
pub mod connection_limits;
pub mod cursor;
pub mod direct_sse;
pub mod error;
pub mod external_topics;
pub mod fanout;
pub mod metrics;
pub mod realtime_api;
pub mod sse;
pub mod stream;
pub mod stream_runtime;
pub mod subscriber_token;
pub mod token_authority;

pub use error::Error;

use broadcaster::Broadcaster;
use connection_limits::{ConnectionLimits, Limits};
use realtime_api::RealtimeState;
use stream::StreamTiming;
use token_authority::{TokenAuthority, TokenConfig};

/// Every realtime setting.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Token lifetimes and key handling.
    pub tokens: TokenConfig,
    /// Heartbeats and token notices.
    pub timing: StreamTiming,
    /// Open-stream limits.
    pub limits: Limits,
    /// Most topics per stream.
    pub max_topics: usize,
    /// Frames each per-topic live channel holds before a slow subscriber lags.
    pub broadcast_capacity: usize,
    /// How often idle channels are dropped.
    pub gc_interval: Duration,
    /// Worker threads of the runtime direct streams run on.
    pub stream_threads: usize,
}

/// How often idle live channels are dropped, unless configured otherwise.
pub const GC_INTERVAL: Duration = Duration::from_secs(60);

/// The realtime layer of one process: build it, hand [`Realtime::broadcaster`] to the
/// publisher, merge [`Realtime::router`] into the app, and run
/// [`Realtime::spawn_background`].
pub struct Realtime {
    state: RealtimeState,
    gc_interval: Duration,
}

impl Realtime {
    /// The realtime layer over `store`. Streams end when `stop` is cancelled. Fails only
    /// if the stream runtime's threads cannot be started.
    pub fn new(
        store: Arc<dyn RealtimeStore>,
        config: RealtimeConfig,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        metrics::describe();
        let broadcaster = Arc::new(Broadcaster::new(
            config.broadcast_capacity,
            config.stream_threads,
        ));
        let closing = broadcaster.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            closing.close_all();
        });
        let streams = Arc::new(stream_runtime::StreamRuntime::new(config.stream_threads)?);
        Ok(Realtime {
            state: RealtimeState {
                tokens: Arc::new(TokenAuthority::new(store.clone(), config.tokens)),
                store,
                broadcaster,
                limits: ConnectionLimits::new(config.limits),
                timing: config.timing,
                max_topics: config.max_topics,
                streams,
            },
            gc_interval: config.gc_interval,
        })
    }

    /// The broadcaster the publisher must call after each commit.
    pub fn broadcaster(&self) -> Arc<Broadcaster> {
        self.state.broadcaster.clone()
    }

    /// What other nodes' notices mean for this node's streams, for the cluster feed.
    pub fn cluster_relay(&self) -> Arc<cluster_relay::ClusterRelay> {
        Arc::new(cluster_relay::ClusterRelay::new(
            self.state.store.clone(),
            self.state.broadcaster.clone(),
        ))
    }

    /// A reader of how many SSE streams are open on this process, per app with any.
    pub fn stream_counter(&self) -> impl Fn() -> Vec<(String, usize)> + Send + Sync + 'static {
        let limits = self.state.limits.clone();
        move || {
            limits
                .open_by_app()
                .into_iter()
                .map(|(app, n)| (app.to_string(), n))
                .collect()
        }
    }

    /// What the handlers share, for serving [`direct_sse`] streams.
    pub fn state(&self) -> RealtimeState {
        self.state.clone()
    }

    /// The realtime routes.
    pub fn router(&self) -> utoipa_axum::router::OpenApiRouter {
        realtime_api::router(self.state.clone())
    }

    /// Starts the idle-channel collector; it stops with `stop`.
    pub fn spawn_background(&self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(
            self.state
                .broadcaster
                .clone()
                .run_gc(self.gc_interval, stop),
        )
    }
}
