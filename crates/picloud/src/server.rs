//! `build_app`: wires storage, authentication and every crate's routes into one axum
//! application, and runs it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use picloud_executor_core::Executor;
use picloud_manager_core::api_keys::CreatedKey;
use picloud_manager_core::auth::{require_access, Authenticator, DEFAULT_KEY_CACHE_TTL};
use picloud_manager_core::cluster_feed::run_cluster_feed;
use picloud_manager_core::cron::run_cron;
use picloud_manager_core::db::{redact_url, Backend, PoolSize};
use picloud_manager_core::dispatcher::ssrf::{parse_cidrs, AddressPolicy};
use picloud_manager_core::dispatcher::{Dispatcher, ScriptHandlers};
use picloud_manager_core::http::{ManagerParts, ManagerState};
use picloud_manager_core::publish::{Publisher, PublisherConfig};
use picloud_manager_core::retention::run_retention;
use picloud_manager_core::run_log::RunLog;
use picloud_manager_core::script_cache::ScriptCache;
use picloud_manager_core::sources::relay::RelaySettings;
use picloud_manager_core::Db;
use picloud_orchestrator_core::realtime_api::RealtimeState;
use picloud_orchestrator_core::Realtime;
use picloud_shared::cluster::NoticeHandler;
use picloud_shared::{ApiError, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{ConnectionArgs, DatabaseArgs, ServeArgs};
use crate::connection_limits::{Caps, ConnectionLimits};
use crate::dashboard;
use crate::fd_limit;
use crate::front_door::{DoorRules, FrontDoor};
use crate::http_connection::{HttpConnections, HttpLimits};
use crate::script_host::ScriptHost;
use crate::stats::{self, Stats};
use crate::system_api::{self, SystemState};
use crate::telemetry::{metrics_handle, record_http_metrics, record_request};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one PiCloud understands.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER:PASS@HOST/DB")]
    DatabaseUrl(String),
    /// A setting is invalid beyond what the flag parser checks.
    #[error("invalid configuration: {0}")]
    Config(picloud_manager_core::Error),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] picloud_manager_core::Error),
    /// The listen address could not be bound, or serving failed.
    #[error("could not listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the database named by `args` and brings its schema up to date.
pub async fn open_database(args: &DatabaseArgs) -> Result<Db, Error> {
    let url = args.url();
    if Backend::of_url(&url).is_none() {
        return Err(Error::DatabaseUrl(redact_url(&url)));
    }
    let db = Db::connect_with(
        &url,
        PoolSize(args.database_max_connections),
        Duration::from_secs(args.database_acquire_timeout_sec),
    )
    .await?;
    db.migrate().await?;
    Ok(db)
}

/// A built application: database open and migrated, routes wired, port bound,
/// background tasks running.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: Db,
    auth: Arc<Authenticator>,
    bootstrap_key: Option<CreatedKey>,
    shutdown_grace: Duration,
    background: CancellationToken,
    /// Ends every SSE stream; cancelled as soon as shutdown begins, so that open streams
    /// do not hold the graceful shutdown for its whole grace period.
    realtime_stop: CancellationToken,
    realtime: RealtimeState,
    /// The CORS layer, also used by the front door for the subscriptions it serves.
    cors: Option<CorsLayer>,
    tasks: Vec<JoinHandle<()>>,
    /// What the front door enforces (connection caps, first-head timeout and size).
    door_rules: DoorRules,
    /// The HTTP stack's timeouts and head limit.
    http_limits: HttpLimits,
}

/// The swappable parts of an application; tests replace them to observe or break things.
#[derive(Default)]
pub struct Wiring {
    /// How the publish writer batches, and its fault-injection hook.
    pub publisher: PublisherConfig,
}

/// Builds the whole application on `db`: routes, middleware, background tasks and the
/// listening socket. On an empty database this also creates the first instance key (see
/// [`Application::bootstrap_key`]).
pub async fn build_app(db: Db, serve: &ServeArgs) -> Result<Application, Error> {
    build_app_with(db, serve, Wiring::default()).await
}

