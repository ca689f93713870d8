//! The dispatcher: delivers outbox rows to their triggers' handlers (webhooks and
//! scripts).
//!
//! One loop per node claims due rows in batches under a lease (counting the attempt at
//! claim time), delivers them concurrently up to a worker limit, and records each outcome:
//! delivered; retry after exponential backoff with jitter (or the receiver's
//! `Retry-After`); or, with attempts exhausted, a dead letter that fans out to the app's
//! `dead_letter` triggers in the same transaction. It wakes at once when a publish
//! commits and polls as a fallback. Delivery is at-least-once: a row whose lease expires
//! (its node died) is claimed again, and `webhook-id` lets receivers drop duplicates.
//!
//! - `claim_loop`: the loop that claims rows and starts deliveries.
//! - `deliver`: one delivery, from claimed row to verdict.
//! - `recorder`: commits outcomes in groups and counts them.
//! - `scan_floor`: where scans of the pending rows start.
//! - [`circuit`]: each trigger's circuit breaker.
//! - [`pacing`]: per-trigger windows and rates, and the apps' fair shares.
//! - [`outbox`]: the queries.
//! - [`webhook`]: one signed attempt and its classification.
//! - [`script_handler`]: one attempt of a script handler.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`ssrf`]: which addresses webhooks may reach.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::db::Db;

pub mod circuit;
mod claim_loop;
mod deliver;
#[cfg(test)]
mod fixtures;
pub mod outbox;
pub mod pacing;
mod recorder;
mod scan_floor;
pub mod script_handler;
pub mod signing;
pub mod ssrf;
pub mod webhook;

pub use circuit::CircuitPolicy;
use outbox::Finished;
pub use script_handler::ScriptHandlers;
use ssrf::{webhook_client, AddressPolicy};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's name in `leased_by`.
    pub node_id: String,
    /// Most deliveries in flight at once.
    pub workers: usize,
    /// Most rows claimed per round trip.
    pub batch_size: usize,
    /// How long a claim is exclusive; must exceed the request timeout.
    pub lease: Duration,
    /// Longest sleep between claims when not woken.
    pub poll_interval: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Factor on every retry delay (tests run with a small one).
    pub backoff_scale: f64,
    /// Upper bound on a receiver's `Retry-After`.
    pub max_retry_after: Duration,
    /// How long in-flight deliveries may finish at shutdown.
    pub shutdown_grace: Duration,
    /// Which addresses webhooks may reach.
    pub address_policy: Arc<AddressPolicy>,
    /// When a trigger's circuit opens and how long it stays open before a probe.
    pub circuit: CircuitPolicy,
}

/// A test's choice of rows (feature `testing`).
#[cfg(feature = "testing")]
pub type RowPredicate = Arc<dyn Fn(&outbox::ClaimedRow) -> bool + Send + Sync>;

/// Faults a test can inject into the dispatcher, to show what it does when code that
/// should not fail does (feature `testing` only).
#[cfg(feature = "testing")]
#[derive(Clone, Default)]
pub struct Faults {
    /// A delivery attempt of a row this returns `true` for panics.
    pub panic_if: Option<RowPredicate>,
    /// This many of the next due-row claims fail (after the probe claim ran).
    pub failing_due_claims: Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(feature = "testing")]
impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("panic_if", &self.panic_if.is_some())
            .field("failing_due_claims", &self.failing_due_claims)
            .finish()
    }
}

/// Most rows claimed per round trip.
pub const CLAIM_BATCH: usize = 128;

/// The longest `Retry-After` a receiver is granted.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl DispatcherConfig {
    /// Settings for this crate's tests: quick polls and tiny backoffs, webhooks to
    /// loopback allowed. The server's settings come from its flags
    /// (`picloud serve --help`), where every default is written.
    #[cfg(feature = "testing")]
    pub fn for_tests() -> Self {
        Self {
            node_id: picloud_shared::ids::random_id("node"),
            workers: 16,
            batch_size: CLAIM_BATCH,
            lease: Duration::from_secs(90),
            poll_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            backoff_scale: 0.001,
            max_retry_after: MAX_RETRY_AFTER,
            shutdown_grace: Duration::from_secs(5),
            address_policy: Arc::new(AddressPolicy::new(true, Vec::new())),
            circuit: CircuitPolicy::STANDARD,
        }
    }
}

/// The delivery loop of one node.
pub struct Dispatcher {
    db: Db,
    config: DispatcherConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
    finished: mpsc::UnboundedSender<Finished>,
    recorder: std::sync::Mutex<Option<(mpsc::UnboundedReceiver<Finished>, CancellationToken)>>,
    /// Runs script handlers; without it (a dispatcher built for a test) their attempts
    /// fail.
    scripts: Option<ScriptHandlers>,
    /// Faults tests inject (feature `testing`).
    #[cfg(feature = "testing")]
    faults: Faults,
}

impl Dispatcher {
    /// A dispatcher on `db`, woken through `wake` when publishes commit outbox rows.
    pub fn new(db: Db, config: DispatcherConfig, wake: Arc<Notify>) -> Self {
        let client = webhook_client(config.address_policy.clone(), config.request_timeout);
        let (finished, queue) = mpsc::unbounded_channel();
        Self {
            db,
            config,
            client,
            wake,
            finished,
            recorder: std::sync::Mutex::new(Some((queue, CancellationToken::new()))),
            scripts: None,
            #[cfg(feature = "testing")]
            faults: Faults::default(),
        }
    }

    /// This dispatcher running script handlers with `scripts`.
    pub fn with_scripts(self, scripts: ScriptHandlers) -> Self {
        Self {
            scripts: Some(scripts),
            ..self
        }
    }

    /// This dispatcher with `faults` injected (feature `testing` only).
    #[cfg(feature = "testing")]
    pub fn with_faults(self, faults: Faults) -> Self {
        Self { faults, ..self }
    }
}
