//! Retries and stream recovery against a scripted server on 127.0.0.1: what is retried,
//! with which key, how long it waits, and how the realtime consumer gets over a silent
//! connection and a refused token.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use picloud_client::realtime::StreamItem;
use picloud_client::topics::CreateTopic;
use picloud_client::{Client, Error, ErrorCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted server does with the next request.
enum Reply {
    /// An answer: status, extra headers, body.
    Answer(u16, Vec<(&'static str, &'static str)>, String),
    /// Close the connection without answering.
    Drop,
    /// An event stream: these frames, then the end (or, with `hang`, silence).
    Stream(String, bool),
}

fn published(seq: i64) -> Reply {
    let body =
        json!({"topic": "orders", "seq": seq, "id": "evt_1", "published_at": 1, "deliveries": 0});
    Reply::Answer(201, vec![], body.to_string())
}

fn failure(status: u16, code: &str) -> Reply {
    Reply::Answer(
        status,
        vec![],
        json!({"error": {"code": code, "message": "scripted"}}).to_string(),
    )
}

const HELLO: &str = "event: hello\ndata: {\"protocol\":1,\"heartbeat_secs\":1,\"topics\":[\"orders\"],\"cursor\":\"orders:0\"}\n\n";

fn event_frame(seq: i64) -> String {
    format!("id: orders:{seq}\nevent: message\ndata: {{\"topic\":\"orders\",\"seq\":{seq},\"type\":\"message\",\"data\":{seq},\"published_at\":1}}\n\n")
}

/// Request heads as received, in order.
type Heads = Arc<Mutex<Vec<String>>>;

struct Scripted {
    url: String,
    heads: Heads,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(replies: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads: Heads = Arc::default();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (replies, recorded) = (replies.clone(), recorded.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, replies, recorded).await;
                });
            }
        });
        Scripted { url, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn client(&self) -> Client {
        Client::builder()
            .base_url(&self.url)
            .app("shop")
            .api_key("pk_test")
            .retry_initial_delay(Duration::from_millis(20))
            .build()
            .unwrap()
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve(
    mut stream: TcpStream,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    heads: Heads,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + 4 + length);
        heads.lock().unwrap().push(head);
        let reply = replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| failure(500, "internal"));
        match reply {
            Reply::Drop => return Ok(()),
            Reply::Answer(status, extra, body) => {
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: req-{status}\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                stream.write_all(out.as_bytes()).await?;
            }
            Reply::Stream(frames, hang) => {
                let out = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{frames}");
                stream.write_all(out.as_bytes()).await?;
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                return Ok(());
            }
        }
    }
}

#[tokio::test]
async fn a_publish_is_retried_with_one_key_after_a_drop_a_500_and_a_503() {
    let server = Scripted::start(vec![
        Reply::Drop,
        failure(500, "internal"),
        Reply::Answer(
            503,
            vec![("retry-after", "1")],
            json!({"error": {"code": "unavailable", "message": "m"}}).to_string(),
        ),
        published(7),
    ])
    .await;
    let started = Instant::now();
    let answer = server
        .client()
        .pubsub()
        .publish("orders", json!(1))
        .await
        .unwrap();
    assert_eq!(answer.seq, 7);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was honoured: {:?}",
        started.elapsed()
    );
    let heads = server.heads();
    assert_eq!(heads.len(), 4);
    let keys: Vec<_> = heads
        .iter()
        .map(|h| header(h, "idempotency-key").unwrap().to_owned())
        .collect();
    assert!(
        keys.iter().all(|k| k == &keys[0]),
        "one key for every attempt: {keys:?}"
    );
}

#[tokio::test]
async fn retries_stop_after_the_limit_and_the_last_error_is_returned() {
    let server = Scripted::start(vec![
        failure(502, "unavailable"),
        failure(502, "unavailable"),
        failure(503, "unavailable"),
    ])
    .await;
    let client = Client::builder()
        .base_url(&server.url)
        .app("shop")
        .max_retries(2)
        .retry_initial_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let error = client.topics().list().await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(503), Some(&ErrorCode::Unavailable))
    );
    assert_eq!(error.request_id(), Some("req-503"));
    assert_eq!(server.heads().len(), 3);
}

#[tokio::test]
async fn a_post_that_may_have_acted_is_not_retried() {
    let server = Scripted::start(vec![failure(500, "internal"), Reply::Drop]).await;
    let client = server.client();
    let error = client
        .topics()
        .create(CreateTopic::new("orders"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::Internal));
    let error = client.triggers().rotate_secret("trg_1").await.unwrap_err();
    assert!(matches!(error, Error::Network(_)), "{error:?}");
    assert_eq!(server.heads().len(), 2, "neither was sent twice");

    // A 503 or 429 means the server did nothing: that is retried.
    let server = Scripted::start(vec![
        failure(429, "rate_limited"),
        Reply::Answer(
            201,
            vec![],
            json!({"id": "shop", "name": "shop", "created_at": 1}).to_string(),
        ),
    ])
    .await;
    server
        .client()
        .apps()
        .create(picloud_client::apps::CreateApp::new("shop"))
        .await
        .unwrap();
    assert_eq!(server.heads().len(), 2);
}

#[tokio::test]
async fn a_silent_stream_is_dropped_after_twice_the_heartbeat_and_resumed_from_the_cursor() {
    let server = Scripted::start(vec![
        Reply::Stream(format!("{HELLO}{}", event_frame(1)), true),
        Reply::Stream(
            format!("{HELLO}{}{}", event_frame(1), event_frame(2)),
            false,
        ),
    ])
    .await;
    let mut subscription = server
        .client()
        .realtime()
        .subscribe(["orders"])
        .backoff(Duration::from_millis(10), Duration::from_millis(50), 0.0)
        .build()
        .unwrap();
    let mut items = Vec::new();
    let started = Instant::now();
    while let Some(item) = subscription.next().await {
        let item = item.unwrap();
        let done = matches!(&item, StreamItem::Event(e) if e.seq == 2);
        items.push(item);
        if done {
            break;
        }
    }
    let summary: Vec<String> = items
        .iter()
        .map(|item| match item {
            StreamItem::Open(_) => "open".to_owned(),
            StreamItem::Event(e) => format!("event {}", e.seq),
            StreamItem::Reconnecting {
                error: Error::HeartbeatTimeout(after),
                ..
            } => format!("silent {after:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        ["open", "event 1", "silent 2s", "open", "event 2"],
        "the replayed event 1 is dropped"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let heads = server.heads();
    assert_eq!(
        header(&heads[1], "last-event-id"),
        Some("orders:1"),
        "resumed from the cursor"
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_stream_goes_on() {
    let server = Scripted::start(vec![
        Reply::Stream(format!("{HELLO}{}", event_frame(1)), false),
        failure(401, "unauthorized"),
        Reply::Stream(format!("{HELLO}{}", event_frame(2)), false),
    ])
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut subscription = server
        .client()
        .realtime()
        .subscribe(["orders"])
        .token_provider(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, Error>(format!("token-{n}")) }
        })
        .backoff(Duration::from_millis(10), Duration::from_millis(50), 0.0)
        .build()
        .unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        if let StreamItem::Event(event) = subscription.next().await.unwrap().unwrap() {
            seqs.push(event.seq);
        }
    }
    assert_eq!(seqs, [1, 2]);
    let auth: Vec<_> = server
        .heads()
        .iter()
        .map(|h| header(h, "authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        auth,
        ["Bearer token-1", "Bearer token-1", "Bearer token-2"],
        "a token that worked and is then refused is replaced"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