/// [`build_app`] with custom [`Wiring`].
pub async fn build_app_with(
    db: Db,
    serve: &ServeArgs,
    wiring: Wiring,
) -> Result<Application, Error> {
    serve
        .validate()
        .map_err(|m| Error::Config(picloud_manager_core::Error::Invalid(m)))?;
    // The recorder first: metrics described before it exists (the realtime layer's)
    // would lose their HELP text.
    let _ = metrics_handle();
    let bootstrap_key = db.bootstrap_instance_key().await?;
    let auth = Arc::new(Authenticator::new(db.clone(), DEFAULT_KEY_CACHE_TTL));
    let background = CancellationToken::new();
    let realtime_stop = CancellationToken::new();
    let realtime = start_realtime(&db, serve, realtime_stop.clone())?;
    let cors = cors_layer(&serve.cors_origins)?;
    let (manager, mut tasks) = start_manager(&db, serve, wiring, &auth, &realtime, &background)?;
    // The first sign-in with an unknown email would otherwise pay for the dummy hash.
    drop(tokio::task::spawn_blocking(|| {
        picloud_manager_core::admins::dummy_hash();
    }));
    let stats = Stats::new(Duration::from_secs(serve.stats_interval_sec));
    tasks.push(tokio::spawn(stats.clone().run(
        db.clone(),
        Arc::new(realtime.stream_counter()),
        background.clone(),
    )));
    tasks.push(realtime.spawn_background(background.clone()));
    let router = with_middleware(
        routes(db.clone(), manager, realtime.router(), stats),
        serve.max_body_bytes as usize,
        cors.clone(),
    );
    let listener = TcpListener::bind(serve.bind)
        .await
        .map_err(|source| Error::Listen {
            addr: serve.bind,
            source,
        })?;
    Ok(Application {
        listener,
        router,
        db,
        auth,
        bootstrap_key,
        shutdown_grace: Duration::from_secs(serve.shutdown_grace_sec),
        background,
        realtime_stop,
        realtime: realtime.state(),
        cors,
        tasks,
        door_rules: door_rules(&serve.connections),
        http_limits: http_limits(&serve.connections),
    })
}

/// Script runs waiting for a worker before more are refused (503).
const SCRIPT_QUEUE: usize = 256;

/// Starts the control plane's background tasks (the cluster feed, the publish writer,
/// the dispatcher, retention), which run until `background` is cancelled, and returns
/// the state its handlers share with them.
fn start_manager(
    db: &Db,
    serve: &ServeArgs,
    wiring: Wiring,
    auth: &Arc<Authenticator>,
    realtime: &Realtime,
    background: &CancellationToken,
) -> Result<(ManagerState, Vec<JoinHandle<()>>), Error> {
    let address_policy = Arc::new(AddressPolicy::new(
        serve.webhook_allow_private,
        parse_cidrs(&serve.webhook_allow_cidrs).map_err(Error::Config)?,
    ));
    let source_policy = Arc::new(AddressPolicy::new(
        serve.source_allow_private,
        parse_cidrs(&serve.source_allow_cidrs).map_err(Error::Config)?,
    ));
    let dispatch_wake = Arc::new(Notify::new());
    let node_id = wiring.publisher.node_id.clone();
    // Other nodes' notices: the relay acts for the streams, the authenticator for its
    // key cache, the script cache for saved scripts.
    let script_cache = Arc::new(ScriptCache::default());
    let handlers: Vec<Arc<dyn NoticeHandler>> =
        vec![realtime.cluster_relay(), auth.clone(), script_cache.clone()];
    let cluster_feed = tokio::spawn(run_cluster_feed(
        db.clone(),
        node_id.clone(),
        handlers,
        background.clone(),
    ));
    let (publisher, writer) = Publisher::spawn(
        db.clone(),
        realtime.broadcaster(),
        dispatch_wake.clone(),
        wiring.publisher,
        background.clone(),
    );
    let ScriptParts {
        executor: scripts,
        run_log,
        run_log_writer,
    } = start_scripts(db, serve, &publisher, realtime, &address_policy, background)?;
    let dispatcher = Dispatcher::new(
        db.clone(),
        serve.dispatcher_config(node_id.clone(), address_policy.clone()),
        dispatch_wake.clone(),
    )
    .with_scripts(ScriptHandlers {
        executor: scripts.clone(),
        run_log: run_log.clone(),
        cache: script_cache.clone(),
    });
    let dispatching = tokio::spawn(dispatcher.run(background.clone()));
    let cron = tokio::spawn(run_cron(
        db.clone(),
        dispatch_wake.clone(),
        background.clone(),
    ));
    let relays = picloud_manager_core::sources::relay::spawn(
        db.clone(),
        publisher.clone(),
        serve.publish_limits(),
        RelaySettings {
            lease: Duration::from_secs(serve.dispatch_lease_sec),
            poll: Duration::from_secs(1),
            batch: 1000,
            node_id: node_id.clone(),
            address_policy: source_policy.clone(),
        },
        background.clone(),
    );
    let retention = tokio::spawn(run_retention(
        db.clone(),
        Duration::from_secs(serve.retention_interval_sec),
        Duration::from_secs(serve.delivery_history_days * 24 * 3600),
        background.clone(),
    ));
    let manager = ManagerState::new(ManagerParts {
        db: db.clone(),
        auth: auth.clone(),
        publisher,
        limits: serve.publish_limits(),
        dispatch_wake,
        admin: serve.admin_settings(),
        realtime: realtime.broadcaster(),
        node_id,
        webhook_policy: address_policy,
        source_policy,
        scripts,
        run_log,
        script_cache,
    });
    let tasks = vec![
        writer,
        retention,
        dispatching,
        cluster_feed,
        run_log_writer,
        cron,
        relays,
    ];
    Ok((manager, tasks))
}

