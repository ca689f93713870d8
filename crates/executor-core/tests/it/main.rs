//! The executor from outside: scripts run through a fake host, hostile scripts end with
//! clear errors, and a worker survives whatever a script does.

mod fake_host;
mod hostile;
mod sdk;

use std::sync::Arc;
use std::time::Duration;

use picloud_executor_core::{Executor, Limits, Run, RunOutcome};
use picloud_shared::AppId;

use fake_host::FakeHost;

// As in the server binary: the memory limit reads this allocator's counts.
#[global_allocator]
static ALLOCATOR: picloud_executor_core::memory::CountingAllocator =
    picloud_executor_core::memory::CountingAllocator::new(std::alloc::System);

/// An executor with `workers` threads, a queue of 4 and a `timeout_ms` time limit, over a
/// fresh fake host.
fn executor(workers: usize, timeout_ms: u64) -> (Executor, Arc<FakeHost>) {
    let host = Arc::new(FakeHost::default());
    let limits = Limits::with_timeout(Duration::from_millis(timeout_ms));
    let executor = Executor::start(workers, 4, limits, host.clone()).expect("threads start");
    (executor, host)
}

fn app() -> AppId {
    AppId::parse("shop").unwrap()
}

/// Compiles `source` and runs it as a trigger handler with `event`.
async fn handle(executor: &Executor, source: &str, event: serde_json::Value) -> RunOutcome {
    let script = executor.compile(source).expect("the script compiles");
    executor
        .run(
            app(),
            script,
            Run::Handler {
                event,
                delivery: serde_json::json!({"id": 1, "attempt": 1}),
            },
            "test",
        )
        .await
}
