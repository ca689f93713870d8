//! The `picloud` binary as a library, so tests can build and run the real server.
//!
//! - [`config`]: command-line flags and `PICLOUD_*` environment variables.
//! - [`server`]: `build_app` wires storage, authentication and every crate's routes into
//!   one axum application, and runs it with graceful shutdown.
//! - [`front_door`]: the accept loop; plain SSE subscriptions are served straight on the
//!   socket, every other connection goes to the axum application.
//! - [`system_api`]: health, readiness, metrics and the OpenAPI document.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`commands`]: the administrative CLI commands (`apps`, `keys`, `admins`, `migrate`).
//! - [`master_key`]: where the master key sealing stored secrets comes from.
//! - [`dashboard`]: the embedded admin UI at `/_/`; [`stats`]: its overview series.

pub mod commands;
pub mod config;
pub mod dashboard;
pub mod front_door;
pub mod master_key;
pub mod server;
pub mod stats;
pub mod system_api;
pub mod telemetry;