/// What scripts run on and where their runs are recorded.
struct ScriptParts {
    executor: Executor,
    run_log: RunLog,
    run_log_writer: JoinHandle<()>,
}

/// Starts the script workers, which reach PiCloud through a [`ScriptHost`] on
/// `publisher` and the realtime layer, and the run log's writer.
fn start_scripts(
    db: &Db,
    serve: &ServeArgs,
    publisher: &Publisher,
    realtime: &Realtime,
    address_policy: &Arc<AddressPolicy>,
    background: &CancellationToken,
) -> Result<ScriptParts, Error> {
    let host = ScriptHost::new(
        publisher.clone(),
        serve.publish_limits(),
        realtime.state(),
        address_policy.clone(),
    );
    let executor = Executor::start(
        serve.script_workers(),
        SCRIPT_QUEUE,
        serve.script_limits(),
        Arc::new(host),
    )
    .map_err(|e| {
        Error::Config(picloud_manager_core::Error::Invalid(format!(
            "cannot start the script workers: {e}"
        )))
    })?;
    let (run_log, run_log_writer) =
        RunLog::spawn(db.clone(), serve.script_run_log, background.clone());
    Ok(ScriptParts {
        executor,
        run_log,
        run_log_writer,
    })
}

/// The realtime layer for `serve`'s settings, its streams ending with `stop`.
fn start_realtime(db: &Db, serve: &ServeArgs, stop: CancellationToken) -> Result<Realtime, Error> {
    let invalid = |message: String| Error::Config(picloud_manager_core::Error::Invalid(message));
    let config = serve.realtime.to_config().map_err(invalid)?;
    Realtime::new(Arc::new(db.clone()), config, stop)
        .map_err(|e| invalid(format!("cannot start the realtime threads: {e}")))
}

/// The HTTP stack's timeouts and head limit for `args`.
fn http_limits(args: &ConnectionArgs) -> HttpLimits {
    HttpLimits {
        idle_timeout: Duration::from_secs(args.idle_timeout_sec),
        body_timeout: Duration::from_secs(args.body_timeout_sec),
        max_header_bytes: args.max_header_bytes as usize,
    }
}

/// The front door's rules for `args`; automatic caps follow the open-file limit now in
/// force (which `serve` raised to the hard limit first).
fn door_rules(args: &ConnectionArgs) -> DoorRules {
    let caps = Caps::resolve(
        args.max_connections,
        args.max_connections_per_ip,
        fd_limit::soft_or_default(),
    );
    tracing::info!(
        max_connections = caps.total,
        max_connections_per_ip = caps.per_ip,
        "connection limits"
    );
    DoorRules {
        limits: ConnectionLimits::new(caps),
        header_timeout: Duration::from_secs(args.header_timeout_sec),
        max_header_bytes: args.max_header_bytes as usize,
    }
}

/// CORS for the browser-facing routes when origins are configured: `*` or a
/// comma-separated list (checked by [`crate::config::cors_origin_list`]).
fn cors_layer(origins: &str) -> Result<Option<CorsLayer>, Error> {
    let origins = origins.trim();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins == "*" {
        AllowOrigin::any()
    } else {
        let list = crate::config::cors_origin_list(origins)
            .map_err(|m| Error::Config(picloud_manager_core::Error::Invalid(m)))?
            .into_iter()
            .map(|origin| HeaderValue::from_str(&origin).expect("a checked origin"))
            .collect::<Vec<_>>();
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(3600)),
    ))
}

/// Whether `path` is one of the routes browsers may call from other origins: the two
/// docs/realtime-protocol.md opens (`GET /v1/apps/{app}/realtime` and
/// `POST /v1/apps/{app}/subscriber-tokens`) and HTTP functions
/// (`/v1/apps/{app}/functions/{script}`), which public scripts serve to browsers. Every
/// other route takes an API key, which belongs on a server, so it never answers
/// cross-origin.
fn browser_facing(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "v1", "apps", app, "realtime" | "subscriber-tokens"] => !app.is_empty(),
        ["", "v1", "apps", app, "functions", script] => !app.is_empty() && !script.is_empty(),
        _ => false,
    }
}

