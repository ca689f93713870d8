//! Every error code of the document's `ErrorCode` enum maps to `Error::Api` with its
//! code and HTTP status: those a client can provoke against the real server, the rest
//! from canned answers.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use picloud_client::keys::Scope;
use picloud_client::pubsub::Event;
use picloud_client::realtime::StreamItem;
use picloud_client::scripts::SaveScript;
use picloud_client::topics::{AuthMode, CreateTopic};
use picloud_client::{apps::CreateApp, Client, Error, ErrorCode};
use reqwest::header::HeaderMap;
use serde_json::json;
use support::openapi;
use support::server::{Backend, PicloudServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a raw request (one the typed SDK cannot send) maps to.
async fn raw(request: reqwest::RequestBuilder) -> Error {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    Error::from_response(status, &headers, &body)
}

/// The first item of a subscription that could not connect.
async fn refused_stream(client: &Client, topic: &str) -> Error {
    let mut subscription = client.realtime().subscribe([topic]).build().unwrap();
    match tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an item")
    {
        Some(Ok(StreamItem::Reconnecting { error, .. })) => error,
        Some(Err(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn provoked_errors_carry_the_api_code_status_and_request_id() {
    let server = PicloudServer::start(
        &Backend::Sqlite,
        &[
            ("PICLOUD_REALTIME_MAX_CONNECTIONS_PER_APP", "1"),
            ("PICLOUD_REALTIME_MAX_CONNECTIONS", "2"),
            ("PICLOUD_BODY_TIMEOUT_SEC", "1"),
        ],
    )
    .await;
    let url = server.url();
    let client = server.app_admin("shop").await;
    let reader = server.create_app("reader-app", &[Scope::AppRead]).await;
    let admin = server.admin();
    client
        .topics()
        .create(CreateTopic::new("orders"))
        .await
        .unwrap();
    for app_client in [
        client.clone(),
        server.app_admin("b-app").await,
        server.app_admin("c-app").await,
    ] {
        app_client
            .topics()
            .create(CreateTopic::new("live").auth_mode(AuthMode::Public))
            .await
            .unwrap();
        app_client
            .topics()
            .set_external("live", true)
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {}", server.admin_key);
    let mut provoked: Vec<(ErrorCode, u16, Error)> = Vec::new();
    let mut expect =
        |code: ErrorCode, status: u16, result: Error| provoked.push((code, status, result));

    expect(
        ErrorCode::InvalidJson,
        400,
        raw(http
            .post(format!("{url}/v1/apps"))
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body("{"))
        .await,
    );
    expect(
        ErrorCode::InvalidRequest,
        400,
        client
            .topics()
            .create(CreateTopic::new("bad name!"))
            .await
            .unwrap_err(),
    );
    expect(
        ErrorCode::UnsupportedMediaType,
        415,
        raw(http
            .post(format!("{url}/v1/apps"))
            .header("authorization", &bearer)
            .header("content-type", "text/plain")
            .body("x"))
        .await,
    );
    let big = "x".repeat(300 * 1024);
    expect(
        ErrorCode::PayloadTooLarge,
        413,
        client
            .pubsub()
            .publish("orders", json!(big))
            .await
            .unwrap_err(),
    );
    let stranger = Client::builder()
        .base_url(&url)
        .app("shop")
        .api_key("pk_not_a_key")
        .build()
        .unwrap();
    expect(
        ErrorCode::Unauthorized,
        401,
        stranger.topics().list().await.unwrap_err(),
    );
    let reader_on_shop = reader.with_app("reader-app");
    reader_on_shop
        .topics()
        .create(CreateTopic::new("x"))
        .await
        .unwrap_err();
    expect(
        ErrorCode::Forbidden,
        403,
        reader_on_shop
            .pubsub()
            .publish("x", Event::new(1))
            .await
            .unwrap_err(),
    );
    expect(
        ErrorCode::NotFound,
        404,
        client
            .realtime()
            .subscribe(["nowhere"])
            .build()
            .unwrap()
            .next()
            .await
            .unwrap()
            .unwrap_err(),
    );
    expect(
        ErrorCode::MethodNotAllowed,
        405,
        raw(http
            .put(format!("{url}/v1/apps"))
            .header("authorization", &bearer))
        .await,
    );
    expect(
        ErrorCode::AppNotFound,
        404,
        admin.apps().get("no-such-app").await.unwrap_err(),
    );
    expect(
        ErrorCode::KeyNotFound,
        404,
        admin.keys().revoke_instance("key_nope").await.unwrap_err(),
    );
    expect(
        ErrorCode::AppExists,
        409,
        admin
            .apps()
            .create(CreateApp::new("shop"))
            .await
            .unwrap_err(),
    );
    expect(
        ErrorCode::TopicNotFound,
        404,
        client.topics().get("nope").await.unwrap_err(),
    );
    expect(
        ErrorCode::TopicExists,
        409,
        client
            .topics()
            .create(CreateTopic::new("orders"))
            .await
            .unwrap_err(),
    );
    expect(
        ErrorCode::TriggerNotFound,
        404,
        client
            .triggers()
            .get("trg_00000000000000000000000000000000")
            .await
            .unwrap_err(),
    );
    expect(
        ErrorCode::DeliveryNotFound,
        404,
        client.deliveries().get(999_999).await.unwrap_err(),
    );
    expect(
        ErrorCode::DeadLetterNotFound,
        404,
        client.dead_letters().get(999_999).await.unwrap_err(),
    );
    expect(
        ErrorCode::ScriptNotFound,
        404,
        client.scripts().get("nope").await.unwrap_err(),
    );
    expect(
        ErrorCode::SourceNotFound,
        404,
        client.sources().get("src_nope").await.unwrap_err(),
    );
    let compile = client
        .scripts()
        .save(
            "broken",
            SaveScript::new("fn handle(req) {\n  let x = ;\n}"),
        )
        .await
        .unwrap_err();
    match &compile {
        Error::Api(e) => assert!(
            e.line.is_some() && e.column.is_some(),
            "a compile error has a place: {e:?}"
        ),
        other => panic!("{other:?}"),
    }
    expect(ErrorCode::ScriptCompileError, 400, compile);

    // One stream per app, two per server.
    let mut first = client.realtime().subscribe(["live"]).build().unwrap();
    assert!(matches!(first.next().await, Some(Ok(StreamItem::Open(_)))));
    expect(
        ErrorCode::RateLimited,
        429,
        refused_stream(&client, "live").await,
    );
    let b = Client::builder()
        .base_url(&url)
        .app("b-app")
        .build()
        .unwrap();
    let mut second = b.realtime().subscribe(["live"]).build().unwrap();
    assert!(matches!(second.next().await, Some(Ok(StreamItem::Open(_)))));
    let c = Client::builder()
        .base_url(&url)
        .app("c-app")
        .build()
        .unwrap();
    expect(
        ErrorCode::Unavailable,
        503,
        refused_stream(&c, "live").await,
    );
    drop((first, second));

    // A POST whose body never arrives: the server gives up after its body timeout.
    let stalled = b"POST /v1/apps HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    expect(
        ErrorCode::RequestTimeout,
        408,
        raw_tcp(server.port, stalled.to_vec()).await,
    );
    let huge = format!(
        "GET /v1/apps HTTP/1.1\r\nhost: 127.0.0.1\r\nx-filler: {}\r\n\r\n",
        "y".repeat(40 * 1024)
    );
    expect(
        ErrorCode::HeadersTooLarge,
        431,
        raw_tcp(server.port, huge.into_bytes()).await,
    );

    let mut seen = BTreeSet::new();
    for (code, status, error) in &provoked {
        let Error::Api(api) = error else {
            panic!("{code}: not an API error: {error:?}")
        };
        assert_eq!((&api.code, api.status), (code, *status), "{code}: {api}");
        assert_eq!(error.code(), Some(code));
        assert_eq!(error.status(), Some(*status));
        assert!(!api.message.is_empty(), "{code} has a message");
        // 408 and 431 are answered by the connection layer, before a request id exists.
        if ![408, 431].contains(status) {
            assert!(
                api.request_id.as_deref().is_some_and(|id| !id.is_empty()),
                "{code} carries x-request-id"
            );
        }
        assert!(error.to_string().contains(code.as_str()), "{error}");
        seen.insert(code.as_str().to_owned());
    }
    let canned: BTreeSet<String> = canned_codes()
        .into_iter()
        .map(|(code, _)| code.as_str().to_owned())
        .collect();
    let documented: BTreeSet<String> = openapi::document()["components"]["schemas"]["ErrorCode"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let covered: BTreeSet<String> = seen.union(&canned).cloned().collect();
    assert_eq!(
        covered, documented,
        "every documented code is provoked or canned"
    );
    assert!(
        seen.is_disjoint(&canned),
        "a provoked code is canned as well"
    );
}

/// Sends `request` as is on a new connection (the server may answer before it has read
/// all of it) and maps the answer.
async fn raw_tcp(port: u16, request: Vec<u8>) -> Error {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        // Keep the write half open until the answer is read.
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {text}"));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    Error::from_response(status, &headers, body.as_bytes())
}

/// Codes no client can provoke: an admin created twice (a CLI matter) and a server
/// failure.
fn canned_codes() -> Vec<(ErrorCode, u16)> {
    vec![(ErrorCode::AdminExists, 409), (ErrorCode::Internal, 500)]
}

#[test]
fn canned_answers_map_to_their_codes() {
    for (code, status) in canned_codes() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "req-1".parse().unwrap());
        headers.insert("retry-after", "3".parse().unwrap());
        let body = json!({"error": {"code": code.as_str(), "message": "it failed"}}).to_string();
        let error = Error::from_response(status, &headers, body.as_bytes());
        let Error::Api(api) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            (&api.code, api.status, api.message.as_str()),
            (&code, status, "it failed")
        );
        assert_eq!(api.request_id.as_deref(), Some("req-1"));
        assert_eq!(api.retry_after, Some(Duration::from_secs(3)));
    }
    // A code this SDK does not know yet, and an answer that is not an API error.
    let error = Error::from_response(
        409,
        &HeaderMap::new(),
        br#"{"error":{"code":"quota_exceeded","message":"m"}}"#,
    );
    assert_eq!(
        error.code(),
        Some(&ErrorCode::Unknown("quota_exceeded".into()))
    );
    let error = Error::from_response(502, &HeaderMap::new(), b"<html>bad gateway</html>");
    assert_eq!(error.code(), Some(&ErrorCode::Unknown("http_502".into())));
    assert!(error.to_string().contains("bad gateway"), "{error}");
}
