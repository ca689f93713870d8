//! The served OpenAPI document tells the truth: parameters are where the server reads
//! them, schemas accept what the server accepts, and every status a route can answer
//! with is documented.
//!
//! The document does not depend on the storage backend, so these tests run on SQLite
//! only; the behaviour they compare it with is exercised on both backends elsewhere.

use crate::common::{spawn_app, TestApp};
use picloud_manager_core::db::Backend;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::Value;

async fn app() -> TestApp {
    spawn_app(TestDb::new(Backend::Sqlite).await.expect("sqlite")).await
}

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    doc
}

/// The parameter `name` of `method path`.
fn parameter<'a>(doc: &'a Value, method: &str, path: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} documents {name}"))
}

/// Resolves a `$ref` to its schema (or returns the schema itself).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test]
async fn optional_query_parameters_are_optional_query_parameters() {
    let app = app().await;
    let doc = document(&app).await;
    for (method, path, name) in [
        ("post", "/v1/apps/{app}/realtime/keys/rotate", "grace_secs"),
        ("get", "/v1/apps/{app}/topics/{topic}/events", "after"),
        ("get", "/v1/apps/{app}/topics/{topic}/events", "limit"),
    ] {
        let p = parameter(&doc, method, path, name);
        assert_eq!(p["in"], "query", "{method} {path} {name}");
        assert_ne!(p["required"], true, "{method} {path} {name}");
    }
    // And the server reads them from the query, without them.
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/realtime/keys/rotate?grace_secs=0",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/realtime/keys/rotate",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn event_data_is_any_json_value() {
    let app = app().await;
    let doc = document(&app).await;
    // Whatever JSON `data` is, the server takes it and gives it back.
    app.create_app("shop").await;
    let key = app
        .create_key("shop", &["pubsub:publish", "app:read"])
        .await;
    for data in [
        serde_json::json!(true),
        serde_json::json!([1, "a"]),
        serde_json::json!("text"),
        Value::Null,
    ] {
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/apps/shop/topics/orders/events",
                Some(&key),
                Some(serde_json::json!({"data": data})),
            )
            .await;
        assert_eq!(status, 201, "{data}");
    }
    let (_, page) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/orders/events",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(page["events"][0]["data"], true);
    // So every schema of `data` accepts any value: no `type` narrows it.
    for name in ["PublishBody", "BatchEvent", "LoggedEvent"] {
        let data = resolve(
            &doc,
            &doc["components"]["schemas"][name]["properties"]["data"],
        );
        assert!(data.is_object(), "{name}.data is documented");
        assert!(
            data.get("type").is_none(),
            "{name}.data is narrowed: {data}"
        );
    }
    app.stop().await;
}

/// `path` with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{app}", "shop")
        .replace("{topic}", "orders")
        .replace("{key_id}", "key_doesnotexist")
        .replace("{trigger_id}", "trg_doesnotexist")
        .replace("{delivery_id}", "999999")
        .replace("{dead_letter_id}", "999999")
        .replace("{script}", "mint_token")
        .replace("{version}", "1")
}

