//! The `picloud` binary as a library, so tests can build and run the real server.
//!
//! - [`config`]: command-line flags and `PICLOUD_*` environment variables.
//! - [`server`]: `build_app` wires storage, authentication and every crate's routes into
//!   one axum application, and runs it with graceful shutdown.
//! - [`front_door`]: the accept loop; plain SSE subscriptions are served straight on the
//!   socket, every other connection goes to the axum application.
//! - [`connection_limits`], [`http_connection`], [`body_timeout`], [`fd_limit`]: caps
//!   on open connections, the HTTP/1.1 serving with its timeouts, the request body
//!   deadline and the open-file limit.
//! - [`system_api`]: health, readiness, metrics and the OpenAPI document;
//!   [`api_document`]: the document's statuses and constraints generated from the rules.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`script_host`]: what scripts reach PiCloud through (publishing, tokens, outbound
//!   HTTP), wired from the control plane and the realtime layer.
//! - [`commands`]: the administrative CLI commands (`apps`, `keys`, `admins`, `migrate`).
//! - [`master_key`]: where the master key sealing stored secrets comes from.
//! - [`dashboard`]: the embedded admin UI at `/_/`; [`stats`]: its overview series.
//! - [`body_drain`]: reads what early rejections leave of a request body, so the
//!   connection stays usable.

pub mod api_document;
pub mod body_drain;
pub mod body_timeout;
pub mod commands;
pub mod config;
pub mod connection_limits;
pub mod dashboard;
pub mod fd_limit;
pub mod front_door;
pub mod http_connection;
pub mod master_key;
pub mod script_host;
pub mod server;
pub mod stats;
pub mod system_api;
pub mod telemetry;
