//! The HTTP API end to end: apps, keys, and the error contract for bad input.

use crate::common::{code, spawn_app, spawn_app_with};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::json;

backend_test!(apps_lifecycle_over_http);
async fn apps_lifecycle_over_http(t: TestDb) {
    let app = spawn_app(t).await;
    let admin = Some(app.admin_key.as_str());
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps",
            admin,
            Some(json!({"id": "shop", "name": "My Shop"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "shop");
    assert_eq!(body["name"], "My Shop");

    let (status, body) = app
        .call(Method::POST, "/v1/apps", admin, Some(json!({"id": "shop"})))
        .await;
    assert_eq!((status, code(&body)), (409, "app_exists"));

    let (status, body) = app.call(Method::GET, "/v1/apps", admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["apps"].as_array().unwrap().len(), 1);

    let (status, body) = app.call(Method::GET, "/v1/apps/shop", admin, None).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("My Shop")));

    let key = app.create_key("shop", &["app:read"]).await;
    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop", Some(&key), None)
        .await;
    assert_eq!(status, 200);

    let (status, body) = app.call(Method::DELETE, "/v1/apps/shop", admin, None).await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, body) = app.call(Method::GET, "/v1/apps/shop", admin, None).await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));
    // The app's keys went with it, immediately.
    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop", Some(&key), None)
        .await;
    assert_eq!(status, 401);
    let (status, body) = app.call(Method::DELETE, "/v1/apps/shop", admin, None).await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));
    app.stop().await;
}

backend_test!(keys_are_shown_once_and_revocation_is_immediate);
async fn keys_are_shown_once_and_revocation_is_immediate(t: TestDb) {
    let app = spawn_app(t).await;
    let admin = Some(app.admin_key.as_str());
    app.create_app("shop").await;
    let (status, created) = app
        .call(
            Method::POST,
            "/v1/apps/shop/keys",
            admin,
            Some(json!({"name": "web", "scopes": ["pubsub:publish", "app:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("pk_") && secret.len() >= 3 + 43,
        "32+ random bytes: {secret}"
    );
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["app:read", "pubsub:publish"]));

    let (status, list) = app
        .call(Method::GET, "/v1/apps/shop/keys", admin, None)
        .await;
    assert_eq!(status, 200);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is never listed"
    );
    assert_eq!(list["keys"][0]["id"], created["id"]);

    let (status, _) = app
        .call(Method::GET, "/v1/apps/shop", Some(&secret), None)
        .await;
    assert_eq!(status, 200);
    let id = created["id"].as_str().unwrap();
    let (status, revoked) = app
        .call(
            Method::DELETE,
            &format!("/v1/apps/shop/keys/{id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_i64());
    let (status, body) = app
        .call(Method::GET, "/v1/apps/shop", Some(&secret), None)
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));

    // An app admin key manages its own app's keys, and cannot mint instance power.
    let app_admin = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/keys",
            Some(&app_admin),
            Some(json!({"name": "x", "scopes": ["instance:admin"]})),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/keys",
            Some(&app_admin),
            Some(json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("root"),
        "{body}"
    );

    // Instance keys over HTTP.
    let (status, created) = app
        .call(
            Method::POST,
            "/v1/keys",
            admin,
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scopes"], json!(["instance:admin"]));
    assert_eq!(created["app"], serde_json::Value::Null);
    let ops = created["key"].as_str().unwrap().to_owned();
    let (status, _) = app.call(Method::GET, "/v1/apps", Some(&ops), None).await;
    assert_eq!(status, 200);
    let (status, list) = app.call(Method::GET, "/v1/keys", admin, None).await;
    assert_eq!((status, list["keys"].as_array().unwrap().len()), (200, 2));
    let id = created["id"].as_str().unwrap();
    let (status, _) = app
        .call(Method::DELETE, &format!("/v1/keys/{id}"), admin, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.call(Method::GET, "/v1/apps", Some(&ops), None).await;
    assert_eq!(status, 401);
    let (status, body) = app
        .call(Method::DELETE, "/v1/keys/key_nope", admin, None)
        .await;
    assert_eq!((status, code(&body)), (404, "key_not_found"));
    app.stop().await;
}

backend_test!(bad_input_gets_a_json_4xx);
async fn bad_input_gets_a_json_4xx(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.max_body_bytes = 4096;
    let app = spawn_app_with(t, args).await;
    let admin = app.admin_key.clone();
    let client = &app.client;

    let (status, body) = app.call(Method::GET, "/nope", None, None).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = app.call(Method::PUT, "/v1/apps", Some(&admin), None).await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));

    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = client
            .post(app.url("/v1/apps"))
            .bearer_auth(&admin)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            post("{\"id\":", Some("application/json")),
            400,
            "invalid_json",
        ),
        (
            post("not json", Some("application/json")),
            400,
            "invalid_json",
        ),
        (
            post("{\"id\":\"shop\"}", None),
            415,
            "unsupported_media_type",
        ),
        (
            post("{\"id\":\"shop\"}", Some("text/plain")),
            415,
            "unsupported_media_type",
        ),
        (
            post("{\"id\":\"Shop!\"}", Some("application/json")),
            400,
            "invalid_request",
        ),
        (
            post("{\"id\":42}", Some("application/json")),
            400,
            "invalid_request",
        ),
        (post("{}", Some("application/json")), 400, "invalid_request"),
        (
            post("{\"id\":\"shop\",\"extra\":1}", Some("application/json")),
            400,
            "invalid_request",
        ),
        (post("[]", Some("application/json")), 400, "invalid_request"),
    ];
    for (request, want_status, want_code) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!((status, code(&body)), (want_status, want_code), "{body}");
    }

    let big = format!("{{\"id\":\"shop\",\"name\":\"{}\"}}", "x".repeat(10_000));
    let response = client
        .post(app.url("/v1/apps"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&body), "payload_too_large");

    let (status, body) = app
        .call(Method::GET, "/v1/apps/ghost", Some(&admin), None)
        .await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));
    let (status, body) = app
        .call(Method::GET, "/v1/apps/%FF%FE", Some(&admin), None)
        .await;
    assert!(status == 400 || status == 404, "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    // Authorization headers of every odd shape are one generic 401.
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Basic Zm9vOmJhcg==",
        "Bearer pk_",
        "Bearer \u{7f}",
    ] {
        let response = client
            .get(app.url("/v1/apps"))
            .header("authorization", header)
            .send()
            .await;
        let Ok(response) = response else { continue }; // reqwest refuses some headers itself
        assert_eq!(response.status().as_u16(), 401, "{header:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(code(&body), "unauthorized");
    }
    app.stop().await;
}

