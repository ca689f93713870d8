//! Test runs (`POST …/scripts/{script}/test`), as the dashboard's editor makes them: the
//! saved script or an unsaved source, run as a function or a handler, answering with its
//! value, error and log lines, and recorded in the run log as kind `test`.

use crate::common::{code, spawn_app, TestApp};
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

const SCRIPT: &str = "/v1/apps/shop/scripts/greet";

async fn test_run(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::POST,
        &format!("{SCRIPT}/test"),
        Some(key),
        Some(body),
    )
    .await
}

backend_test!(a_test_runs_the_saved_function_with_the_request_given);
async fn a_test_runs_the_saved_function_with_the_request_given(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["scripts:manage"]).await;
    let source = r#"
fn handle(req) {
    log::info(`${req.method} n=${req.json.n} q=${req.query.lang}`);
    #{ status: 201, body: #{ hello: req.headers["x-user"], twice: req.json.n * 2 } }
}
"#;
    let (status, saved) = app
        .call(
            Method::PUT,
            SCRIPT,
            Some(&key),
            Some(json!({"source": source})),
        )
        .await;
    assert_eq!(status, 200, "{saved}");

    let (status, ran) = test_run(
        &app,
        &key,
        json!({"kind": "function", "request": {
            "method": "post",
            "query": {"lang": "fr"},
            "headers": {"content-type": "application/json", "x-user": "ada"},
            "body": "{\"n\": 21}",
        }}),
    )
    .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["outcome"], "ok", "{ran}");
    assert_eq!(
        ran["result"],
        json!({"status": 201, "body": {"hello": "ada", "twice": 42}})
    );
    assert_eq!(ran["error"], Value::Null);
    let logs: Vec<(&str, &str)> = ran["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["level"].as_str().unwrap(), l["message"].as_str().unwrap()))
        .collect();
    assert_eq!(logs, vec![("info", "POST n=21 q=fr")]);
}

backend_test!(an_unsaved_handler_source_runs_for_real_and_is_not_saved);
async fn an_unsaved_handler_source_runs_for_real_and_is_not_saved(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::PUT,
            SCRIPT,
            Some(&key),
            Some(json!({"source": "fn handle(req) { 1 }"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let draft = r#"
let seq = pubsub::publish("greetings", "greeted", #{ who: event.data.who });
`${event.data.who} greeted as ${seq}, delivery ${delivery.id}/${delivery.attempt}`
"#;
    let (status, ran) = test_run(
        &app,
        &key,
        json!({"kind": "handler", "source": draft,
               "event": {"topic": "orders", "data": {"who": "ada"}}}),
    )
    .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["outcome"], "ok", "{ran}");
    assert_eq!(ran["result"], "ada greeted as 1, delivery 0/1");

    // What the draft published is published...
    let (status, events) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/greetings/events",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(
        events["events"][0]["data"],
        json!({"who": "ada"}),
        "{events}"
    );
    // ...but the draft itself is not saved.
    let (_, current) = app.call(Method::GET, SCRIPT, Some(&key), None).await;
    assert_eq!(
        (&current["version"], &current["source"]),
        (&json!(1), &json!("fn handle(req) { 1 }"))
    );

    // Both kinds of test land in the run log, the draft as version 0.
    let runs = app
        .script_runs_once(&key, "greet", |runs| !runs.is_empty())
        .await;
    assert_eq!(
        (&runs[0]["kind"], &runs[0]["version"], &runs[0]["outcome"]),
        (&json!("test"), &json!(0), &json!("ok")),
        "{runs:?}"
    );
}

backend_test!(a_failing_test_run_answers_with_its_error_and_logs);
async fn a_failing_test_run_answers_with_its_error_and_logs(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["scripts:manage"]).await;

    // No saved script and no source: nothing to run.
    let (status, body) = test_run(&app, &key, json!({"kind": "function"})).await;
    assert_eq!((status, code(&body)), (404, "script_not_found"), "{body}");

    // A source that does not compile is refused with its position, as a save is.
    let (status, body) = test_run(
        &app,
        &key,
        json!({"kind": "function", "source": "fn handle(req) {\n  let = 1;\n}"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        (code(&body), &body["error"]["line"]),
        ("script_compile_error", &json!(2)),
        "{body}"
    );

    // A throw is the run's outcome, not the request's: 200 with the error and the logs.
    let throwing = r#"log::warn("about to fail"); throw "out of stock";"#;
    let (status, ran) = test_run(
        &app,
        &key,
        json!({"kind": "handler", "source": throwing, "event": {}}),
    )
    .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["outcome"], "error", "{ran}");
    assert_eq!(ran["result"], Value::Null);
    assert!(
        ran["error"].as_str().unwrap().contains("out of stock"),
        "{ran}"
    );
    assert_eq!(ran["logs"][0]["message"], "about to fail", "{ran}");

    // Bad requests are 400s that say what is wrong.
    for bad in [
        json!({"kind": "function", "request": {"method": "DELETE"}}),
        json!({"kind": "function", "request": {"headers": {"bad header": "x"}}}),
        json!({"kind": "handler"}),
        json!({"kind": "cron", "event": {}}),
        json!({"kind": "handler", "event": {}, "extra": 1}),
    ] {
        let (status, body) = test_run(&app, &key, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
