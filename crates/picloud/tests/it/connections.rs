//! Connection limits and timeouts, end to end on raw sockets: slow heads, stalled
//! bodies and idle keep-alive connections are closed; oversized heads get 431; the
//! total and per-IP caps refuse with 503 / 429 and give slots back when connections
//! close.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{spawn_app_with, TestApp};
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Longest a test waits for the server to answer or close (well above the 1 s timeouts
/// the tests configure, far below what the unguarded server would take: forever).
const PATIENCE: Duration = Duration::from_secs(8);

/// Everything the server sends until it closes the connection, or `None` if it is still
/// open after [`PATIENCE`]. A reset after the answer counts as closing.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(PATIENCE, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

/// Reads one response with a `content-length` (head and body) off a kept-alive
/// connection.
async fn one_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("length"))
                })
                .expect("content-length");
            if received.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

/// The JSON error code in a whole response.
fn error_code(response: &str) -> String {
    let body = &response[response.find("\r\n\r\n").expect("a head") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    json["error"]["code"]
        .as_str()
        .expect("an error code")
        .to_owned()
}

fn args(tune: impl FnOnce(&mut ServeArgs)) -> ServeArgs {
    let mut args = ServeArgs::for_tests();
    tune(&mut args);
    args
}

/// `GET /healthz` on a new connection: the status line, or the refusal.
async fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    until_closed(&mut stream).await.expect("an answer")
}

/// Opens `n` connections that send nothing (they hold their slots until the header
/// timeout), each accepted before the next is opened.
async fn hold(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    held
}

/// Waits until a new connection is served again (its slot came back), at most PATIENCE.
async fn served_again(addr: SocketAddr) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = healthz(addr).await;
        if answer.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            return answer;
        }
        tokio::task::yield_now().await;
    }
}

backend_test!(a_half_sent_head_is_closed_after_the_header_timeout);
async fn a_half_sent_head_is_closed_after_the_header_timeout(t: TestDb) {
    let app = spawn_app_with(t, args(|a| a.connections.header_timeout_sec = 1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = until_closed(&mut stream).await;
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

backend_test!(a_stalled_body_gets_408_and_the_connection_closes);
async fn a_stalled_body_gets_408_and_the_connection_closes(t: TestDb) {
    let app = spawn_app_with(t, args(|a| a.connections.body_timeout_sec = 1)).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["pubsub:publish"]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/apps/shop/topics/orders/events HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: 1000000\r\n\r\n{{\"type\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut stream)
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(error_code(&answer), "request_timeout");
    app.stop().await;
}

backend_test!(an_idle_keep_alive_connection_is_closed_after_the_idle_timeout);
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(t: TestDb) {
    let app = spawn_app_with(t, args(|a| a.connections.idle_timeout_sec = 1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let first = one_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Kept alive: a second request on it is served.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let second = one_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let idle_since = Instant::now();
    assert_eq!(until_closed(&mut stream).await.as_deref(), Some(""));
    assert!(idle_since.elapsed() >= Duration::from_millis(900));
    app.stop().await;
}

backend_test!(a_huge_head_is_refused_with_431_before_it_ends);
async fn a_huge_head_is_refused_with_431_before_it_ends(t: TestDb) {
    let app = spawn_app_with(t, ServeArgs::for_tests()).await;
    let limit = ServeArgs::for_tests().connections.max_header_bytes as usize;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // A head that never ends: the server must answer once it is over the limit,
    // not buffer on waiting for its end.
    let mut head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    head.resize(limit + 1024, b'a');
    stream.write_all(&head).await.unwrap();
    let answer = until_closed(&mut stream)
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(error_code(&answer), "headers_too_large");
    // A head just under the limit is still served.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let mut head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: ".to_vec();
    head.resize(limit - 1024, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&head).await.unwrap();
    let answer = until_closed(&mut stream).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

backend_test!(the_per_ip_cap_refuses_with_429_and_frees_slots_on_close);
async fn the_per_ip_cap_refuses_with_429_and_frees_slots_on_close(t: TestDb) {
    let app = spawn_app_with(
        t,
        args(|a| {
            a.connections.max_connections = 100;
            a.connections.max_connections_per_ip = 3;
        }),
    )
    .await;
    let mut held = hold(&app, 3).await;
    let refused = healthz(app.addr).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    assert_eq!(error_code(&refused), "rate_limited");
    held.truncate(1);
    let served = served_again(app.addr).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(held);
    app.stop().await;
}

backend_test!(the_total_cap_refuses_with_503_and_frees_slots_on_close);
async fn the_total_cap_refuses_with_503_and_frees_slots_on_close(t: TestDb) {
    let app = spawn_app_with(
        t,
        args(|a| {
            a.connections.max_connections = 3;
            a.connections.max_connections_per_ip = 100;
        }),
    )
    .await;
    let mut held = hold(&app, 3).await;
    let refused = healthz(app.addr).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    assert_eq!(error_code(&refused), "unavailable");
    held.truncate(1);
    let served = served_again(app.addr).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(held);
    app.stop().await;
}

/// `GET /healthz` on `stream`, kept alive: whether it was served (200) rather than
/// refused (429).
async fn kept_alive_healthz(stream: &mut TcpStream) -> bool {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = one_response(stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 429"),
        "{answer}"
    );
    answer.starts_with("HTTP/1.1 200")
}

backend_test!(an_sse_stream_holds_its_slot_until_it_ends);
async fn an_sse_stream_holds_its_slot_until_it_ends(t: TestDb) {
    let app = spawn_app_with(
        t,
        args(|a| {
            a.connections.max_connections_per_ip = 4;
            // The stream notices its subscriber left at its next write.
            a.realtime.realtime_heartbeat_sec = 1;
        }),
    )
    .await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(serde_json::json!({"name": "news", "auth_mode": "public"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            reqwest::Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&key),
            Some(serde_json::json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut sse = TcpStream::connect(app.addr).await.unwrap();
    sse.write_all(b"GET /v1/apps/shop/realtime?topic=news HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    timeout(PATIENCE, sse.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Fill every slot left (the test client's pooled connection may hold one).
    let mut held = Vec::new();
    loop {
        let mut connection = TcpStream::connect(app.addr).await.unwrap();
        if !kept_alive_healthz(&mut connection).await {
            break;
        }
        held.push(connection);
        assert!(held.len() < 4, "the per-IP cap never refused");
    }
    // Only the stream ends: its slot is what a new connection gets.
    drop(sse);
    let served = served_again(app.addr).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(held);
    app.stop().await;
}
