//! Every SDK function with good and bad arguments, through the fake host.

use picloud_executor_core::sandbox::LogLevel;
use picloud_executor_core::{Run, RunError};
use serde_json::json;

use crate::{app, executor, handle};

fn thrown(result: &Result<serde_json::Value, RunError>) -> String {
    match result {
        Err(RunError::Failed(text)) => text.clone(),
        other => panic!("expected a thrown error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_sees_its_event_and_returns_json() {
    let (executor, _) = executor(1, 1_000);
    let event = json!({"topic": "orders", "type": "created", "data": {"id": 7, "tags": ["a"]}});
    let outcome = handle(
        &executor,
        r#"#{ id: event.data.id * 2, first: event.data.tags[0], topic: event.topic }"#,
        event,
    )
    .await;
    assert_eq!(
        outcome.result,
        Ok(json!({"id": 14, "first": "a", "topic": "orders"}))
    );
}

#[tokio::test]
async fn a_function_is_called_with_its_argument() {
    let (executor, _) = executor(1, 1_000);
    let script = executor
        .compile("fn handle(req) { #{ status: 200, body: `hi ${req.query.name}` } }")
        .unwrap();
    let run = Run::Call {
        name: "handle".into(),
        arg: json!({"query": {"name": "ann"}}),
    };
    let outcome = executor.run(app(), script.clone(), run, "function").await;
    assert_eq!(outcome.result, Ok(json!({"status": 200, "body": "hi ann"})));
    let missing = Run::Call {
        name: "other".into(),
        arg: json!(null),
    };
    let outcome = executor.run(app(), script, missing, "function").await;
    assert!(thrown(&outcome.result).contains("no function `other`"));
}

#[tokio::test]
async fn publish_goes_to_the_host_for_the_scripts_app() {
    let (executor, host) = executor(1, 1_000);
    let outcome = handle(
        &executor,
        r#"
        let one = pubsub::publish("orders", "created", #{ id: 1 });
        let two = pubsub::publish("orders", "paid", [1, 2], "key-2");
        let batch = pubsub::publish_batch([
            #{ topic: "orders", type: "shipped", data: () },
            #{ topic: "audit", type: "note", data: "x" },
        ], "k");
        [one, two] + batch
        "#,
        json!(null),
    )
    .await;
    assert_eq!(outcome.result, Ok(json!([1, 2, 3, 4])));
    let published = host.published.lock().unwrap();
    let seen: Vec<_> = published
        .iter()
        .map(|(app, e, key)| {
            (
                app.as_str(),
                e.topic.as_str(),
                e.event_type.as_str(),
                e.data.clone(),
                key.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("shop", "orders", "created", json!({"id": 1}), None),
            ("shop", "orders", "paid", json!([1, 2]), Some("key-2")),
            ("shop", "orders", "shipped", json!(null), Some("k")),
            ("shop", "audit", "note", json!("x"), Some("k")),
        ]
    );
}

#[tokio::test]
async fn bad_publish_arguments_throw_with_the_reason() {
    let (executor, host) = executor(1, 1_000);
    let cases = [
        (
            r#"pubsub::publish("no such", "t", 1)"#,
            "'no such' is not a topic name",
        ),
        (r#"pubsub::publish_batch([1])"#, "event 0 is not a map"),
        (
            r#"pubsub::publish_batch([#{ topic: "a" }])"#,
            "needs `topic` and `type`",
        ),
        (
            r#"pubsub::publish_batch([#{ topic: 1, type: "t" }])"#,
            "`topic` is not a string",
        ),
        (
            r#"pubsub::publish("a", "t", || 1)"#,
            "cannot be turned into JSON",
        ),
    ];
    for (source, expected) in cases {
        let outcome = handle(&executor, source, json!(null)).await;
        let text = thrown(&outcome.result);
        assert!(text.contains(expected), "{source}: {text}");
    }
    assert!(host.published.lock().unwrap().is_empty());
    // A script may catch what the SDK throws.
    let caught = handle(
        &executor,
        r#"let seen = ""; try { pubsub::publish("no such", "t", 1) } catch (e) { seen = `caught: ${e}`; } seen"#,
        json!(null),
    )
    .await;
    assert_eq!(
        caught.result,
        Ok(json!(
            "caught: pubsub::publish: 'no such' is not a topic name"
        ))
    );
}

#[tokio::test]
async fn subscriber_token_passes_its_arguments_and_throws_on_refusal() {
    let (executor, host) = executor(1, 1_000);
    let outcome = handle(
        &executor,
        r#"pubsub::subscriber_token(["chat"], 600) + " " + pubsub::subscriber_token(["chat", "news"], 60, "user-1")"#,
        json!(null),
    )
    .await;
    assert_eq!(outcome.result, Ok(json!("token-1 token-1")));
    assert_eq!(
        *host.tokens.lock().unwrap(),
        vec![
            (app(), vec!["chat".to_owned()], Some(600), None),
            (
                app(),
                vec!["chat".to_owned(), "news".to_owned()],
                Some(60),
                Some("user-1".to_owned())
            ),
        ]
    );
    for (source, expected) in [
        (
            r#"pubsub::subscriber_token(["internal"], 60)"#,
            "not external",
        ),
        (r#"pubsub::subscriber_token([1], 60)"#, "array of strings"),
        (
            r#"pubsub::subscriber_token(["chat"], 0)"#,
            "must be positive",
        ),
    ] {
        let outcome = handle(&executor, source, json!(null)).await;
        assert!(thrown(&outcome.result).contains(expected), "{source}");
    }
}

#[tokio::test]
async fn compiling_never_calls_the_host() {
    let (executor, host) = executor(1, 1_000);
    executor
        .compile(r#"let t = pubsub::subscriber_token(["chat"], 600); pubsub::publish("a", "b", 1); time::now_ms()"#)
        .unwrap();
    assert!(host.tokens.lock().unwrap().is_empty());
    assert!(host.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn http_request_goes_through_the_host() {
    let (executor, host) = executor(1, 1_000);
    let outcome = handle(
        &executor,
        r#"let r = http::request(#{ method: "post", url: "https://example.test/x",
               headers: #{ "x-a": "1" }, body: "hello" });
           [r.status, r.headers["content-type"], r.body]"#,
        json!(null),
    )
    .await;
    assert_eq!(
        outcome.result,
        Ok(json!([201, "text/plain", "POST https://example.test/x"]))
    );
    let sent = host.requests.lock().unwrap()[0].clone();
    assert_eq!(
        (sent.headers["x-a"].as_str(), sent.body.as_deref()),
        ("1", Some("hello"))
    );
    for (source, expected) in [
        (
            r#"http::request(#{ url: "http://10.0.0.1/" })"#,
            "not allowed",
        ),
        (r#"http::request(#{ method: "GET" })"#, "`url` is required"),
        (
            r#"http::request(#{ url: "http://a.test/", headers: 1 })"#,
            "`headers` is not a map",
        ),
    ] {
        let outcome = handle(&executor, source, json!(null)).await;
        assert!(thrown(&outcome.result).contains(expected), "{source}");
    }
}

#[tokio::test]
async fn json_crypto_time_and_log() {
    let (executor, _) = executor(1, 1_000);
    let outcome = handle(
        &executor,
        r#"
        let parsed = json::parse(`{"a":[1,2,{"b":null}]}`);
        log::info("parsed");
        log::error(42);
        #{
            round: json::stringify(parsed),
            mac: crypto::hmac_sha256("Jefe", "what do ya want for nothing?"),
            recent: time::now_ms() > 1700000000000,
        }
        "#,
        json!(null),
    )
    .await;
    assert_eq!(
        outcome.result,
        Ok(json!({
            "round": r#"{"a":[1,2,{"b":null}]}"#,
            "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "recent": true,
        }))
    );
    let logs: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        vec![(LogLevel::Info, "parsed"), (LogLevel::Error, "42")]
    );
    let bad = handle(&executor, r#"json::parse("{nope")"#, json!(null)).await;
    assert!(thrown(&bad.result).contains("json::parse: not JSON"));
    let jwt = handle(
        &executor,
        r#"crypto::verify_hs256_jwt("a.b.c", "k")"#,
        json!(null),
    )
    .await;
    assert!(thrown(&jwt.result).contains("crypto::verify_hs256_jwt"));
}

#[tokio::test]
async fn compile_errors_name_line_and_column() {
    let (executor, _) = executor(1, 1_000);
    let error = executor.compile("let a = 1;\nlet b = ;\n").unwrap_err();
    assert_eq!((error.line, error.column), (2, 9), "{error}");
    assert!(!error.message.is_empty());
}
