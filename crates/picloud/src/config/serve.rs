//! `picloud serve` settings, and the component configurations built from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};
use picloud_executor_core::Limits as ScriptLimits;
use picloud_manager_core::dispatcher::ssrf::AddressPolicy;
use picloud_manager_core::dispatcher::{
    CircuitPolicy, DispatcherConfig, CLAIM_BATCH, MAX_RETRY_AFTER,
};
use picloud_manager_core::http::admin_session::{AdminSettings, SignInGuard};
use picloud_manager_core::http::event_input::PublishLimits;
use picloud_manager_core::retention::DEFAULT_DELIVERY_HISTORY;
use picloud_orchestrator_core::connection_limits::Limits;
use picloud_orchestrator_core::stream::StreamTiming;
use picloud_orchestrator_core::token_authority::{TokenConfig, KEY_CACHE_TTL};
use picloud_orchestrator_core::{RealtimeConfig, GC_INTERVAL};

use super::values::{parse_cidr_list, parse_cors_origins, parse_scale};
use super::DEFAULT_BIND;

/// `picloud serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PICLOUD_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "PICLOUD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=256 * 1024 * 1024))]
    pub max_body_bytes: u64,
    /// Largest `data` of one published event, in bytes; larger ones get 413.
    #[arg(long, env = "PICLOUD_MAX_EVENT_BYTES", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u64).range(16..=64 * 1024 * 1024))]
    pub max_event_bytes: u64,
    /// Most events in one batch publish; more get 413.
    #[arg(long, env = "PICLOUD_MAX_BATCH_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch_events: u64,
    /// Seconds between retention passes that prune old events.
    #[arg(long, env = "PICLOUD_RETENTION_INTERVAL_SEC", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_interval_sec: u64,
    /// Days a finished delivery (and its attempts) stays in the deliveries API after it
    /// finished; older ones are pruned. Dead letters stay until replayed or deleted.
    #[arg(long, env = "PICLOUD_DELIVERY_HISTORY_DAYS",
          default_value_t = DEFAULT_DELIVERY_HISTORY.as_secs() / (24 * 3600),
          value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub delivery_history_days: u64,
    /// Most webhook deliveries in flight at once on this node.
    #[arg(long, env = "PICLOUD_DISPATCH_WORKERS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub dispatch_workers: u64,
    /// Factor on every retry delay (1.0 = the Standard Webhooks schedule; tests use less).
    #[arg(long, env = "PICLOUD_DISPATCH_BACKOFF_SCALE", default_value_t = 1.0,
          value_parser = parse_scale)]
    pub dispatch_backoff_scale: f64,
    /// Longest wait between outbox polls when no publish wakes the dispatcher, in ms.
    #[arg(long, env = "PICLOUD_DISPATCH_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub dispatch_poll_ms: u64,
    /// How long a claimed delivery stays exclusive to this node, in seconds. A node that
    /// dies holds its claims this long; must exceed the webhook timeout.
    #[arg(long, env = "PICLOUD_DISPATCH_LEASE_SEC", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub dispatch_lease_sec: u64,
    /// Webhook request timeout, in seconds.
    #[arg(long, env = "PICLOUD_WEBHOOK_TIMEOUT_SEC", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_sec: u64,
    /// Let webhooks reach loopback, private, link-local and other internal addresses.
    #[arg(long, env = "PICLOUD_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Comma-separated CIDRs webhooks may reach even though they are internal.
    #[arg(long, env = "PICLOUD_WEBHOOK_ALLOW_CIDRS", default_value = "", value_parser = parse_cidr_list)]
    pub webhook_allow_cidrs: String,
    /// Let outbox sources' databases be at loopback, private, link-local and other
    /// internal addresses (or a Unix socket). A source's URL comes from an app's admin
    /// key: keep this off where app admins must not reach the server's own network.
    #[arg(long, env = "PICLOUD_SOURCE_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub source_allow_private: bool,
    /// Comma-separated CIDRs outbox sources' databases may be at even though they are
    /// internal.
    #[arg(long, env = "PICLOUD_SOURCE_ALLOW_CIDRS", default_value = "", value_parser = parse_cidr_list)]
    pub source_allow_cidrs: String,
    /// How long in-flight requests may take to finish at shutdown, in seconds.
    #[arg(long, env = "PICLOUD_SHUTDOWN_GRACE_SEC", default_value_t = 30)]
    pub shutdown_grace_sec: u64,
    /// Log format.
    #[arg(long, env = "PICLOUD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Browser origins allowed to call the API cross-origin (the SDK's subscribe and
    /// token calls): comma-separated `scheme://host[:port]`, exactly as browsers send
    /// them in `Origin`, or `*`. Empty: same origin only.
    #[arg(long, env = "PICLOUD_CORS_ORIGINS", default_value = "", value_parser = parse_cors_origins)]
    pub cors_origins: String,
    /// How long a dashboard sign-in lasts, in seconds.
    #[arg(long, env = "PICLOUD_ADMIN_SESSION_TTL_SEC", default_value_t = 12 * 3600,
          value_parser = clap::value_parser!(u64).range(60..=30 * 86_400))]
    pub admin_session_ttl_sec: u64,
    /// Always mark the dashboard session cookie `Secure`. Without it, the cookie is
    /// `Secure` only on requests with `X-Forwarded-Proto: https` (PiCloud itself speaks
    /// plain HTTP; set this behind a TLS proxy that does not send that header).
    #[arg(long, env = "PICLOUD_SECURE_COOKIES", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub secure_cookies: bool,
    /// Seconds between the samples behind the dashboard's overview charts (an hour of
    /// them is kept in memory).
    #[arg(long, env = "PICLOUD_STATS_INTERVAL_SEC", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub stats_interval_sec: u64,
    /// Longest a script may run, in ms; then it ends with a timeout error.
    #[arg(long, env = "PICLOUD_SCRIPT_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub script_timeout_ms: u64,
    /// Scripts executing at once (apart from the API's and the streams' threads); 0 =
    /// one per core. Each worker has 32 threads, so runs waiting on a publish, a token or
    /// a request let other runs execute.
    #[arg(long, env = "PICLOUD_SCRIPT_WORKERS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=256))]
    pub script_workers: u64,
    /// Script runs kept in each app's run log (the newest; older ones are trimmed).
    #[arg(long, env = "PICLOUD_SCRIPT_RUN_LOG", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub script_run_log: u32,
    /// Realtime (SSE) settings.
    #[command(flatten)]
    pub realtime: RealtimeArgs,
    /// Connection limits and timeouts.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Dashboard sign-in attempts allowed per client address per minute (IPv6: per
    /// /64), as a burst that refills evenly. The address is the TCP peer's;
    /// `X-Forwarded-For` is not trusted.
    #[arg(long, env = "PICLOUD_ADMIN_SIGN_INS_PER_ADDRESS_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub admin_sign_ins_per_address_per_minute: u32,
}

