//! Topics and publishing over HTTP: the API shapes, idempotency, the log, and every
//! validation error by status and code.

use crate::common::{code, spawn_app, spawn_app_with};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

backend_test!(topics_lifecycle);
async fn topics_lifecycle(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let key = Some(admin.as_str());

    let (status, topic) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            key,
            Some(json!({"name": "orders"})),
        )
        .await;
    assert_eq!(status, 201, "{topic}");
    assert_eq!(topic["external_subscribable"], false);
    assert_eq!(topic["auth_mode"], "token");
    assert_eq!(
        topic["retention"],
        json!({"max_events": 100000, "max_age_secs": 604800})
    );
    assert_eq!(
        (topic["last_seq"].as_i64(), topic["event_count"].as_i64()),
        (Some(0), Some(0))
    );

    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            key,
            Some(json!({"name": "orders"})),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "topic_exists"));
    let (status, topic) = app
        .call(Method::POST, "/v1/apps/shop/topics", key,
              Some(json!({"name": "chat/room:1", "auth_mode": "public", "retention": {"max_events": 10, "max_age_secs": null}})))
        .await;
    assert_eq!(status, 201, "{topic}");
    assert_eq!(
        topic["retention"],
        json!({"max_events": 10, "max_age_secs": null})
    );

    let (status, list) = app
        .call(Method::GET, "/v1/apps/shop/topics", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat/room:1", "orders"]);

    // Names with '/' travel percent-encoded in the path.
    let (status, topic) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/chat%2Froom:1",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!((status, topic["name"].as_str()), (200, Some("chat/room:1")));

    let (status, topic) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/orders/external",
            key,
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(
        (status, topic["external_subscribable"].as_bool()),
        (200, Some(true))
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/orders/external",
            Some(&reader),
            Some(json!({"external_subscribable": false})),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/nope/external",
            key,
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!((status, code(&body)), (404, "topic_not_found"));

    let (status, _) = app
        .call(Method::DELETE, "/v1/apps/shop/topics/orders", key, None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .call(Method::GET, "/v1/apps/shop/topics/orders", key, None)
        .await;
    assert_eq!((status, code(&body)), (404, "topic_not_found"));
    app.stop().await;
}

backend_test!(publish_and_read_the_log);
async fn publish_and_read_the_log(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let publisher = app.create_key("shop", &["pubsub:publish"]).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let key = Some(publisher.as_str());

    let (status, first) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            key,
            Some(json!({"type": "order.created", "data": {"id": 1, "total": 9.5}})),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            first["topic"].as_str(),
            first["seq"].as_i64(),
            first["deliveries"].as_i64()
        ),
        (Some("orders"), Some(1), Some(0))
    );
    assert!(first["id"].as_str().unwrap().starts_with("evt_"));
    assert!(first["published_at"].is_i64());

    // Unregistered topics are registered on first publish, internal.
    let (_, topic) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(topic["external_subscribable"], false);

    let (status, batch) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            key,
            Some(json!({"events": [
                {"topic": "orders", "data": [1, 2]},
                {"topic": "audit", "type": "login", "data": "text"},
                {"topic": "orders", "data": null},
            ]})),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    let seqs: Vec<(&str, i64)> = batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["topic"].as_str().unwrap(), e["seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(seqs, [("orders", 2), ("audit", 1), ("orders", 3)]);

    let (status, page) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events?after=1&limit=10",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["last_seq"], 3);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0]["seq"].as_i64(), &events[0]["data"]),
        (Some(2), &json!([1, 2]))
    );
    assert_eq!(
        (events[1]["type"].as_str(), &events[1]["data"]),
        (Some("message"), &Value::Null)
    );
    let (_, page) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events?limit=1",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(page["events"][0]["data"], json!({"id": 1, "total": 9.5}));

    // The publish key cannot read, the reader cannot publish.
    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop/topics/orders/events", key, None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(&reader),
            Some(json!({"data": 1})),
        )
        .await;
    assert_eq!(status, 403);
    app.stop().await;
}