/// Applies `cors` to the [`browser_facing`] routes only (preflights included).
async fn cors_on_browser_routes(
    axum::extract::State(cors): axum::extract::State<CorsLayer>,
    request: Request,
    next: Next,
) -> Response {
    if browser_facing(request.uri().path()) {
        match cors.layer(next).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    } else {
        next.run(request).await
    }
}

/// Every route of every crate, behind the access check and the request metrics each
/// route applies. The OpenAPI document is generated here from the handlers' annotations.
fn routes(
    db: Db,
    manager: ManagerState,
    realtime: utoipa_axum::router::OpenApiRouter,
    stats: Stats,
) -> Router {
    let auth = manager.auth.clone();
    let openapi_json = Arc::new(std::sync::OnceLock::new());
    let system = SystemState {
        db,
        metrics: metrics_handle(),
        openapi: openapi_json.clone(),
    };
    let (router, openapi) = system_api::router()
        .with_state(system)
        .merge(picloud_manager_core::http::router(manager))
        .merge(realtime)
        .merge(stats::router(stats))
        .split_for_parts();
    // The dashboard's files are public routes of the access table, kept out of the API
    // document; `/` leads a browser pointed at the server to the dashboard.
    let router = router.merge(dashboard::router()).route(
        "/",
        axum::routing::get(|| async {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, HeaderValue::from_static(dashboard::BASE))],
            )
        }),
    );
    let _ = openapi_json.set(crate::api_document::render(openapi));

    router
        .route_layer(middleware::from_fn_with_state(auth, require_access))
        .route_layer(middleware::from_fn(record_http_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// `routes` behind the middleware every request passes through (outermost first): CORS
/// on the browser-facing routes when configured, draining unread bodies, request ids,
/// the request's span, catching panics, the body limit. The stack is wrapped once
/// around the whole router: `Router::layer` would wrap every route in it, and each
/// request would then clone the whole boxed stack (34 boxed services a publish, 6% of
/// its instructions).
fn with_middleware(routes: Router, max_body_bytes: usize, cors: Option<CorsLayer>) -> Router {
    let stack = ServiceBuilder::new()
        .option_layer(cors.map(|cors| middleware::from_fn_with_state(cors, cors_on_browser_routes)))
        .layer(middleware::from_fn(crate::body_drain::drain_unread_body))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                    app = tracing::field::Empty,
                    key_id = tracing::field::Empty,
                )
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .service(routes);
    Router::new().fallback_service(stack)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    record_request(
        &method,
        "unmatched".into(),
        StatusCode::NOT_FOUND,
        Instant::now(),
    );
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    record_request(
        &method,
        "unmatched".into(),
        StatusCode::METHOD_NOT_ALLOWED,
        Instant::now(),
    );
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

impl Application {
    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The first instance key, if this start created it. Shown once, never stored.
    pub fn bootstrap_key(&self) -> Option<&CreatedKey> {
        self.bootstrap_key.as_ref()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight
    /// requests finish (bounded by the grace period), stops background tasks and closes
    /// the database.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let background = self.background.clone();
        let mut tasks = self.tasks;
        let (stop_streams, realtime_stop) = (shutdown.clone(), self.realtime_stop.clone());
        tasks.push(tokio::spawn(async move {
            stop_streams.cancelled().await;
            realtime_stop.cancel();
        }));
        tasks.push(tokio::spawn(
            self.auth.clone().run_key_use_flusher(background.clone()),
        ));

        let mut front_door = FrontDoor::open(
            self.listener,
            self.realtime.clone(),
            self.cors,
            self.door_rules,
            shutdown.clone(),
        );
        // The router is built once; every request is served by a clone of it (shared
        // route table). Each connection is watched so shutdown lets in-flight requests
        // finish.
        let http = HttpConnections::new(self.router, self.http_limits);
        let graceful = GracefulShutdown::new();
        let stop_accepting = shutdown.clone();
        let server = async move {
            loop {
                tokio::select! {
                    _ = stop_accepting.cancelled() => break,
                    next = front_door.accept() => match next {
                        Some((connection, peer)) => {
                            tokio::spawn(http.serve(connection, peer, graceful.watcher()));
                        }
                        None => break,
                    },
                }
            }
            drop(front_door);
            graceful.shutdown().await;
        };
        let grace = self.shutdown_grace;
        let grace_expired = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            _ = server => {}
            _ = grace_expired => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; closing remaining connections");
            }
        }

        background.cancel();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background task ended abnormally");
            }
        }
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