/// Realtime (SSE and subscriber token) settings of `picloud serve`.
#[derive(Debug, Clone, Args)]
pub struct RealtimeArgs {
    /// Shortest subscriber-token lifetime, in seconds; shorter requests get this.
    #[arg(long, env = "PICLOUD_SUBSCRIBER_TOKEN_TTL_MIN_SEC", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub subscriber_token_ttl_min_sec: u64,
    /// Longest subscriber-token lifetime, in seconds; longer requests get this.
    #[arg(long, env = "PICLOUD_SUBSCRIBER_TOKEN_TTL_MAX_SEC", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub subscriber_token_ttl_max_sec: u64,
    /// Subscriber-token lifetime when none is asked, in seconds.
    #[arg(long, env = "PICLOUD_SUBSCRIBER_TOKEN_TTL_DEFAULT_SEC", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub subscriber_token_ttl_default_sec: u64,
    /// How long tokens signed with a rotated-out key stay valid, in seconds.
    #[arg(long, env = "PICLOUD_REALTIME_KEY_GRACE_SEC", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=30 * 86_400))]
    pub realtime_key_grace_sec: u64,
    /// Seconds between heartbeat comments on quiet streams.
    #[arg(long, env = "PICLOUD_REALTIME_HEARTBEAT_SEC", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub realtime_heartbeat_sec: u64,
    /// Seconds before a token's expiry that its stream gets a `token_expiring` frame.
    #[arg(long, env = "PICLOUD_REALTIME_TOKEN_NOTICE_SEC", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub realtime_token_notice_sec: u64,
    /// Most topics on one stream.
    #[arg(long, env = "PICLOUD_REALTIME_MAX_TOPICS", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub realtime_max_topics: u64,
    /// Most open streams on this server; more get 503.
    #[arg(long, env = "PICLOUD_REALTIME_MAX_CONNECTIONS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub realtime_max_connections: u64,
    /// Most open streams per app on this server; more get 429.
    #[arg(long, env = "PICLOUD_REALTIME_MAX_CONNECTIONS_PER_APP", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub realtime_max_connections_per_app: u64,
    /// Frames each topic's live channel holds; a subscriber further behind reads the log.
    #[arg(long, env = "PICLOUD_REALTIME_BROADCAST_CAPACITY", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub realtime_broadcast_capacity: u64,
    /// Threads of the runtime SSE streams run on, apart from the API's; 0 = one per core.
    #[arg(long, env = "PICLOUD_REALTIME_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub realtime_threads: u64,
    /// Seconds between checks that a dashboard session watching a stream is still
    /// signed in; its streams end within this long of a sign-out or expiry.
    #[arg(long, env = "PICLOUD_REALTIME_SESSION_CHECK_SEC", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub realtime_session_check_sec: u64,
    /// Most open streams per subscriber-token subject (`sub`) of an app on this server;
    /// more get 429. 0 = no limit.
    #[arg(long, env = "PICLOUD_REALTIME_MAX_CONNECTIONS_PER_SUB", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub realtime_max_connections_per_sub: u64,
}

