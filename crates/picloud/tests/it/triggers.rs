//! Triggers over HTTP, end to end: lifecycle, secrets shown only where they belong,
//! isolation between apps and the 400s for bad input.

use crate::common::{code, spawn_app, spawn_app_with, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

/// A loopback URL nothing listens on (deliveries fail at once, and stay on this machine).
const URL: &str = "http://127.0.0.1:9/hooks/orders";

/// A server whose webhooks may reach loopback, so triggers can point at [`URL`].
async fn spawn_local(t: picloud_manager_core::testing::TestDb) -> TestApp {
    let mut args = ServeArgs::for_tests();
    args.webhook_allow_private = true;
    spawn_app_with(t, args).await
}

fn topic_trigger(pattern: &str) -> Value {
    json!({
        "source": {"kind": "topic", "topic": pattern},
        "handler": {"kind": "webhook", "url": URL},
    })
}

/// Creates a trigger in `app` with `key` and returns the response body.
async fn create(app: &TestApp, app_id: &str, key: &str, body: Value) -> Value {
    let path = format!("/v1/apps/{app_id}/triggers");
    let (status, created) = app.call(Method::POST, &path, Some(key), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

backend_test!(trigger_lifecycle_over_http);
async fn trigger_lifecycle_over_http(t: TestDb) {
    let app = spawn_local(t).await;
    app.create_app("shop").await;
    let manager = app
        .create_key("shop", &["triggers:manage", "app:read"])
        .await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let manage = Some(manager.as_str());

    let created = create(
        &app,
        "shop",
        &manager,
        json!({
            "source": {"kind": "topic", "topic": "orders.*"},
            "handler": {"kind": "webhook", "url": URL},
            "retry": {"max_attempts": 3},
            "ordered": true,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("trg_"), "{created}");
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["app"], "shop");
    assert_eq!(
        created["source"],
        json!({"kind": "topic", "topic": "orders.*"})
    );
    assert_eq!(created["handler"], json!({"kind": "webhook", "url": URL}));
    assert_eq!(
        created["retry"],
        json!({"max_attempts": 3, "schedule_secs": [5, 300]})
    );
    assert_eq!(
        (created["ordered"].as_bool(), created["enabled"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(created["disabled_reason"], Value::Null);
    assert_eq!(created["circuit_state"], "closed");
    assert_eq!(created["consecutive_failures"], 0);

    // Defaults: enabled, unordered, 8 attempts on the Standard Webhooks schedule.
    let dead_letters = create(
        &app,
        "shop",
        &manager,
        json!({
            "source": {"kind": "dead_letter"},
            "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/dl"},
        }),
    )
    .await;
    assert_eq!(dead_letters["source"], json!({"kind": "dead_letter"}));
    assert_eq!(dead_letters["retry"]["max_attempts"], 8);
    assert_eq!(
        dead_letters["retry"]["schedule_secs"],
        json!([5, 300, 1800, 7200, 18000, 36000, 36000])
    );
    assert_eq!(
        (
            dead_letters["ordered"].as_bool(),
            dead_letters["enabled"].as_bool()
        ),
        (Some(false), Some(true))
    );

    // Listing and getting never show a secret, to any key.
    let path = format!("/v1/apps/shop/triggers/{id}");
    for key in [&manager, &reader] {
        let (status, list) = app
            .call(Method::GET, "/v1/apps/shop/triggers", Some(key), None)
            .await;
        assert_eq!(status, 200, "{list}");
        let triggers = list["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 2);
        assert_eq!(triggers[0]["id"], created["id"]);
        let (status, one) = app.call(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, 200, "{one}");
        for body in [&list, &one] {
            let text = body.to_string();
            assert!(
                !text.contains("whsec_") && !text.contains("secret"),
                "{text}"
            );
        }
    }
    let (status, one) = app.call(Method::GET, &path, Some(&reader), None).await;
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!((status, one), (200, without_secret));

    // Reveal and rotate show secrets.
    let secret_path = format!("{path}/secret");
    let (status, revealed) = app.call(Method::GET, &secret_path, manage, None).await;
    assert_eq!((status, revealed), (200, json!({"secret": secret})));
    let (status, rotated) = app
        .call(Method::POST, &format!("{secret_path}/rotate"), manage, None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(
        new_secret.starts_with("whsec_") && new_secret != secret,
        "{rotated}"
    );
    let expires = rotated["previous_secret_expires_at"].as_i64().unwrap();
    let in_a_day = picloud_shared::time::now_ms() + 24 * 3600 * 1000;
    assert!(
        (in_a_day - 60_000..=in_a_day).contains(&expires),
        "{rotated}"
    );
    let (status, revealed) = app.call(Method::GET, &secret_path, manage, None).await;
    assert_eq!((status, revealed), (200, json!({"secret": new_secret})));
    // Secrets need triggers:manage; app:read only looks.
    let (status, body) = app
        .call(Method::GET, &secret_path, Some(&reader), None)
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));

    // Disable, then enable; other fields stay as they were.
    let (status, patched) = app
        .call(
            Method::PATCH,
            &path,
            manage,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, patched["enabled"].as_bool()),
        (200, Some(false)),
        "{patched}"
    );
    assert_eq!(patched["source"], created["source"]);
    assert_eq!(patched["retry"], created["retry"]);
    assert!(!patched.to_string().contains("whsec_"));
    let (_, one) = app.call(Method::GET, &path, manage, None).await;
    assert_eq!(one["enabled"], false);
    let (status, patched) = app
        .call(
            Method::PATCH,
            &path,
            manage,
            Some(json!({
                "enabled": true,
                "handler": {"kind": "webhook", "url": "http://127.0.0.1:9/v2"},
                "source": {"kind": "topic", "topic": "*"},
                "retry": {"max_attempts": 4, "schedule_secs": [60]},
                "ordered": false,
            })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["handler"]["url"], "http://127.0.0.1:9/v2");
    assert_eq!(patched["source"]["topic"], "*");
    assert_eq!(
        patched["retry"],
        json!({"max_attempts": 4, "schedule_secs": [60, 60, 60]})
    );
    assert_eq!(patched["ordered"], false);
    let (status, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(&reader),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));

    // Delete.
    let (status, body) = app.call(Method::DELETE, &path, manage, None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = app.call(Method::GET, &path, manage, None).await;
    assert_eq!((status, code(&body)), (404, "trigger_not_found"));
    let (status, body) = app.call(Method::DELETE, &path, manage, None).await;
    assert_eq!((status, code(&body)), (404, "trigger_not_found"));
    let (_, list) = app
        .call(Method::GET, "/v1/apps/shop/triggers", manage, None)
        .await;
    assert_eq!(list["triggers"].as_array().unwrap().len(), 1);
    app.stop().await;
}

backend_test!(another_apps_trigger_is_not_found);
async fn another_apps_trigger_is_not_found(t: TestDb) {
    let app = spawn_local(t).await;
    app.create_app("shop").await;
    app.create_app("blog").await;
    let shop_key = app
        .create_key("shop", &["triggers:manage", "app:read"])
        .await;
    let blog_key = app.create_key("blog", &["app:admin"]).await;
    let id = create(&app, "shop", &shop_key, topic_trigger("orders")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Blog's admin asks its own app for shop's trigger id: not there.
    let path = format!("/v1/apps/blog/triggers/{id}");
    let blog = Some(blog_key.as_str());
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"enabled": false}))),
        (Method::DELETE, path.clone(), None),
        (Method::GET, format!("{path}/secret"), None),
        (Method::POST, format!("{path}/secret/rotate"), None),
    ] {
        let (status, body) = app.call(method.clone(), &path, blog, body).await;
        assert_eq!(
            (status, code(&body)),
            (404, "trigger_not_found"),
            "{method} {path}: {body}"
        );
    }
    let (_, list) = app
        .call(Method::GET, "/v1/apps/blog/triggers", blog, None)
        .await;
    assert_eq!(list, json!({"triggers": []}));

    // And it cannot use shop's URLs at all.
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/triggers/{id}"),
            blog,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));

    // The trigger is untouched.
    let (status, one) = app
        .call(
            Method::GET,
            &format!("/v1/apps/shop/triggers/{id}"),
            Some(&shop_key),
            None,
        )
        .await;
    assert_eq!((status, one["enabled"].as_bool()), (200, Some(true)));
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/apps/shop/triggers/trg_nope",
            Some(&shop_key),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (404, "trigger_not_found"));
    app.stop().await;
}

