//! Configuration: every setting is a flag with a `PICLOUD_*` environment variable.
//! clap rejects a bad value with a clear message and exit code 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use picloud_manager_core::dispatcher::ssrf::AddressPolicy;
use picloud_manager_core::dispatcher::{
    CircuitPolicy, DispatcherConfig, CLAIM_BATCH, MAX_RETRY_AFTER,
};
use picloud_manager_core::http::admin_session::{AdminSettings, SignInGuard};
use picloud_manager_core::http::event_input::PublishLimits;
use picloud_manager_core::secret_box::MasterKey;
use picloud_orchestrator_core::connection_limits::Limits;
use picloud_orchestrator_core::stream::StreamTiming;
use picloud_orchestrator_core::token_authority::{TokenConfig, KEY_CACHE_TTL};
use picloud_orchestrator_core::{RealtimeConfig, GC_INTERVAL};
use picloud_shared::{AppId, Scope};

/// PiCloud: a self-hosted realtime pub/sub platform with a transactional outbox.
#[derive(Debug, Parser)]
#[command(name = "picloud", version, about, propagate_version = true)]
pub struct Cli {
    /// Where the database lives.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Database settings, shared by every command that touches the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Folder for PiCloud's files; the default SQLite database lives here.
    #[arg(
        long,
        env = "PICLOUD_DATA_DIR",
        default_value = "./picloud_data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER:PASS@HOST/DB`; default: SQLite in the data dir.
    #[arg(
        long,
        env = "PICLOUD_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most database connections this process opens.
    #[arg(long, env = "PICLOUD_DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub database_max_connections: u32,
    /// Seconds a request waits for a database connection before it is answered 503
    /// `unavailable` (with `Retry-After`); background tasks retry after it.
    #[arg(long, env = "PICLOUD_DATABASE_ACQUIRE_TIMEOUT_SEC", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub database_acquire_timeout_sec: u64,
    /// The master key stored secrets are sealed under: the base64 of 32 bytes (e.g.
    /// `openssl rand -base64 32`). Unset: the `master.key` file in the data dir, created
    /// 0600 on first start. Every node of one database needs the same key; prefer the
    /// variable to the flag, which other local users can see in the process list.
    #[arg(long, env = "PICLOUD_MASTER_KEY", global = true, hide_env_values = true,
          value_parser = parse_master_key)]
    pub master_key: Option<MasterKey>,
}

impl DatabaseArgs {
    /// The database URL to use: the explicit one, or the SQLite file in the data dir.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("picloud.db").display()),
        }
    }

    /// The SQLite database file [`Self::url`] names, as an absolute path; `None` for
    /// PostgreSQL and in-memory databases.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.url();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
            return None;
        }
        std::path::absolute(path).ok()
    }
}

/// Where `picloud serve` listens unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply database migrations and exit (the server also applies them at start).
    Migrate,
    /// Manage apps.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage dashboard admins (superusers who sign in at /_/).
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Manage the master key that stored secrets are sealed under.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

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
    /// Most webhook deliveries in flight at once on this node.
    #[arg(long, env = "PICLOUD_DISPATCH_WORKERS", default_value_t = 64,
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

/// `picloud apps …`
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        /// The app id (slug).
        id: AppId,
        /// Display name; defaults to the id.
        #[arg(long)]
        name: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List apps.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an app and everything it owns.
    Delete {
        /// The app id.
        id: AppId,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Whose keys a `keys` command works on.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct KeyOwner {
    /// Instance keys (manage apps and keys).
    #[arg(long)]
    pub instance: bool,
    /// Keys of this app.
    #[arg(long)]
    pub app: Option<AppId>,
}

/// `picloud keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Whose key.
        #[command(flatten)]
        owner: KeyOwner,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// A scope for an app key (repeatable), e.g. `--scope pubsub:publish`.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Whose keys.
        #[command(flatten)]
        owner: KeyOwner,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        /// The key id.
        id: String,
        /// Whose key.
        #[command(flatten)]
        owner: KeyOwner,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud admins …`
#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Create a dashboard admin; the password is asked for, or read from stdin.
    Create {
        /// The admin's email (stored lower-cased).
        #[arg(long)]
        email: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List admins (never their passwords).
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an admin and sign them out everywhere.
    Delete {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear an admin's failed sign-ins and lockout.
    Unlock {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_cidr_list(value: &str) -> Result<String, String> {
    picloud_manager_core::dispatcher::ssrf::parse_cidrs(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// The origins of `PICLOUD_CORS_ORIGINS`: empty, `*`, or a comma-separated list of
/// origins, each exactly as a browser sends it in `Origin` (`scheme://host[:port]`,
/// lower-case, no path, no trailing slash, no default port); anything else could never
/// match a request.
pub fn cors_origin_list(value: &str) -> Result<Vec<String>, String> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|origin| parse_origin(origin.trim()))
        .collect()
}

fn parse_origin(origin: &str) -> Result<String, String> {
    let never = |why: &str| format!("'{origin}' is not an origin browsers send ({why})");
    if origin == "*" {
        return Err(never("`*` must stand alone"));
    }
    let url = url::Url::parse(origin).map_err(|e| never(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(never("the scheme must be http or https"));
    }
    let serialized = url.origin().ascii_serialization();
    if serialized != origin {
        return Err(if serialized == "null" {
            never("it has no host")
        } else {
            never(&format!("write it as '{serialized}'"))
        });
    }
    Ok(serialized)
}

fn parse_cors_origins(value: &str) -> Result<String, String> {
    cors_origin_list(value).map(|_| value.to_owned())
}

fn parse_scale(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(scale) if scale.is_finite() && (0.0..=1000.0).contains(&scale) => Ok(scale),
        _ => Err(format!("'{value}' is not a factor between 0 and 1000")),
    }
}

fn parse_scope(value: &str) -> Result<Scope, String> {
    Scope::parse(value).ok_or_else(|| {
        let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown scope '{value}'; known scopes: {}",
            known.join(", ")
        )
    })
}

/// `picloud secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every stored secret under a new master key, in one transaction. Stop every
    /// node first; afterwards, start them all with the new key.
    RotateMasterKey {
        /// Read the new key (base64 of 32 bytes) from this file; without it, a new key
        /// is generated and written to the data dir's key file.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_master_key(value: &str) -> Result<MasterKey, String> {
    MasterKey::from_base64(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let cli = Cli::try_parse_from(["picloud", "--data-dir", "/tmp/x", "migrate"]).unwrap();
        assert_eq!(cli.database.url(), "sqlite:///tmp/x/picloud.db");
    }

    #[test]
    fn defaults_are_the_flags_defaults_whatever_the_environment() {
        let cli = Cli::try_parse_from(["picloud", "serve"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        // The test runs without PICLOUD_* variables, so the parse saw only defaults.
        assert_eq!(format!("{serve:?}"), format!("{:?}", ServeArgs::defaults()));
        assert_eq!(ServeArgs::defaults().dispatch_lease_sec, 90);
        let bad = RealtimeArgs {
            subscriber_token_ttl_default_sec: 5,
            ..ServeArgs::defaults().realtime
        };
        assert!(bad
            .to_config()
            .unwrap_err()
            .contains("min <= default <= max"));
    }

    #[test]
    fn bad_values_are_rejected() {
        let err = Cli::try_parse_from(["picloud", "serve", "--bind", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["picloud", "apps", "create", "Bad App"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from([
            "picloud", "keys", "create", "--app", "shop", "--name", "x", "--scope", "root",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("unknown scope"), "{err}");
        let err = Cli::try_parse_from(["picloud", "keys", "list", "--instance", "--app", "shop"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