impl RealtimeArgs {
    /// The realtime configuration, or why these settings do not fit together.
    pub fn to_config(&self) -> Result<RealtimeConfig, String> {
        let (min, max, default) = (
            self.subscriber_token_ttl_min_sec,
            self.subscriber_token_ttl_max_sec,
            self.subscriber_token_ttl_default_sec,
        );
        if !(min <= default && default <= max) {
            return Err(format!(
                "subscriber token TTLs must satisfy min <= default <= max (got {min}, {default}, {max})"
            ));
        }
        Ok(RealtimeConfig {
            tokens: TokenConfig {
                ttl_min: Duration::from_secs(min),
                ttl_max: Duration::from_secs(max),
                ttl_default: Duration::from_secs(default),
                rotation_grace: Duration::from_secs(self.realtime_key_grace_sec),
                cache_ttl: KEY_CACHE_TTL,
            },
            timing: StreamTiming {
                heartbeat: Duration::from_secs(self.realtime_heartbeat_sec),
                token_notice: Duration::from_secs(self.realtime_token_notice_sec),
                session_check: Duration::from_secs(self.realtime_session_check_sec),
            },
            limits: Limits {
                total: self.realtime_max_connections as usize,
                per_app: self.realtime_max_connections_per_app as usize,
                per_subject: self.realtime_max_connections_per_sub as usize,
            },
            max_topics: self.realtime_max_topics as usize,
            broadcast_capacity: self.realtime_broadcast_capacity as usize,
            gc_interval: GC_INTERVAL,
            stream_threads: match self.realtime_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n as usize,
            },
        })
    }
}

impl ServeArgs {
    /// Checks the settings that must fit together, which the flag parser checks one by
    /// one: the message says which and why.
    pub fn validate(&self) -> Result<(), String> {
        self.realtime.to_config()?;
        if self.dispatch_lease_sec <= self.webhook_timeout_sec {
            return Err(format!(
                "--dispatch-lease-sec (PICLOUD_DISPATCH_LEASE_SEC, {}) must exceed \
                 --webhook-timeout-sec (PICLOUD_WEBHOOK_TIMEOUT_SEC, {}): a delivery must \
                 finish while its claim lasts",
                self.dispatch_lease_sec, self.webhook_timeout_sec
            ));
        }
        Ok(())
    }

