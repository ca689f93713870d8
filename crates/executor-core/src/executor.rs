//! The executor: a fixed pool of threads, each with its own sandboxed engine, fed from a
//! bounded queue. Scripts run there, never on the async runtime, so a slow script slows
//! only other scripts; when every thread is busy and the queue is full, a run is refused
//! at once ([`RunError::Overloaded`]) instead of waiting without bound. At most one run
//! per worker executes script code at a time ([`crate::cpu_slots`]); the other threads
//! carry runs waiting on PiCloud.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud_shared::AppId;
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Scope};
use tokio::sync::oneshot;

use crate::cpu_slots::CpuSlots;
use crate::error::{CompileError, RunError};
use crate::host::Host;
use crate::sandbox::{self, LogLine, RunState, OUT_OF_MEMORY, TIMED_OUT};
use crate::script::{Compiler, Script};
use crate::value::{from_script, to_script};

/// What to run.
#[derive(Debug, Clone)]
pub enum Run {
    /// The whole script, with `event` and `delivery` in scope (a trigger handler); its
    /// value is the script's last expression.
    Handler {
        /// The event envelope, as a webhook gets it.
        event: serde_json::Value,
        /// Which delivery this is (`#{id, attempt}`), so a handler can drop repeats:
        /// delivery is at least once.
        delivery: serde_json::Value,
    },
    /// The script's function `name`, called with `arg` (an HTTP function's `handle(req)`).
    Call {
        /// The function's name.
        name: String,
        /// Its one argument.
        arg: serde_json::Value,
    },
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// What the run returned (as JSON), or why it did not.
    pub result: Result<serde_json::Value, RunError>,
    /// What it logged.
    pub logs: Vec<LogLine>,
    /// Log lines over the limit, not kept.
    pub dropped_logs: usize,
    /// How long it ran (queueing not included).
    pub took: Duration,
}

/// A job on the queue.
struct Job {
    app: AppId,
    script: Script,
    run: Run,
    kind: &'static str,
    reply: oneshot::Sender<RunOutcome>,
}

/// The pool scripts run on. Dropping every clone stops the workers once the queue is
/// drained.
#[derive(Clone)]
pub struct Executor {
    queue: SyncSender<Job>,
    /// Compiling needs no run state, only the limits.
    compiler: Arc<Compiler>,
    /// Compiled scripts, so a function call does not compile again.
    cache: Arc<Mutex<CompiledCache>>,
}

/// Compiled scripts by (app, name), each with the version it was compiled from.
type CompiledCache = HashMap<(AppId, String), (i64, Script)>;

/// Most compiled scripts kept; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Threads the executor keeps per worker (CPU slot): the rest of a worker's threads
/// carry runs that wait on PiCloud while another run executes.
pub const THREADS_PER_WORKER: usize = 32;

impl Executor {
    /// Starts an executor on which `workers` runs execute script code at once, with a
    /// queue of `queue` runs; scripts reach PiCloud through `host`. It keeps
    /// [`THREADS_PER_WORKER`] threads a worker, so runs waiting on PiCloud (a publish's
    /// commit, an outbound request) let others run meanwhile.
    pub fn start(
        workers: usize,
        queue: usize,
        limits: sandbox::Limits,
        host: Arc<dyn Host>,
    ) -> std::io::Result<Executor> {
        crate::metrics::describe();
        let (sender, receiver) = mpsc::sync_channel(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = workers.max(1);
        let slots = CpuSlots::new(workers);
        for n in 0..workers * THREADS_PER_WORKER {
            let receiver = receiver.clone();
            let host = host.clone();
            let slots = slots.clone();
            std::thread::Builder::new()
                .name(format!("picloud-script-{n}"))
                .spawn(move || work(receiver, &slots, limits, host))?;
        }
        Ok(Executor {
            queue: sender,
            compiler: Arc::new(Compiler::new(&limits)),
            cache: Arc::default(),
        })
    }

    /// Compiles `source` (on the calling thread: parsing is bounded by the source size
    /// limit and the engine's depth limits).
    pub fn compile(&self, source: &str) -> Result<Script, CompileError> {
        self.compiler.compile(source)
    }

    /// Script `name` of `app` at `version`, compiled from `source` unless this version is
    /// cached. Versions only grow, so a newer save anywhere replaces the cached one on
    /// first use here.
    pub fn compiled(
        &self,
        app: &AppId,
        name: &str,
        version: i64,
        source: &str,
    ) -> Result<Script, CompileError> {
        let key = (app.clone(), name.to_owned());
        if let Some((cached, script)) = self.cache.lock().expect("cache lock").get(&key) {
            if *cached == version {
                return Ok(script.clone());
            }
        }
        let script = self.compile(source)?;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (version, script.clone()));
        Ok(script)
    }

    /// Runs `script` of `app` on a worker and waits for the outcome. `kind` labels the
    /// run in metrics (`handler`, `function`, `cron`, `test`).
    pub async fn run(
        &self,
        app: AppId,
        script: Script,
        run: Run,
        kind: &'static str,
    ) -> RunOutcome {
        match self.submit(app, script, run, kind) {
            Ok(pending) => pending.outcome().await,
            Err(refused) => refused,
        }
    }

