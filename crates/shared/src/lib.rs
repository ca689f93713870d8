//! The vocabulary every PiCloud crate shares.
//!
//! `manager-core` and `orchestrator-core` both depend on this crate and never on each
//! other; anything they must agree on (validated names, scopes, which route needs which
//! scope, how errors look on the wire) lives here.

pub mod access;
pub mod cluster;
pub mod error;
pub mod events;
pub mod extract;
pub mod ids;
pub mod names;
pub mod realtime;
pub mod scope;
pub mod text;
pub mod time;

pub use error::{ApiError, ErrorCode};
pub use names::{AppId, NameError, TopicName};
pub use scope::{Scope, ScopeSet};