    /// The defaults, exactly as `picloud serve` with no flags and no `PICLOUD_*`
    /// variables has them: read from the flag definitions above, the one place a
    /// default is written.
    pub fn defaults() -> Self {
        let command = ServeArgs::augment_args(clap::Command::new("serve"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["serve"])
            .expect("every serve flag has a default");
        ServeArgs::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// The defaults, changed where tests and embedding need it: loopback on a random
    /// port, fewer workers, a short shutdown grace.
    pub fn for_tests() -> Self {
        Self {
            bind: "127.0.0.1:0".parse().expect("loopback address"),
            dispatch_workers: 16,
            shutdown_grace_sec: 5,
            ..Self::defaults()
        }
    }

    /// What one script run may use.
    pub fn script_limits(&self) -> ScriptLimits {
        ScriptLimits::with_timeout(Duration::from_millis(self.script_timeout_ms))
    }

    /// How many scripts execute at once.
    pub fn script_workers(&self) -> usize {
        match self.script_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        }
    }

    /// What one publish request may hold.
    pub fn publish_limits(&self) -> PublishLimits {
        PublishLimits {
            max_event_bytes: self.max_event_bytes as usize,
            max_batch_events: self.max_batch_events as usize,
        }
    }

    /// Dashboard sessions, and the guard that bounds sign-in attempts.
    pub fn admin_settings(&self) -> AdminSettings {
        AdminSettings {
            session_ttl: Duration::from_secs(self.admin_session_ttl_sec),
            secure_cookies: self.secure_cookies,
            guard: Arc::new(SignInGuard::new(self.admin_sign_ins_per_address_per_minute)),
        }
    }

    /// The dispatcher's settings. `node_id` names this node in leases.
    pub fn dispatcher_config(
        &self,
        node_id: String,
        address_policy: Arc<AddressPolicy>,
    ) -> DispatcherConfig {
        DispatcherConfig {
            node_id,
            workers: self.dispatch_workers as usize,
            batch_size: CLAIM_BATCH,
            lease: Duration::from_secs(self.dispatch_lease_sec),
            poll_interval: Duration::from_millis(self.dispatch_poll_ms),
            request_timeout: Duration::from_secs(self.webhook_timeout_sec),
            backoff_scale: self.dispatch_backoff_scale,
            max_retry_after: MAX_RETRY_AFTER,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_sec),
            address_policy,
            // Scaled like the retry delays, so tests see circuits close in milliseconds.
            circuit: CircuitPolicy {
                cooldown: CircuitPolicy::STANDARD
                    .cooldown
                    .mul_f64(self.dispatch_backoff_scale),
                ..CircuitPolicy::STANDARD
            },
        }
    }
}

/// Connection limits and timeouts of `picloud serve`: what a slow, idle or greedy client
/// may hold.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Seconds a new connection has to send its first request head; then it is closed.
    #[arg(long, env = "PICLOUD_HEADER_TIMEOUT_SEC", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_sec: u64,
    /// Seconds a request body has to arrive in full, from its head; then 408 and the
    /// connection closes.
    #[arg(long, env = "PICLOUD_BODY_TIMEOUT_SEC", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_sec: u64,
    /// Seconds a keep-alive connection may wait for (the whole head of) its next
    /// request; then it is closed.
    #[arg(long, env = "PICLOUD_IDLE_TIMEOUT_SEC", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_sec: u64,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, env = "PICLOUD_MAX_HEADER_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u64).range(16 * 1024..=1024 * 1024))]
    pub max_header_bytes: u64,
    /// Most open connections (SSE streams included); more get 503 and are closed.
    /// 0: three quarters of the open-file limit, the rest left for the database,
    /// webhooks and refusing.
    #[arg(long, env = "PICLOUD_MAX_CONNECTIONS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub max_connections: u64,
    /// Most open connections from one IP address; more get 429 and are closed. 0: nine
    /// tenths of --max-connections, so one client (a load test, a reverse proxy) may use
    /// nearly all of them yet never lock everyone else out. Behind a proxy every client
    /// shares its address: set it accordingly.
    #[arg(long, env = "PICLOUD_MAX_CONNECTIONS_PER_IP", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub max_connections_per_ip: u64,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