backend_test!(bad_trigger_input_is_a_400_naming_the_field);
async fn bad_trigger_input_is_a_400_naming_the_field(t: TestDb) {
    let app = spawn_local(t).await;
    app.create_app("shop").await;
    let key = app
        .create_key("shop", &["triggers:manage", "app:read"])
        .await;
    let with_url = |url: &str| {
        json!({
            "source": {"kind": "topic", "topic": "orders"},
            "handler": {"kind": "webhook", "url": url},
        })
    };
    let with_topic = |topic: &str| {
        json!({
            "source": {"kind": "topic", "topic": topic},
            "handler": {"kind": "webhook", "url": URL},
        })
    };
    let with_retry = |retry: Value| {
        let mut body = topic_trigger("orders");
        body["retry"] = retry;
        body
    };
    let cases = [
        (with_url("ftp://x"), "url"),
        (with_url("not a url"), "url"),
        (with_url(""), "url"),
        (with_topic("or*ders"), "topic pattern"),
        (with_topic("orders.*.created"), "topic pattern"),
        (with_topic(""), "topic"),
        (with_retry(json!({"max_attempts": 0})), "max_attempts"),
        (with_retry(json!({"max_attempts": 51})), "max_attempts"),
        (with_retry(json!({"schedule_secs": []})), "schedule_secs"),
        (with_retry(json!({"schedule_secs": [0]})), "schedule_secs"),
        (
            with_retry(json!({"schedule_secs": [604801]})),
            "schedule_secs",
        ),
        (
            json!({"source": {"kind": "topic", "topic": "x"}, "handler": {"kind": "webhook", "url": URL}, "colour": "red"}),
            "colour",
        ),
        (
            json!({"source": {"kind": "topic", "topic": "x", "extra": 1}, "handler": {"kind": "webhook", "url": URL}}),
            "extra",
        ),
        (
            json!({"source": {"kind": "queue"}, "handler": {"kind": "webhook", "url": URL}}),
            "queue",
        ),
        (
            json!({"source": {"kind": "topic", "topic": "x"}, "handler": {"kind": "email", "url": URL}}),
            "email",
        ),
        (
            json!({"source": {"kind": "topic", "topic": "x"}}),
            "handler",
        ),
        (
            json!({"handler": {"kind": "webhook", "url": URL}}),
            "source",
        ),
    ];
    for (body, names) in cases {
        let (status, error) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                Some(&key),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, code(&error)),
            (400, "invalid_request"),
            "{body}: {error}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }

    // The same rules on PATCH, and nothing changed.
    let id = create(&app, "shop", &key, topic_trigger("orders")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/apps/shop/triggers/{id}");
    for (body, names) in [
        (
            json!({"handler": {"kind": "webhook", "url": "ftp://x"}}),
            "url",
        ),
        (
            json!({"source": {"kind": "topic", "topic": "or*ders"}}),
            "topic pattern",
        ),
        (json!({"retry": {"max_attempts": 0}}), "max_attempts"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"secret": "whsec_mine"}), "secret"),
    ] {
        let (status, error) = app
            .call(Method::PATCH, &path, Some(&key), Some(body.clone()))
            .await;
        assert_eq!(
            (status, code(&error)),
            (400, "invalid_request"),
            "{body}: {error}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    let (_, one) = app.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(
        (
            one["source"]["topic"].as_str(),
            one["handler"]["url"].as_str()
        ),
        (Some("orders"), Some(URL))
    );

    // An unknown app is app_not_found, whatever the body.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/nope/triggers",
            Some(&key),
            Some(topic_trigger("x")),
        )
        .await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));
    app.stop().await;
}