backend_test!(system_endpoints);
async fn system_endpoints(t: TestDb) {
    let app = spawn_app(t).await;
    let response = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    // A request through the API shows up in the metrics, labelled by route template.
    app.create_app("shop").await;
    let response = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("picloud_http_requests_total{")
                && l.contains("route=\"/v1/apps\"")
                && l.contains("status=\"201\"")),
        "{text}"
    );

    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/apps/{app}/keys"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    app.stop().await;
}

backend_test!(readiness_fails_when_the_database_is_gone);
async fn readiness_fails_when_the_database_is_gone(t: TestDb) {
    let app = spawn_app(t).await;
    app.t.db.close().await;
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, code(&body)), (503, "unavailable"));
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "the process itself is still up");
}

backend_test!(key_use_is_recorded_without_a_write_per_request);
async fn key_use_is_recorded_without_a_write_per_request(t: TestDb) {
    let app = spawn_app(t).await;
    for _ in 0..5 {
        let (status, _) = app
            .call(Method::GET, "/v1/apps", Some(&app.admin_key.clone()), None)
            .await;
        assert_eq!(status, 200);
    }
    // Still unrecorded: uses are gathered in memory and written in batches ...
    let keys = app.t.db.list_keys(None).await.unwrap();
    assert_eq!(keys[0].last_used_at, None);
    // ... and at the latest on graceful shutdown.
    let t = app.stop().await;
    let db = picloud_manager_core::Db::connect(&t.url, picloud_manager_core::db::PoolSize(1))
        .await
        .unwrap();
    let keys = db.list_keys(None).await.unwrap();
    assert!(keys[0].last_used_at.is_some());
}

backend_test!(head_needs_what_get_needs_and_list_filters_are_query_parameters);
async fn head_needs_what_get_needs_and_list_filters_are_query_parameters(t: TestDb) {
    let app = spawn_app(t).await;
    let head = app.send(Method::HEAD, "/healthz", None, None).await;
    assert_eq!(head.status(), 200);
    let head = app.send(Method::HEAD, "/v1/apps", None, None).await;
    assert_eq!(head.status(), 401, "HEAD is refused exactly like GET");
    let (_, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    let params = doc["paths"]["/v1/apps/{app}/deliveries"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let state = params
        .iter()
        .find(|p| p["name"] == "state")
        .expect("state documented");
    assert_eq!(state["in"], "query");
    app.stop().await;
}

backend_test!(a_body_must_be_a_json_object_and_shape_errors_name_the_field);
async fn a_body_must_be_a_json_object_and_shape_errors_name_the_field(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app
        .create_key(
            "shop",
            &["pubsub:publish", "deliveries:manage", "app:admin"],
        )
        .await;
    // Positional bodies used to publish and replay.
    for (path, body) in [
        (
            "/v1/apps/shop/topics/orders/events",
            json!(["order.created", {"a": 1}]),
        ),
        ("/v1/apps/shop/dead-letters/replay", json!([null, null])),
        ("/v1/apps/shop/topics", json!("orders")),
    ] {
        let (status, answer) = app.call(Method::POST, path, Some(&key), Some(body)).await;
        assert_eq!((status, code(&answer)), (400, "invalid_request"), "{path}");
        assert_eq!(
            answer["error"]["message"], "body must be a JSON object",
            "{path}"
        );
    }
    let (_, topics) = app
        .call(Method::GET, "/v1/apps/shop/topics", Some(&key), None)
        .await;
    assert_eq!(topics["topics"], json!([]), "nothing was published");
    // A wrong field is named with what it must be, in JSON's words.
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "orders", "retention": [1]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["message"],
        "retention must be a JSON object, got an array"
    );
    let (_, answer) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"auth_mode": "token"})),
        )
        .await;
    assert_eq!(answer["error"]["message"], "name is required");
    app.stop().await;
}
