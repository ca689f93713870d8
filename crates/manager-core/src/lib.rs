//! PiCloud's durable core and control plane.
//!
//! - [`db`]: the storage interface, one API over SQLite and PostgreSQL.
//! - [`apps`], [`api_keys`], [`settings`], [`topics`]: the records and their
//!   queries.
//! - [`publish`]: the group-committing writer that stores events with their outbox rows.
//! - [`event_log`]: reading a topic's log.
//! - [`cluster_feed`]: realtime across PostgreSQL nodes (NOTIFY on commit, LISTEN and
//!   re-broadcast).
//! - [`realtime_store`]: the storage the realtime layer reads, behind the
//!   [`picloud_shared::realtime::RealtimeStore`] trait.
//! - [`retention`]: pruning logs to their retention.
//! - [`cron`]: the ticker that fires cron triggers once per tick across nodes.
//! - [`scripts`]: app scripts and their versions, [`script_cache`] their current
//!   versions in memory; [`run_log`]: the last runs of each app's
//!   scripts, recorded off the request path.
//! - [`dispatcher`]: delivering outbox rows to signed webhooks; [`deliveries`]: the
//!   deliveries and dead letters it leaves, for the API.
//! - [`sources`]: outbox sources in apps' own PostgreSQL databases and their relays,
//!   which publish what the apps' transactions committed.
//! - [`triggers`]: topic patterns, webhook handlers, retry policies and trigger storage.
//! - [`admins`], [`admin_sessions`]: dashboard admins (argon2id passwords, lockout) and
//!   their cookie sessions with CSRF tokens.
//! - [`stats`]: the counters the dashboard's overview charts sample.
//! - [`auth`]: turning an `Authorization` header into a [`picloud_shared::access::Principal`]
//!   and enforcing the route access table.
//! - [`http`]: the admin and app routes this crate serves.
//! - [`secret_box`]: the master key and the sealed format of secrets at rest;
//!   [`secrets_at_rest`]: unlocking a database with the key, sealing plaintext rows and
//!   rotating the key; [`private_files`]: the data dir and database files kept 0700/0600.
//!
//! This crate never depends on `orchestrator-core`; the two meet through traits in
//! `picloud-shared`.

pub mod admin_sessions;
pub mod admins;
pub mod api_keys;
pub mod apps;
pub mod auth;
pub mod cluster_feed;
pub mod cron;
pub mod db;
pub mod deliveries;
pub mod dispatcher;
pub mod error;
pub mod event_log;
pub mod http;
pub mod metrics;
mod migrations;
pub mod password_gate;
pub mod private_files;
pub mod publish;
pub mod realtime_store;
pub mod retention;
pub mod run_log;
pub mod script_cache;
pub mod scripts;
pub mod secret_box;
pub mod secrets_at_rest;
pub mod settings;
pub mod sign_in_throttle;
pub mod sources;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod triggers;
pub mod unknown_admins;

pub use db::Db;
pub use error::Error;
