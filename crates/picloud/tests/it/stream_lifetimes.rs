//! How long a stream lives: a subscriber that goes away frees its stream slot at once,
//! not at the next heartbeat; a dashboard stream ends with its session.

use std::time::Duration;

use crate::common::raw::RawConnection;
use crate::common::sse::{Subscribe, UNKNOWN_SESSION};
use crate::common::{spawn_app_with, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::json;

/// Registers topic `name` of app `shop`, public and external.
async fn public_topic(app: &TestApp, key: &str, name: &str) {
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(key),
            Some(json!({"name": name, "auth_mode": "public"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/apps/shop/topics/{name}/external"),
            Some(key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The open streams of `shop` once they settle to zero, or what they were after `within`.
async fn open_streams_settle(app: &TestApp, key: &str, within: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, live) = app
            .call(
                Method::GET,
                "/v1/apps/shop/realtime/subscribers",
                Some(key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{live}");
        let streams = live["streams"].as_i64().expect("streams");
        if streams == 0 || tokio::time::Instant::now() >= deadline {
            return streams;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

backend_test!(subscribers_that_hang_up_free_their_slots_at_once);
async fn subscribers_that_hang_up_free_their_slots_at_once(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    // No heartbeat write can notice a closed client within the test.
    args.realtime.realtime_heartbeat_sec = 3600;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    public_topic(&app, &key, "news").await;

    for routed in [false, true] {
        let cycles = if routed { 50 } else { 1000 };
        let cookie = if routed {
            format!("cookie: {UNKNOWN_SESSION}\r\n")
        } else {
            String::new()
        };
        for _ in 0..cycles {
            let mut connection = RawConnection::open(app.addr).await;
            connection
                .send(
                    format!(
                        "GET /v1/apps/shop/realtime?topic=news HTTP/1.1\r\nhost: x\r\n{cookie}\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            let answer = connection.response().await.expect("an answer");
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(
                answer.header("connection") == Some("close"),
                !routed,
                "served by the expected path"
            );
            drop(connection);
        }
        let held = open_streams_settle(&app, &key, Duration::from_secs(10)).await;
        assert_eq!(
            held, 0,
            "slots held after {cycles} connect-and-close cycles (routed: {routed})"
        );
    }
    app.stop().await;
}

backend_test!(dashboard_streams_end_when_their_session_does);
async fn dashboard_streams_end_when_their_session_does(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.realtime_heartbeat_sec = 3600;
    args.realtime.realtime_session_check_sec = 1;
    args.admin_session_ttl_sec = 4;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "internal"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let session = app.admin_session().await;
    let watch = |cookie: String| {
        let app = &app;
        async move {
            let mut stream = app
                .subscribe(
                    "shop",
                    &["internal"],
                    Subscribe {
                        cookie: Some(&cookie),
                        ..Default::default()
                    },
                )
                .await
                .expect("the admin may watch an internal topic");
            stream.expect("hello").await;
            stream
        }
    };

    // Signing out ends the stream within a check interval or so.
    let mut stream = watch(session.cookie.clone()).await;
    let (status, _, _) = app
        .exchange(app.as_admin(Method::DELETE, "/v1/admin/session", &session, true))
        .await;
    assert_eq!(status, 204);
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ends after sign-out: {ended:?}"
    );

    // So does a session's expiry.
    let session = app
        .sign_in("root@example.com", crate::common::ADMIN_PASSWORD)
        .await;
    let mut stream = watch(session.cookie.clone()).await;
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ends when the session expires: {ended:?}"
    );
    app.stop().await;
}

backend_test!(streams_per_token_subject_are_capped_when_configured);
async fn streams_per_token_subject_are_capped_when_configured(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.realtime_heartbeat_sec = 3600;
    args.realtime.realtime_max_connections_per_sub = 1;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "news", "auth_mode": "token"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = |sub: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let (status, body) = app
                .call(
                    Method::POST,
                    "/v1/apps/shop/subscriber-tokens",
                    Some(key),
                    Some(json!({"topics": ["news"], "sub": sub})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let (first, second, other) = (
        token("user-1").await,
        token("user-1").await,
        token("user-2").await,
    );
    let open = |token: String| {
        let app = &app;
        async move {
            app.subscribe(
                "shop",
                &["news"],
                Subscribe {
                    token: Some(&token),
                    ..Default::default()
                },
            )
            .await
        }
    };
    let held = open(first).await.expect("the subject's first stream");
    let (status, body) = open(second.clone())
        .await
        .err()
        .expect("a second stream of the subject is refused");
    assert_eq!(
        (status, crate::common::code(&body)),
        (429, "rate_limited"),
        "{body}"
    );
    let _other = open(other).await.expect("another subject is apart");
    // Closing the stream frees the subject's slot.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open(second.clone()).await {
            Ok(_) => break,
            Err((429, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(refused) => panic!("the subject's slot was not freed: {refused:?}"),
        }
    }
    app.stop().await;
}
