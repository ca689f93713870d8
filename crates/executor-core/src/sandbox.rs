//! The engine every script runs in, and the state of the run in progress on this thread.
//!
//! Rhai has no file, process or environment access unless the embedder adds it; this
//! engine also refuses `import` and `eval` at compile time (and has no module resolver
//! to fall back on), sends
//! `print` and `debug` to the run log, and stops a run at the first limit it reaches.
//! Wall-clock time is checked from the engine's progress callback, so a busy loop ends
//! on time; waits inside host calls are bounded by the same deadline.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_shared::AppId;
use rhai::{Dynamic, Engine, OptimizationLevel};

use crate::cpu_slots;
use crate::host::Host;
use crate::memory;
use crate::sdk;

/// What one run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time per run.
    pub timeout: Duration,
    /// Engine operations per run (roughly: expression nodes evaluated).
    pub max_operations: u64,
    /// Depth of nested function calls.
    pub max_call_depth: usize,
    /// Bytes of string data in one value (nested values counted together).
    pub max_string_bytes: usize,
    /// Items in one array (nested arrays counted together).
    pub max_array_items: usize,
    /// Entries in one map (nested maps counted together).
    pub max_map_entries: usize,
    /// Log lines kept per run; later ones are counted, not kept.
    pub max_log_lines: usize,
    /// Bytes a run may allocate (net of what it frees), when the binary counts
    /// allocations ([`crate::memory`]).
    pub max_memory_bytes: usize,
}

impl Limits {
    /// Limits with `timeout` and the standard sizes: enough for any handler that works
    /// on events and requests, small enough that a run cannot take a server down.
    pub fn with_timeout(timeout: Duration) -> Self {
        Limits {
            timeout,
            max_operations: 50_000_000,
            max_call_depth: 32,
            max_string_bytes: 4 * 1024 * 1024,
            // Rhai re-measures a whole array or map on every change, so growing one to
            // n items costs n² / 2: these keep that well under the time limit.
            max_array_items: 10_000,
            max_map_entries: 10_000,
            max_log_lines: 100,
            max_memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Longest log line kept, in bytes.
const MAX_LOG_LINE: usize = 2048;

/// Most variables in scope at once: with the value size limits, this bounds a run's
/// memory.
const MAX_VARIABLES: usize = 256;

/// Builds the sandboxed engine with the SDK modules.
pub fn engine(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_optimization_level(OptimizationLevel::Simple)
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(limits.max_string_bytes)
        .set_max_array_size(limits.max_array_items)
        .set_max_map_size(limits.max_map_entries)
        .set_max_variables(MAX_VARIABLES)
        .set_max_functions(256)
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .disable_symbol("eval")
        .disable_symbol("import")
        .on_print(|text| log_line(LogLevel::Info, text))
        .on_debug(|text, _, _| log_line(LogLevel::Debug, text))
        .on_progress(|operations| {
            CURRENT.with(|current| {
                let current = current.borrow();
                let run = current.as_ref()?;
                if memory::net_allocated() - run.memory_at_start > run.max_memory {
                    return Some(Dynamic::from(OUT_OF_MEMORY));
                }
                // The clock is read every 1024 operations: microseconds apart.
                if operations % 1024 == 0 && Instant::now() >= run.deadline {
                    return Some(Dynamic::from(TIMED_OUT));
                }
                None
            })
        });
    sdk::register(&mut engine);
    engine
}

/// The value the progress callback ends a run with when its time is up.
pub(crate) const TIMED_OUT: &str = "picloud:timeout";
/// The value the progress callback ends a run with when it allocated too much.
pub(crate) const OUT_OF_MEMORY: &str = "picloud:memory";

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `debug(…)`.
    Debug,
    /// `print(…)` and `log::info(…)`.
    Info,
    /// `log::warn(…)`.
    Warn,
    /// `log::error(…)`.
    Error,
}

impl LogLevel {
    /// Its name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One line a run logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// How important it is.
    pub level: LogLevel,
    /// What it says (cut at 2 KiB).
    pub message: String,
}

/// The run in progress on this thread: what the SDK functions act for.
pub(crate) struct RunState {
    pub app: AppId,
    pub host: Arc<dyn Host>,
    pub started: Instant,
    pub deadline: Instant,
    pub logs: Vec<LogLine>,
    pub max_log_lines: usize,
    pub dropped_logs: usize,
    /// [`memory::net_allocated`] when the run began.
    pub memory_at_start: i64,
    pub max_memory: i64,
}

thread_local! {
    static CURRENT: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// Runs `f` with `state` as this thread's current run; returns `f`'s result and the
/// state as the run left it.
pub(crate) fn with_run<T>(state: RunState, f: impl FnOnce() -> T) -> (T, RunState) {
    CURRENT.with(|current| *current.borrow_mut() = Some(state));
    let result = f();
    let state = CURRENT
        .with(|current| current.borrow_mut().take())
        .expect("the run state is set for the whole run");
    (result, state)
}

/// Calls the host for the current run: `call` gets the run's app, the host and the
/// run's deadline, and waits without holding a CPU slot (see [`cpu_slots`]). Its error,
/// or the lack of a run with an app (e.g. at compile time), is thrown in the script.
pub(crate) fn call_host<T>(
    call: impl FnOnce(&AppId, &dyn Host, Instant) -> Result<T, String>,
) -> Result<T, String> {
    let (app, host, deadline, memory_at_start) =
        CURRENT.with(|current| match &*current.borrow() {
            Some(run) => Ok((
                run.app.clone(),
                run.host.clone(),
                run.deadline,
                run.memory_at_start,
            )),
            None => Err(String::from(
                "this function needs an app context: call it while a script runs",
            )),
        })?;
    let held = memory::net_allocated() - memory_at_start;
    cpu_slots::waiting(held, || call(&app, &*host, deadline))
}

/// Adds a line to the current run's log (dropped when no run is current).
pub(crate) fn log_line(level: LogLevel, text: &str) {
    CURRENT.with(|current| {
        if let Some(run) = &mut *current.borrow_mut() {
            if run.logs.len() >= run.max_log_lines {
                run.dropped_logs += 1;
                return;
            }
            let mut message = text.to_owned();
            if picloud_shared::text::cut_to(&mut message, MAX_LOG_LINE) {
                message.push('…');
            }
            run.logs.push(LogLine {
                at_ms: run.started.elapsed().as_millis() as u64,
                level,
                message,
            });
        }
    });
}
