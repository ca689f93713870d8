//! Verifies real deliveries of PiCloud's dispatcher with `webhooks::verify`: a webhook
//! trigger posts to a receiver on 127.0.0.1, and the trigger's secret comes from the API.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use picloud_client::deliveries::{DeliveryState, ListDeliveries};
use picloud_client::triggers::{Handler, NewTrigger, TriggerSource};
use picloud_client::webhooks::{self, WebhookError, WebhookEvent};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use support::server::{backends, wait_for, PicloudServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// An HTTP receiver on 127.0.0.1 that answers every request 204 and keeps it.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &kept).await;
                });
            }
        });
        Receiver {
            port,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Serves the requests of one (keep-alive) connection.
async fn serve(mut stream: TcpStream, kept: &Mutex<Vec<Received>>) -> std::io::Result<()> {
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
        let mut headers = HeaderMap::new();
        for line in head.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                headers.append(
                    HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                    HeaderValue::from_str(value.trim()).unwrap(),
                );
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[end + 4..end + 4 + length].to_vec();
        buf.drain(..end + 4 + length);
        kept.lock().unwrap().push(Received { headers, body });
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

const TOLERANCE: Duration = Duration::from_secs(300);

#[tokio::test]
async fn real_deliveries_verify_with_the_triggers_secret_through_a_rotation() {
    for backend in backends() {
        let server = PicloudServer::start(
            &backend,
            &[
                ("PICLOUD_WEBHOOK_ALLOW_PRIVATE", "true"),
                ("PICLOUD_DISPATCH_POLL_MS", "50"),
            ],
        )
        .await;
        let client = server.app_admin("shop").await;
        client
            .topics()
            .create(picloud_client::topics::CreateTopic::new("orders"))
            .await
            .unwrap();
        let receiver = Receiver::start().await;
        let url = format!("http://127.0.0.1:{}/hooks/picloud", receiver.port);
        let created = client
            .triggers()
            .create(NewTrigger::new(
                TriggerSource::topic("orders"),
                Handler::webhook(url),
            ))
            .await
            .unwrap();
        let trigger = created.trigger.id.clone();
        // The secret as the API reveals it later, not only at creation.
        let secret = client.triggers().secret(&trigger).await.unwrap().secret;
        assert_eq!(secret, created.secret);
        assert!(secret.starts_with("whsec_"));

        let published = client
            .pubsub()
            .publish("orders", json!({"order": 42}))
            .await
            .unwrap();
        assert_eq!(published.deliveries, 1);
        let first = wait_for("the first delivery", Duration::from_secs(20), || async {
            receiver.received().into_iter().next()
        })
        .await;
        let verified = webhooks::verify(&[&secret], &first.headers, &first.body, TOLERANCE)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let event: WebhookEvent = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(
            (event.id.as_str(), event.topic.as_str(), event.seq),
            (published.id.as_str(), "orders", 1)
        );
        assert_eq!(
            (event.app.as_str(), event.data.clone()),
            ("shop", json!({"order": 42}))
        );

        // The webhook-id names the delivery, which the API shows as delivered.
        let delivered = wait_for(
            "the delivery to be marked delivered",
            Duration::from_secs(20),
            || async {
                let list = client
                    .deliveries()
                    .list(ListDeliveries {
                        state: Some(DeliveryState::Delivered),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                list.deliveries.into_iter().next()
            },
        )
        .await;
        assert_eq!(verified.id, format!("msg_{}", delivered.id));

        // Refusals a receiver must make.
        assert_eq!(
            webhooks::verify(
                &["whsec_c2VjcmV0c2VjcmV0c2VjcmV0"],
                &first.headers,
                &first.body,
                TOLERANCE
            ),
            Err(WebhookError::BadSignature)
        );
        let mut tampered = first.body.clone();
        tampered[first.body.len() - 2] ^= 1;
        assert_eq!(
            webhooks::verify(&[&secret], &first.headers, &tampered, TOLERANCE),
            Err(WebhookError::BadSignature)
        );
        let later = SystemTime::now() + Duration::from_secs(600);
        assert!(matches!(
            webhooks::verify_at(&[&secret], &first.headers, &first.body, TOLERANCE, later),
            Err(WebhookError::Expired { .. })
        ));

        // After a rotation deliveries carry both signatures: a receiver holding either
        // secret accepts them.
        let rotated = client.triggers().rotate_secret(&trigger).await.unwrap();
        assert_ne!(rotated.secret, secret);
        client
            .pubsub()
            .publish("orders", json!({"order": 43}))
            .await
            .unwrap();
        let second = wait_for("the second delivery", Duration::from_secs(20), || async {
            receiver.received().into_iter().nth(1)
        })
        .await;
        let signatures = second
            .headers
            .get("webhook-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
        for secrets in [
            vec![&rotated.secret],
            vec![&secret],
            vec![&secret, &rotated.secret],
        ] {
            webhooks::verify(&secrets, &second.headers, &second.body, TOLERANCE).unwrap();
        }
        let event: WebhookEvent = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(event.seq, 2);
    }
}
