//! Publishing against the real server: read back, batches, and an idempotent retry after
//! a connection dropped between the server's answer and the client.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use picloud_client::events::ReadEvents;
use picloud_client::keys::{CreateAppKey, Scope};
use picloud_client::pubsub::{BatchEvent, Event};
use picloud_client::topics::CreateTopic;
use picloud_client::Client;
use serde_json::json;
use support::server::{backends, PicloudServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn published_events_read_back_in_order() {
    for backend in backends() {
        let server = PicloudServer::start(&backend, &[]).await;
        let client = server.app_admin("shop").await;
        client
            .topics()
            .create(CreateTopic::new("orders"))
            .await
            .unwrap();
        client
            .topics()
            .create(CreateTopic::new("audit"))
            .await
            .unwrap();

        let first = client
            .pubsub()
            .publish("orders", json!({"id": 1}))
            .await
            .unwrap();
        let second = client
            .pubsub()
            .publish(
                "orders",
                Event::new(json!({"id": 2})).event_type("order.created"),
            )
            .await
            .unwrap();
        assert_eq!(
            (first.topic.as_str(), first.seq, second.seq),
            ("orders", 1, 2),
            "{backend}"
        );
        assert!(first.id.starts_with("evt_"), "{}", first.id);
        let batch = client
            .pubsub()
            .publish_batch([
                BatchEvent::new("orders", json!({"id": 3})).event_type("order.created"),
                BatchEvent::new("audit", json!("three")),
            ])
            .await
            .unwrap();
        let seqs: Vec<_> = batch
            .events
            .iter()
            .map(|e| (e.topic.as_str(), e.seq))
            .collect();
        assert_eq!(seqs, [("orders", 3), ("audit", 1)], "{backend}");

        let page = client
            .events()
            .read("orders", ReadEvents::default())
            .await
            .unwrap();
        let read: Vec<_> = page
            .events
            .iter()
            .map(|e| (e.seq, e.event_type.as_str(), e.data.clone()))
            .collect();
        assert_eq!(
            read,
            [
                (1, "message", json!({"id": 1})),
                (2, "order.created", json!({"id": 2})),
                (3, "order.created", json!({"id": 3}))
            ],
            "{backend}"
        );
        assert_eq!(page.events[1].id, second.id);
        assert_eq!(page.last_seq, 3);
        let after = client
            .events()
            .read(
                "orders",
                ReadEvents {
                    after: Some(2),
                    limit: Some(10),
                },
            )
            .await
            .unwrap();
        assert_eq!(after.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(client.topics().get("orders").await.unwrap().last_seq, 3);

        // The caller's own idempotency key: the same answer, not a second event.
        let keyed = Event::new(json!({"id": 4})).idempotency_key("order-4");
        let once = client
            .pubsub()
            .publish("orders", keyed.clone())
            .await
            .unwrap();
        let again = client.pubsub().publish("orders", keyed).await.unwrap();
        assert_eq!(
            (once.seq, once.id.as_str()),
            (again.seq, again.id.as_str()),
            "{backend}"
        );
        assert_eq!(client.topics().get("orders").await.unwrap().last_seq, 4);
    }
}

/// A proxy on 127.0.0.1 that forwards the first connection's request, waits for the
/// server's whole answer and closes the client's side without relaying it; later
/// connections are forwarded both ways.
struct DroppingProxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    swallowed: Arc<tokio::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 message (head and `content-length` body) from `stream`.
async fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return buf;
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "the peer closed before a whole message: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl DroppingProxy {
    async fn start(target: u16) -> DroppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let swallowed = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let (count, kept) = (connections.clone(), swallowed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut upstream = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
                if n == 0 {
                    let kept = kept.clone();
                    tokio::spawn(async move {
                        let request = read_message(&mut client).await;
                        upstream.write_all(&request).await.unwrap();
                        let answer = read_message(&mut upstream).await;
                        *kept.lock().await = answer;
                        // Drop the client's connection without a byte of the answer.
                        drop(client);
                    });
                } else {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                }
            }
        });
        DroppingProxy {
            port,
            connections,
            swallowed,
            task,
        }
    }
}

#[tokio::test]
async fn a_publish_retried_after_a_dropped_connection_keeps_one_event_and_its_seq() {
    for backend in backends() {
        let server = PicloudServer::start(&backend, &[]).await;
        let client = server.app_admin("shop").await;
        client
            .topics()
            .create(CreateTopic::new("orders"))
            .await
            .unwrap();
        client
            .pubsub()
            .publish("orders", json!("before"))
            .await
            .unwrap();

        let proxy = DroppingProxy::start(server.port).await;
        // A publisher through the proxy; no caller-given idempotency key.
        let publisher = server.admin().with_app("shop");
        let key = publisher
            .keys()
            .create(CreateAppKey::new("proxied", [Scope::PubsubPublish]))
            .await
            .unwrap();
        let through_proxy = Client::builder()
            .base_url(format!("http://127.0.0.1:{}", proxy.port))
            .app("shop")
            .api_key(key.key)
            .retry_initial_delay(Duration::from_millis(50))
            .build()
            .unwrap();
        let published = through_proxy
            .pubsub()
            .publish("orders", json!({"order": 7}))
            .await
            .unwrap();

        let swallowed = String::from_utf8_lossy(&proxy.swallowed.lock().await).into_owned();
        assert!(
            swallowed.starts_with("HTTP/1.1 201"),
            "the server answered the first attempt: {swallowed}"
        );
        assert!(swallowed.contains(r#""seq":2"#), "{swallowed}");
        assert_eq!(
            proxy.connections.load(Ordering::SeqCst),
            2,
            "one retry on a new connection"
        );
        assert_eq!(
            published.seq, 2,
            "{backend}: the retry got the first attempt's seq"
        );

        let log = client
            .events()
            .read("orders", ReadEvents::default())
            .await
            .unwrap();
        let seqs: Vec<_> = log.events.iter().map(|e| (e.seq, e.data.clone())).collect();
        assert_eq!(
            seqs,
            [(1, json!("before")), (2, json!({"order": 7}))],
            "{backend}: one event, not two"
        );
        assert_eq!(log.events[1].id, published.id);
    }
}
