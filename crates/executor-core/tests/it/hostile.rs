//! Scripts that try to take a worker down end with a clear error, and the worker runs the
//! next script as usual.

use std::sync::Arc;

use picloud_executor_core::executor::THREADS_PER_WORKER;
use picloud_executor_core::{Executor, Pending, Run, RunError, Script};
use serde_json::json;

use crate::fake_host::FakeHost;
use crate::{app, executor, handle};

/// After a hostile run, the same (single) worker still answers.
async fn still_works(executor: &picloud_executor_core::Executor) {
    let outcome = handle(executor, "40 + 2", json!(null)).await;
    assert_eq!(outcome.result, Ok(json!(42)));
}

fn failure(result: &Result<serde_json::Value, RunError>) -> String {
    match result {
        Err(RunError::Failed(text)) => text.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_loop_ends_at_the_time_limit() {
    let (executor, _) = executor(1, 200);
    let outcome = handle(&executor, "let n = 0; loop { n += 1; }", json!(null)).await;
    assert_eq!(outcome.result, Err(RunError::Timeout(200)));
    assert!(outcome.took.as_millis() >= 200, "{:?}", outcome.took);
    still_works(&executor).await;
}

#[tokio::test]
async fn a_string_doubled_without_end_hits_the_size_limit() {
    let (executor, _) = executor(1, 5_000);
    let outcome = handle(&executor, r#"let s = "x"; loop { s += s; }"#, json!(null)).await;
    let text = failure(&outcome.result);
    assert!(text.contains("too large"), "{text}");
    still_works(&executor).await;
}

#[tokio::test]
async fn growing_arrays_and_maps_hit_their_limits() {
    // The standard size limits: growing to them stays well inside the time (even in a
    // debug build).
    let (executor, _) = executor(1, 5_000);
    let array = handle(&executor, "let a = []; loop { a.push(1); }", json!(null)).await;
    assert!(failure(&array.result).contains("too large"));
    let map = handle(
        &executor,
        "let m = #{}; for i in 0..100000 { m[`k${i}`] = i; } m.len()",
        json!(null),
    )
    .await;
    assert!(failure(&map.result).contains("too large"));
    still_works(&executor).await;
}

#[tokio::test]
async fn values_kept_without_end_hit_the_memory_limit() {
    // Values stored into a map by index are measured only when the map is read: the
    // allocation count stops this one.
    let (executor, _) = executor(1, 10_000);
    let outcome = handle(
        &executor,
        r#"let s = "x"; s.pad(1000000, 'x'); let m = #{}; let i = 0;
           loop { m[`${i}`] = s + i; i += 1; }"#,
        json!(null),
    )
    .await;
    let text = failure(&outcome.result);
    assert!(
        text.contains("more than its limit of 64 MiB of memory"),
        "{text}"
    );
    still_works(&executor).await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow_not_a_crash() {
    let (executor, _) = executor(1, 5_000);
    let outcome = handle(&executor, "fn f(x) { f(x + 1) } f(0)", json!(null)).await;
    let text = failure(&outcome.result);
    assert!(text.to_lowercase().contains("stack overflow"), "{text}");
    still_works(&executor).await;
}

#[tokio::test]
async fn there_is_no_import_and_no_eval() {
    let (executor, _) = executor(1, 1_000);
    let import = executor.compile(r#"import "/etc/passwd" as secrets; 1"#);
    assert!(import.is_err(), "import compiled");
    let eval = executor.compile(r#"eval("40 + 2")"#);
    assert!(eval.is_err(), "eval compiled");
}

#[tokio::test]
async fn a_panic_in_the_host_is_a_failed_run_and_the_worker_lives() {
    let (executor, _) = executor(1, 1_000);
    let outcome = handle(
        &executor,
        r#"pubsub::publish("panic", "t", 1)"#,
        json!(null),
    )
    .await;
    assert_eq!(
        outcome.result,
        Err(RunError::Failed(
            "the script run failed unexpectedly".into()
        ))
    );
    still_works(&executor).await;
}

/// A script that publishes once: it waits in the host while the host holds publishes.
fn publishing(executor: &Executor) -> Script {
    executor
        .compile(r#"pubsub::publish("orders", "t", 1)"#)
        .unwrap()
}

/// Queues `script` as a handler run; panics when it is refused.
fn submit(executor: &Executor, script: &Script) -> Pending {
    let run = Run::Handler {
        event: json!(null),
        delivery: json!(null),
    };
    executor
        .submit(app(), script.clone(), run, "test")
        .unwrap_or_else(|refused| panic!("refused: {:?}", refused.result))
}

/// Waits until `n` publishes have entered the host.
async fn entered(host: &Arc<FakeHost>, n: usize) {
    let host = host.clone();
    tokio::task::spawn_blocking(move || host.wait_entered(n))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let (executor, host) = executor(1, 10_000);
    host.hold_publishes();
    let script = publishing(&executor);
    // Every thread's run held in the host, four waiting in the queue: the next is
    // refused.
    let mut busy = Vec::new();
    for held in 1..=THREADS_PER_WORKER {
        busy.push(submit(&executor, &script));
        entered(&host, held).await;
    }
    let queued: Vec<_> = (0..4).map(|_| submit(&executor, &script)).collect();
    let refused = executor
        .run(
            app(),
            script.clone(),
            Run::Handler {
                event: json!(null),
                delivery: json!(null),
            },
            "test",
        )
        .await;
    assert_eq!(refused.result, Err(RunError::Overloaded));
    host.release();
    for queued in busy.into_iter().chain(queued) {
        assert!(queued.outcome().await.result.is_ok());
    }
}

#[tokio::test]
async fn the_run_log_keeps_a_bounded_number_of_lines() {
    let (executor, _) = executor(1, 5_000);
    let outcome = handle(
        &executor,
        r#"for i in 0..1000 { print(`line ${i}`); } log::warn("x".pad(10000, 'x'));"#,
        json!(null),
    )
    .await;
    assert_eq!(outcome.logs.len(), 100);
    assert_eq!(outcome.logs[0].message, "line 0");
    assert_eq!(outcome.dropped_logs, 901);
}

/// A run waiting on the host gives its worker to the next run: with one worker, more
/// publishes than one are in the host at once (without it `wait_entered` never returns
/// and the test times out), and a script that only computes still runs meanwhile.
#[tokio::test]
async fn runs_waiting_on_the_host_let_others_run() {
    let (executor, host) = executor(1, 10_000);
    host.hold_publishes();
    let script = publishing(&executor);
    let held: Vec<_> = (0..3).map(|_| submit(&executor, &script)).collect();
    entered(&host, 3).await;
    still_works(&executor).await;
    host.release();
    for run in held {
        assert!(run.outcome().await.result.is_ok());
    }
}
