//! PiCloud scripts: app code that runs inside PiCloud.
//!
//! A script is [Rhai](https://rhai.rs) source an app saves; it runs as a trigger
//! handler, an HTTP function or on a schedule, and reaches PiCloud through SDK modules
//! (`pubsub::publish`, `pubsub::subscriber_token`, `http::request`, …). This crate owns
//! what a script can do and what it may cost, and nothing about where scripts are stored
//! or how they are triggered:
//!
//! - [`sandbox`]: the engine every run uses: no file, process or environment access, and
//!   [`Limits`] on operations, call depth, value sizes and wall-clock time.
//! - [`script`]: compiling source into a [`Script`], with errors that name line and
//!   column.
//! - [`executor`]: the [`Executor`], a bounded pool of threads scripts run on, so a script
//!   never blocks the async runtime that serves streams and the API.
//! - [`cpu_slots`]: how many runs execute script code at once; a run waiting on PiCloud
//!   gives its slot to another.
//! - [`host`]: the [`Host`] trait, through which the SDK reaches the rest of PiCloud
//!   (publishing, minting tokens, outbound HTTP); the server implements it.
//! - [`sdk`]: the modules a script calls.
//! - [`value`]: JSON values in and out of scripts.
//! - [`memory`]: the counting allocator the memory limit reads.
//!
//! Dependencies point inward: this crate knows `picloud-shared` only; the server wires a
//! [`Host`] that calls the control plane and the realtime layer.

pub mod cpu_slots;
pub mod error;
pub mod executor;
pub mod host;
pub mod memory;
pub mod metrics;
pub mod sandbox;
pub mod script;
pub mod sdk;
pub mod value;

pub use error::{CompileError, RunError};
pub use executor::{Executor, Pending, Run, RunOutcome};
pub use host::{Host, HttpRequest, HttpResponse, ScriptEvent};
pub use sandbox::Limits;
pub use script::{Compiler, Script};
