//! Requests answered before their body is read (401, 403, 404, 413, 415) keep their
//! keep-alive connection usable: the body, sent after the head as most clients do, is
//! read and discarded, or the answer says `connection: close`.

use std::time::Duration;

use crate::common::raw::RawConnection;
use crate::common::spawn_app_with;
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::json;

/// Sends a request's head, then after a pause its body in a separate write (the pause
/// makes sure the body arrives after the server has seen the head, as with clients that
/// write them separately), and returns the answer.
async fn head_then_body(
    connection: &mut RawConnection,
    head: &str,
    body: &[u8],
) -> crate::common::raw::RawResponse {
    connection
        .send(format!("{head}content-length: {}\r\n\r\n", body.len()).as_bytes())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The server may have closed the connection already: the answer tells.
    connection.try_send(body).await;
    connection.response().await.expect("an answer")
}

/// The next request on the same connection gets its own answer.
async fn next_request_works(connection: &mut RawConnection, what: &str) {
    let sent = connection
        .try_send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert!(sent, "{what}: the connection closed after the early answer");
    let next = connection
        .response()
        .await
        .unwrap_or_else(|| panic!("{what}: the connection closed after the early answer"));
    assert_eq!(
        (next.status, next.json()),
        (200, json!({"status": "ok"})),
        "{what}"
    );
}

backend_test!(early_rejections_leave_the_connection_usable);
async fn early_rejections_leave_the_connection_usable(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.max_body_bytes = 1024;
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let admin = app.create_key("shop", &["app:admin"]).await;
    let reader = app.create_key("shop", &["app:read"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&admin),
            Some(json!({"name": "news", "auth_mode": "public"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let event = br#"{"data":{"n":1}}"#.to_vec();
    let json = "content-type: application/json\r\n";
    let cases: Vec<(&str, u16, String, Vec<u8>)> = vec![
        ("no key", 401, format!("POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\n{json}"), event.clone()),
        ("anonymous token request", 401, format!("POST /v1/apps/shop/subscriber-tokens HTTP/1.1\r\nhost: x\r\n{json}"), br#"{"topics":["news"]}"#.to_vec()),
        ("wrong scope", 403, format!("POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {reader}\r\n{json}"), event.clone()),
        ("unknown route", 404, format!("POST /v1/nowhere HTTP/1.1\r\nhost: x\r\n{json}"), event.clone()),
        ("unknown app", 404, format!("POST /v1/apps/nope/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n{json}"), event.clone()),
        ("unsupported media type", 415, format!("POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\ncontent-type: text/plain\r\n"), event.clone()),
        ("over the body limit", 413, format!("POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n{json}"), vec![b' '; 4096]),
    ];
    for (what, status, head, body) in cases {
        let mut connection = RawConnection::open(app.addr).await;
        let answer = head_then_body(&mut connection, &head, &body).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(
            answer.json()["error"]["code"].is_string(),
            "{what}: a JSON error body"
        );
        assert_eq!(answer.header("connection"), None, "{what}");
        next_request_works(&mut connection, what).await;
    }

    // A body too large to read through says so: the connection closes, and the
    // client knows before it sends another request.
    let mut connection = RawConnection::open(app.addr).await;
    let head = format!("POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n{json}");
    let answer = head_then_body(&mut connection, &head, &vec![b' '; 256 * 1024]).await;
    assert_eq!(
        (answer.status, answer.header("connection")),
        (413, Some("close")),
        "{answer:?}"
    );
    app.stop().await;
}
