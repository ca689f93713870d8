//! What a browser sees: `/` leads to the dashboard, and only the browser-facing routes
//! (the SSE stream and subscriber-token minting) answer other origins.

use crate::common::{spawn_app, spawn_app_with};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;

backend_test!(the_root_redirects_to_the_dashboard);
async fn the_root_redirects_to_the_dashboard(t: TestDb) {
    let app = spawn_app(t).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/")).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/_/");
    // Followed, it is the dashboard's page.
    let page = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<title>PiCloud"));
    app.stop().await;
}

backend_test!(only_browser_facing_routes_answer_other_origins);
async fn only_browser_facing_routes_answer_other_origins(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.cors_origins = "http://app.example".into();
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let preflight = |path: &str, method: &str| {
        app.client
            .request(Method::OPTIONS, app.url(path))
            .header("origin", "http://app.example")
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let granted = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // The stream, token minting and HTTP functions: browsers on the listed origin may
    // call them.
    for (path, method) in [
        ("/v1/apps/shop/realtime", "GET"),
        ("/v1/apps/shop/subscriber-tokens", "POST"),
        ("/v1/apps/shop/functions/mint_token", "POST"),
        ("/v1/apps/shop/functions/mint_token", "GET"),
    ] {
        let answer = preflight(path, method).await.unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        assert_eq!(
            granted(&answer).as_deref(),
            Some("http://app.example"),
            "{path}"
        );
    }
    let minted = app
        .client
        .post(app.url("/v1/apps/shop/subscriber-tokens"))
        .header("origin", "http://app.example")
        .bearer_auth(&key)
        .json(&serde_json::json!({"topics": ["news"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted(&minted).as_deref(), Some("http://app.example"));

    // API routes take keys that belong on servers: no grant, preflight or not.
    for (path, method) in [
        ("/v1/apps", "POST"),
        ("/v1/apps/shop/topics/orders/events", "POST"),
        ("/v1/apps/shop/keys", "GET"),
        ("/v1/apps/shop/realtime/keys/rotate", "POST"),
        ("/v1/apps/shop/scripts/mint_token", "PUT"),
        ("/metrics", "GET"),
    ] {
        let answer = preflight(path, method).await.unwrap();
        assert_eq!(granted(&answer), None, "{path} preflight");
        assert!(!answer.status().is_success(), "{path}: {}", answer.status());
    }
    let listed = app
        .client
        .get(app.url("/v1/apps/shop/topics"))
        .header("origin", "http://app.example")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(granted(&listed), None);
    app.stop().await;
}