backend_test!(trigger_routes_are_served_as_the_access_table_names_them);
async fn trigger_routes_are_served_as_the_access_table_names_them(t: TestDb) {
    let app = spawn_app(t).await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let routes: Vec<_> = picloud_shared::access::ROUTES
        .iter()
        .filter(|r| r.path.starts_with("/v1/apps/{app}/triggers"))
        .collect();
    assert_eq!(routes.len(), 7);
    for route in routes {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
    }
    // Every schema the trigger routes refer to is defined.
    let text = doc.to_string();
    for name in [
        "Trigger",
        "NewTrigger",
        "TriggerPatch",
        "CreatedTrigger",
        "RotatedSecret",
        "TriggerList",
        "TriggerSecret",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "schema {name}"
        );
    }
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
    app.stop().await;
}

backend_test!(trigger_urls_to_refused_addresses_are_a_400_when_saved);
async fn trigger_urls_to_refused_addresses_are_a_400_when_saved(t: TestDb) {
    // The default policy: webhooks may not reach loopback, private or reserved hosts.
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app
        .create_key("shop", &["triggers:manage", "app:read"])
        .await;
    let with_url = |url: &str| {
        json!({
            "source": {"kind": "topic", "topic": "orders"},
            "handler": {"kind": "webhook", "url": url},
        })
    };
    for (url, names) in [
        ("http://127.0.0.1:9/hook", "127.0.0.1"),
        ("http://[::1]:9/hook", "::1"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://localhost:9/hook", "'localhost' resolves to"),
    ] {
        let (status, error) = app
            .call(
                Method::POST,
                "/v1/apps/shop/triggers",
                Some(&key),
                Some(with_url(url)),
            )
            .await;
        assert_eq!(
            (status, code(&error)),
            (400, "invalid_request"),
            "{url}: {error}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names) && message.contains("refused"),
            "{url}: {message}"
        );
    }
    let (_, list) = app
        .call(Method::GET, "/v1/apps/shop/triggers", Some(&key), None)
        .await;
    assert_eq!(list["triggers"], json!([]), "nothing was created");

    // A public literal address is checked without any lookup; moving it to a refused
    // one is refused the same way, and the trigger keeps its URL.
    let id = create(&app, "shop", &key, with_url("http://203.0.114.7/hook")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/apps/shop/triggers/{id}");
    let (status, error) = app
        .call(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({
                "handler": {"kind": "webhook", "url": "http://localhost:8080/hook"},
            })),
        )
        .await;
    assert_eq!((status, code(&error)), (400, "invalid_request"), "{error}");
    let (_, one) = app.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(one["handler"]["url"], "http://203.0.114.7/hook");
    app.stop().await;
}

backend_test!(an_unparsable_stored_pattern_is_counted_not_silently_skipped);
async fn an_unparsable_stored_pattern_is_counted_not_silently_skipped(t: TestDb) {
    let app = spawn_local(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let id = create(&app, "shop", &key, topic_trigger("orders")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Damage the stored pattern (and move the generation, as any change does).
    picloud_manager_core::on_db!(&app.t.db, pool, {
        sqlx::query("UPDATE triggers SET source_topic = 'or*ders' WHERE id = $1")
            .bind(&id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE apps SET trigger_generation = trigger_generation + 1 WHERE id = 'shop'")
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    let (status, event) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/orders/events",
            Some(&key),
            Some(json!({"data": 1})),
        )
        .await;
    assert_eq!(
        (status, event["deliveries"].as_i64()),
        (201, Some(0)),
        "{event}"
    );
    let text = app
        .send(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("picloud_trigger_patterns_invalid_total ")),
        "{text}"
    );
    app.stop().await;
}