backend_test!(idempotency_key_over_http);
async fn idempotency_key_over_http(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["pubsub:publish"]).await;
    let send = || {
        app.client
            .post(app.url("/v1/apps/shop/topics/orders/events"))
            .bearer_auth(&key)
            .header("idempotency-key", "order-42")
            .json(&json!({"data": {"n": 1}}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let (_, page) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events",
            Some(&app.create_key("shop", &["app:read"]).await),
            None,
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    app.stop().await;
}

backend_test!(publish_validation_errors);
async fn publish_validation_errors(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.max_event_bytes = 1024;
    args.max_batch_events = 3;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    let key = Some(admin.as_str());
    let big = "x".repeat(2000);
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/apps/shop/topics/or%20ders/events",
            json!({"data": 1}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders.*/events",
            json!({"data": 1}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            json!({}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            json!({"data": 1, "type": "bad type"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            json!({"data": 1, "extra": true}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            json!({"data": big}),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/v1/apps/shop/events",
            json!({"events": []}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/events",
            json!({"events": [{"topic": "a", "data": 1}, {"topic": "a", "data": 1}, {"topic": "a", "data": 1}, {"topic": "a", "data": 1}]}),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/v1/apps/shop/events",
            json!({"events": [{"topic": "a", "data": 1}, {"topic": "", "data": 1}]}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": ""}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "a*"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "a b"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "a\u{1}"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "x".repeat(201)}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "a", "auth_mode": "open"}),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/shop/topics",
            json!({"name": "a", "retention": {"max_events": 0}}),
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/apps/shop/topics/missing/events",
            Value::Null,
            404,
            "topic_not_found",
        ),
        (
            Method::GET,
            "/v1/apps/shop/topics/orders/events?after=abc",
            Value::Null,
            400,
            "invalid_request",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) = app.call(method.clone(), path, key, body).await;
        assert_eq!(
            (status, code(&answer)),
            (want_status, want_code),
            "{method} {path}: {answer}"
        );
    }
    // The offending batch entry is named.
    let (_, answer) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            key,
            Some(json!({"events": [{"topic": "a", "data": 1}, {"topic": "", "data": 1}]})),
        )
        .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1]"),
        "{answer}"
    );
    // Nothing of the rejected requests was written.
    let (_, topics) = app
        .call(Method::GET, "/v1/apps/shop/topics", key, None)
        .await;
    assert_eq!(topics["topics"], json!([]));
    // Bad idempotency key.
    let response = app
        .client
        .post(app.url("/v1/apps/shop/topics/orders/events"))
        .bearer_auth(&admin)
        .header("idempotency-key", "has space")
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    app.stop().await;
}

backend_test!(publishing_fans_out_to_triggers_created_over_http);
async fn publishing_fans_out_to_triggers_created_over_http(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.webhook_allow_private = true; // the triggers point at loopback
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let key = Some(key.as_str());
    for pattern in ["orders.created", "orders.*", "*", "users"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                key,
                Some(json!({
                    "source": {"kind": "topic", "topic": pattern},
                    "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, event) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders.created/events",
            key,
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(
        (status, event["deliveries"].as_i64()),
        (201, Some(3)),
        "{event}"
    );
    let (_, event) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/users/events",
            key,
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(event["deliveries"], 2);
    app.stop().await;
}

backend_test!(data_nested_deeper_than_the_limit_is_a_400_naming_it);
async fn data_nested_deeper_than_the_limit_is_a_400_naming_it(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["pubsub:publish"]).await;
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let send = |path: &'static str, body: String| {
        app.client
            .post(app.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        format!(r#"{{"data": {}}}"#, nested(200)),
        format!(r#"{{"data": {}}}"#, nested(65)),
    ] {
        let response = send("/v1/apps/shop/topics/orders/events", body)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!((status, code(&error)), (400, "invalid_request"), "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("64 levels"),
            "{error}"
        );
    }
    let batch = format!(
        r#"{{"events": [{{"topic": "a", "data": 1}}, {{"topic": "b", "data": {}}}]}}"#,
        nested(200)
    );
    let response = send("/v1/apps/shop/events", batch).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // At the limit it is accepted; brackets inside strings do not count.
    for body in [
        format!(r#"{{"data": {}}}"#, nested(64)),
        format!(r#"{{"data": {{"s": "[[[[{{", "v": {}}}}}"#, nested(63)),
    ] {
        let response = send("/v1/apps/shop/topics/orders/events", body)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    app.stop().await;
}