    /// Queues a run without waiting for it: refused at once (as its outcome) when the
    /// queue is full or the executor has stopped.
    pub fn submit(
        &self,
        app: AppId,
        script: Script,
        run: Run,
        kind: &'static str,
    ) -> Result<Pending, RunOutcome> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            app,
            script,
            run,
            kind,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(Pending { outcome, kind }),
            Err(TrySendError::Full(_)) => Err(refused(kind, RunError::Overloaded)),
            Err(TrySendError::Disconnected(_)) => Err(refused(kind, RunError::Stopped)),
        }
    }
}

/// A queued run.
pub struct Pending {
    outcome: oneshot::Receiver<RunOutcome>,
    kind: &'static str,
}

impl Pending {
    /// Waits for the run's outcome.
    pub async fn outcome(self) -> RunOutcome {
        let kind = self.kind;
        self.outcome
            .await
            .unwrap_or_else(|_| refused(kind, RunError::Stopped))
    }
}

/// The outcome of a run that never started.
fn refused(kind: &'static str, error: RunError) -> RunOutcome {
    crate::metrics::run(kind, error.outcome(), Duration::ZERO);
    RunOutcome {
        result: Err(error),
        logs: Vec::new(),
        dropped_logs: 0,
        took: Duration::ZERO,
    }
}

/// One executor thread: takes jobs until the queue closes, running each in a CPU slot.
fn work(
    queue: Arc<Mutex<Receiver<Job>>>,
    slots: &Arc<CpuSlots>,
    limits: sandbox::Limits,
    host: Arc<dyn Host>,
) {
    lower_priority();
    let engine = sandbox::engine(&limits);
    loop {
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let outcome = slots.holding(|| execute(&engine, &limits, host.clone(), &job));
        crate::metrics::run(
            job.kind,
            match &outcome.result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
            outcome.took,
        );
        let _ = job.reply.send(outcome);
    }
}

/// How much less the scheduler favours script threads than the server's others (a nice
/// value).
pub const SCRIPT_NICENESS: i32 = 10;

/// Lowers this thread's scheduling priority by [`SCRIPT_NICENESS`], so that when scripts
/// keep every core busy (a loop until its timeout) the API, the streams and the
/// dispatcher still get the CPU first. Linux only; elsewhere threads keep the default.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: neither call takes a pointer; on Linux `setpriority` with a thread id
        // changes only that thread.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, SCRIPT_NICENESS)
        };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "script thread keeps its priority");
        }
    }
}

/// Runs one job on this thread.
fn execute(
    engine: &Engine,
    limits: &sandbox::Limits,
    host: Arc<dyn Host>,
    job: &Job,
) -> RunOutcome {
    let started = Instant::now();
    let state = RunState {
        app: job.app.clone(),
        host,
        started,
        deadline: started + limits.timeout,
        logs: Vec::new(),
        max_log_lines: limits.max_log_lines,
        dropped_logs: 0,
        memory_at_start: crate::memory::net_allocated(),
        max_memory: limits.max_memory_bytes as i64,
    };
    let (result, state) = sandbox::with_run(state, || {
        // A panic inside the engine or an SDK function is this run's failure, not the
        // worker's end.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            evaluate(engine, &job.script, &job.run)
        }))
        .unwrap_or_else(|_| {
            Err(RunError::Failed(
                "the script run failed unexpectedly".into(),
            ))
        })
    });
    let result = result.map_err(|error| match error {
        RunError::Timeout(_) => RunError::Timeout(limits.timeout.as_millis() as u64),
        RunError::Failed(text) if text == OUT_OF_MEMORY => RunError::Failed(format!(
            "the script used more than its limit of {} MiB of memory",
            limits.max_memory_bytes / (1024 * 1024)
        )),
        other => other,
    });
    RunOutcome {
        result,
        logs: state.logs,
        dropped_logs: state.dropped_logs,
        took: started.elapsed(),
    }
}

/// Evaluates `run` of `script`, its value as JSON.
fn evaluate(engine: &Engine, script: &Script, run: &Run) -> Result<serde_json::Value, RunError> {
    let mut scope = Scope::new();
    let value = match run {
        Run::Handler { event, delivery } => {
            scope.push_constant_dynamic("event", to_script(event));
            scope.push_constant_dynamic("delivery", to_script(delivery));
            engine.eval_ast_with_scope::<Dynamic>(&mut scope, script.ast())
        }
        Run::Call { name, arg } => {
            if !script.defines(name, 1) {
                return Err(RunError::Failed(format!(
                    "the script has no function `{name}` taking one argument"
                )));
            }
            let options = CallFnOptions::new().eval_ast(true).rewind_scope(true);
            engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                script.ast(),
                name,
                (to_script(arg),),
            )
        }
    };
    let value = value.map_err(|error| run_error(*error))?;
    from_script(&value).map_err(|e| RunError::Failed(format!("the script's result: {e}")))
}

/// A Rhai error as a run error, with the position where there is one.
fn run_error(error: EvalAltResult) -> RunError {
    if let EvalAltResult::ErrorTerminated(token, _) = &error {
        match token.clone().into_string().ok().as_deref() {
            Some(TIMED_OUT) => return RunError::Timeout(0),
            Some(OUT_OF_MEMORY) => return RunError::Failed(OUT_OF_MEMORY.into()),
            _ => {}
        }
    }
    RunError::Failed(error.to_string())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn script_threads_yield_the_cpu_to_the_server() {
        let (own, lowered) = std::thread::spawn(|| {
            // SAFETY: no pointers; 0 = the calling thread.
            let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            lower_priority();
            let lowered = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (own, lowered)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (own + SCRIPT_NICENESS).min(19));
    }
}