#[tokio::test]
async fn every_operation_documents_the_statuses_its_access_rule_and_extractors_answer() {
    use picloud_shared::access::{lookup, Access};
    let app = app().await;
    let doc = document(&app).await;
    let session = app.admin_session().await;
    let mut operations: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    // Signing out ends the session the others use: last.
    operations.sort_by_key(|(m, p)| (m == "DELETE" && p == "/v1/admin/session", p.clone()));
    assert!(operations.len() > 40, "{operations:?}");
    for (method, path) in operations {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        let documented = |status: u16| operation["responses"][status.to_string()].is_object();
        let what = format!("{method} {path}");
        let rule =
            lookup(&method, &path).unwrap_or_else(|| panic!("{what} is in the access table"));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        if !matches!(rule, Access::Public | Access::Subscriber) {
            assert!(
                documented(401) && documented(403),
                "{what}: 401 and 403 follow from {rule:?}"
            );
        }
        // What the running server answers must be documented.
        let (status, _) = app.call(method.clone(), &concrete(&path), None, None).await;
        if status == 401 {
            assert!(documented(401), "{what} answers 401 without credentials");
        }
        // A body of a type no operation takes: the body extractor answers 415, before
        // anything else runs (a signed-in admin passes every access rule).
        let request = app
            .as_admin(method, &concrete(&path), &session, true)
            .header("content-type", "application/xml")
            .body("x");
        let (status, _, _) = app.exchange(request).await;
        let has_body = operation["requestBody"].is_object();
        assert_eq!(
            status == 415,
            has_body,
            "{what}: answered {status}; requestBody documented: {has_body}"
        );
        if has_body {
            assert!(
                documented(415) && documented(413) && documented(400),
                "{what}: 400/413/415 of a JSON body"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn path_parameters_that_are_ids_are_named_as_ids_and_names_are_constrained() {
    let app = app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for name in path.split('{').skip(1).map(|s| &s[..s.find('}').unwrap()]) {
            assert!(
                matches!(name, "app" | "topic" | "script" | "version") || name.ends_with("_id"),
                "{path}: {{{name}}} names an id"
            );
        }
        for operation in item.as_object().unwrap().values() {
            for p in operation["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" && p["name"] == "app" {
                    assert_eq!(
                        p["schema"]["maxLength"],
                        picloud_shared::AppId::MAX_LEN,
                        "{path}"
                    );
                    assert_eq!(
                        p["schema"]["pattern"],
                        picloud_shared::AppId::PATTERN,
                        "{path}"
                    );
                }
                if p["in"] == "path" && (p["name"] == "topic" || p["name"] == "script") {
                    assert_eq!(
                        p["schema"]["maxLength"],
                        picloud_shared::TopicName::MAX_LEN,
                        "{path}"
                    );
                    assert_eq!(
                        p["schema"]["pattern"],
                        picloud_shared::TopicName::PATTERN,
                        "{path}"
                    );
                }
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn body_constraints_are_the_ones_the_server_checks() {
    use picloud_manager_core::http::deliveries::MAX_REPLAY_PER_SECOND;
    let app = app().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    // Unknown keys are refused (serde's deny_unknown_fields), and the document says so.
    for name in [
        "CreateApp",
        "CreateTopic",
        "PublishBody",
        "BatchBody",
        "ReplayBody",
        "NewTrigger",
    ] {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    let per_second = &schemas["ReplayBody"]["properties"]["per_second"];
    assert_eq!(per_second["maximum"], MAX_REPLAY_PER_SECOND);
    assert_eq!(per_second["minimum"], 1);
    assert_eq!(schemas["BatchBody"]["properties"]["events"]["minItems"], 1);
    // The server refuses just past the documented bounds.
    app.create_app("shop").await;
    let key = app
        .create_key("shop", &["deliveries:manage", "pubsub:publish"])
        .await;
    let over = serde_json::json!({"per_second": MAX_REPLAY_PER_SECOND + 1});
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/dead-letters/replay",
            Some(&key),
            Some(over),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apps/shop/events",
            Some(&key),
            Some(serde_json::json!({"events": []})),
        )
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

/// The retry policy a request gives may leave out either field (the server fills in the
/// default), while a trigger in a response always shows both; and a delivery's `state`
/// is one of the same states whether listed or inspected.
#[tokio::test]
async fn request_and_response_shapes_differ_where_the_server_treats_them_differently() {
    // Webhooks to loopback allowed: the trigger below points at a closed local port.
    let mut args = picloud::config::ServeArgs::for_tests();
    args.webhook_allow_private = true;
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let app = crate::common::spawn_app_with(t, args).await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    // The property's schema, through a nullable `oneOf` if it is one.
    let field = |schema: &str, name: &str| -> Value {
        let property = &schemas[schema]["properties"][name];
        let reference = property["oneOf"]
            .as_array()
            .and_then(|options| options.iter().find(|o| o.get("$ref").is_some()))
            .unwrap_or(property);
        resolve(&doc, reference).clone()
    };
    for (schema, name) in [("NewTrigger", "retry"), ("TriggerPatch", "retry")] {
        let retry = field(schema, name);
        assert!(
            retry["properties"]["max_attempts"].is_object(),
            "{schema}.{name}: {retry}"
        );
        let required = retry["required"].as_array().map_or(0, Vec::len);
        assert_eq!(required, 0, "{schema}.{name} requires nothing: {retry}");
    }
    let shown = field("Trigger", "retry");
    assert_eq!(
        shown["required"],
        serde_json::json!(["max_attempts", "schedule_secs"]),
        "{shown}"
    );
    let states = schemas["Delivery"]["properties"]["state"]["enum"].clone();
    assert!(states.as_array().is_some_and(|s| s.len() == 4), "{states}");
    assert_eq!(
        schemas["DeliveryDetail"]["properties"]["state"]["enum"],
        states
    );

    // And the server takes a policy with one field.
    app.create_app("shop").await;
    let key = app.create_key("shop", &["triggers:manage"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/triggers",
            Some(&key),
            Some(serde_json::json!({
                "source": {"kind": "topic", "topic": "orders"},
                "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
                "retry": {"max_attempts": 3},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["retry"]["max_attempts"], 3);
    assert_eq!(
        body["retry"]["schedule_secs"].as_array().map(Vec::len),
        Some(2)
    );
    app.stop().await;
}

/// `docs/openapi.json`, the copy the TypeScript wire types of @picloud/client and the
/// dashboard are generated from, is the document the server serves. With
/// `PICLOUD_BLESS=1` the test rewrites it first.
#[tokio::test]
async fn the_committed_document_is_the_served_one() {
    let app = app().await;
    let served = document(&app).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("PICLOUD_BLESS").is_some() {
        let pretty = serde_json::to_string_pretty(&served).expect("a document serializes");
        std::fs::write(path, pretty + "\n").expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    let committed: Value = serde_json::from_str(&committed).expect("docs/openapi.json is JSON");
    assert!(
        committed == served,
        "docs/openapi.json differs from the served document: run \
         `PICLOUD_BLESS=1 cargo test -p picloud --test it the_committed_document`, then \
         `npm run generate` in clients/typescript, and commit both"
    );
}
