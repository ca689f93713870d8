//! The realtime consumer against the real server: minted tokens, token refresh before
//! expiry, resets, and resuming across a server killed with SIGKILL.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use picloud_client::events::ReadEvents;
use picloud_client::realtime::{RealtimeEvent, Reset, StreamItem, Subscription};
use picloud_client::topics::{AuthMode, CreateTopic, Retention};
use picloud_client::{Client, Error};
use serde_json::json;
use support::server::{backends, wait_for, Backend, PicloudServer};

/// What a subscription handed over besides events.
#[derive(Default)]
struct Seen {
    opens: usize,
    resets: Vec<Reset>,
    reconnects: Vec<String>,
}

/// The next event, recording the other items; fails after `timeout`.
async fn next_event(
    subscription: &mut Subscription,
    seen: &mut Seen,
    timeout: Duration,
) -> RealtimeEvent {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no event within {timeout:?}; reconnects: {:?}",
                    seen.reconnects
                )
            });
        match item {
            Some(Ok(StreamItem::Event(event))) => return event,
            Some(Ok(StreamItem::Open(_))) => seen.opens += 1,
            Some(Ok(StreamItem::Reset(reset))) => seen.resets.push(reset),
            Some(Ok(StreamItem::Reconnecting { error, .. })) => {
                seen.reconnects.push(error.to_string())
            }
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(error)) => panic!("the subscription failed: {error}"),
            None => panic!("the subscription ended"),
        }
    }
}

/// Waits for the subscription's `hello`.
async fn opened(subscription: &mut Subscription) -> picloud_client::realtime::Hello {
    let item = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("a hello in time");
    match item {
        Some(Ok(StreamItem::Open(hello))) => hello,
        other => panic!("expected the hello, got {other:?}"),
    }
}

async fn token_topic(client: &Client, name: &str) {
    client
        .topics()
        .create(CreateTopic::new(name))
        .await
        .unwrap();
    client.topics().set_external(name, true).await.unwrap();
}

async fn publish(client: &Client, topic: &str, n: i64) -> i64 {
    client
        .pubsub()
        .publish(topic, json!({ "n": n }))
        .await
        .unwrap()
        .seq
}

#[tokio::test]
async fn a_minted_token_streams_events_through_the_consumer() {
    let server = PicloudServer::start(&Backend::Sqlite, &[]).await;
    let client = server.app_admin("shop").await;
    token_topic(&client, "orders").await;

    // Without a token the stream is refused for good.
    let mut anonymous = client.realtime().subscribe(["orders"]).build().unwrap();
    let refused = anonymous.next().await.unwrap().unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(
        anonymous.next().await.is_none(),
        "a refused subscription ends"
    );

    let token = client
        .pubsub()
        .subscriber_token(["orders"], Some(Duration::from_secs(600)), Some("worker-1"))
        .await
        .unwrap();
    let minted = token.token.clone();
    let mut subscription = client
        .realtime()
        .subscribe(["orders"])
        .token_provider(move || {
            let token = minted.clone();
            async move { Ok::<_, Error>(token) }
        })
        .build()
        .unwrap();
    let hello = opened(&mut subscription).await;
    assert_eq!(
        (hello.topics.as_slice(), hello.cursor.as_str()),
        (&["orders".to_owned()][..], "orders:0")
    );
    for n in 1..=3 {
        publish(&client, "orders", n).await;
    }
    client
        .pubsub()
        .publish(
            "orders",
            picloud_client::pubsub::Event::new(json!("typed")).event_type("order.created"),
        )
        .await
        .unwrap();
    let mut seen = Seen::default();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_event(&mut subscription, &mut seen, Duration::from_secs(10)).await);
    }
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.event_type.as_str(),
                e.data.clone(),
                e.cursor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "message", json!({"n": 1}), "orders:1"),
            (2, "message", json!({"n": 2}), "orders:2"),
            (3, "message", json!({"n": 3}), "orders:3"),
            (4, "order.created", json!("typed"), "orders:4"),
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.topic == "orders" && e.published_at > 0));
    assert_eq!(subscription.cursor(), Some("orders:4"));
    let live = client.realtime().live_subscribers().await.unwrap();
    assert_eq!(live.streams, 1);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_without_losing_an_event() {
    let server = PicloudServer::start(
        &Backend::Sqlite,
        &[
            ("PICLOUD_SUBSCRIBER_TOKEN_TTL_MIN_SEC", "1"),
            ("PICLOUD_REALTIME_TOKEN_NOTICE_SEC", "2"),
        ],
    )
    .await;
    let client = server.app_admin("shop").await;
    token_topic(&client, "orders").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (counter, minter) = (calls.clone(), client.clone());
    let mut subscription = client
        .realtime()
        .subscribe(["orders"])
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let minter = minter.clone();
            async move {
                let minted = minter
                    .pubsub()
                    .subscriber_token(["orders"], Some(Duration::from_secs(3)), None)
                    .await?;
                Ok::<_, Error>(minted.token)
            }
        })
        .build()
        .unwrap();
    opened(&mut subscription).await;

    // Publish across several token lifetimes while the consumer reads.
    let publisher = client.clone();
    let publishing = tokio::spawn(async move {
        for n in 1..=16 {
            publish(&publisher, "orders", n).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let mut seen = Seen::default();
    let mut seqs = Vec::new();
    while seqs.len() < 16 {
        seqs.push(
            next_event(&mut subscription, &mut seen, Duration::from_secs(15))
                .await
                .seq,
        );
    }
    publishing.await.unwrap();
    assert_eq!(
        seqs,
        (1..=16).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "tokens were refreshed: {} calls",
        calls.load(Ordering::SeqCst)
    );
    assert!(seen.opens >= 2, "the consumer switched connections");
    assert!(
        seen.reconnects.is_empty(),
        "token switches are planned, not failures: {:?}",
        seen.reconnects
    );
}

#[tokio::test]
async fn a_reset_is_handed_over_as_an_item() {
    let server =
        PicloudServer::start(&Backend::Sqlite, &[("PICLOUD_RETENTION_INTERVAL_SEC", "1")]).await;
    let client = server.app_admin("shop").await;
    let retention = Retention {
        max_events: Some(2),
        max_age_secs: None,
    };
    client
        .topics()
        .create(
            CreateTopic::new("orders")
                .auth_mode(AuthMode::Public)
                .retention(retention),
        )
        .await
        .unwrap();
    client.topics().set_external("orders", true).await.unwrap();
    for n in 1..=5 {
        publish(&client, "orders", n).await;
    }
    wait_for(
        "retention to prune seq 1-3",
        Duration::from_secs(15),
        || async {
            let page = client
                .events()
                .read("orders", ReadEvents::default())
                .await
                .unwrap();
            (page.events.first().map(|e| e.seq) == Some(4)).then_some(())
        },
    )
    .await;

    // A cursor whose next events were pruned: the loss is reported, then the rest.
    let mut subscription = client
        .realtime()
        .subscribe(["orders"])
        .cursor("orders:1".to_owned())
        .build()
        .unwrap();
    let mut seen = Seen::default();
    let seqs = [
        next_event(&mut subscription, &mut seen, Duration::from_secs(10))
            .await
            .seq,
        next_event(&mut subscription, &mut seen, Duration::from_secs(10))
            .await
            .seq,
    ];
    assert_eq!(seqs, [4, 5]);
    assert_eq!(seen.resets.len(), 1);
    let reset = &seen.resets[0];
    assert_eq!(reset.reason, "cursor_expired");
    let lost: Vec<_> = reset
        .lost
        .iter()
        .map(|l| (l.topic.as_str(), l.from_seq, l.to_seq))
        .collect();
    assert_eq!(lost, [("orders", 2, 3)]);

    // A cursor past the head (a recreated topic, say): reset, then live from the head.
    let mut ahead = client
        .realtime()
        .subscribe(["orders"])
        .cursor("orders:99".to_owned())
        .build()
        .unwrap();
    let mut seen = Seen::default();
    publish_after_open(&client, &mut ahead, &mut seen).await;
    let event = next_event(&mut ahead, &mut seen, Duration::from_secs(10)).await;
    assert_eq!(
        (event.seq, event.cursor.as_str()),
        (6, "orders:6"),
        "the position moved back to the head"
    );
    assert_eq!(seen.resets.len(), 1);
    assert_eq!(seen.resets[0].reason, "cursor_invalid");
    assert!(seen.resets[0].lost.is_empty());
}

/// Reads the hello and what follows it at once, then publishes one event.
async fn publish_after_open(client: &Client, subscription: &mut Subscription, seen: &mut Seen) {
    opened(subscription).await;
    seen.opens += 1;
    match tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .unwrap()
    {
        Some(Ok(StreamItem::Reset(reset))) => seen.resets.push(reset),
        other => panic!("expected a reset right after the hello, got {other:?}"),
    }
    publish(client, "orders", 6).await;
}

#[tokio::test]
async fn the_consumer_resumes_across_a_server_killed_and_restarted_without_gap_or_duplicate() {
    for backend in backends() {
        let mut server = PicloudServer::start(&backend, &[]).await;
        let client = server.app_admin("shop").await;
        token_topic(&client, "orders").await;
        let mut subscription = client
            .realtime()
            .subscribe(["orders"])
            .mint_tokens(Some(Duration::from_secs(600)), Some("worker"))
            .backoff(Duration::from_millis(100), Duration::from_secs(1), 0.2)
            .build()
            .unwrap();
        opened(&mut subscription).await;
        let mut seen = Seen::default();
        let mut seqs = Vec::new();
        let mut cursors = Vec::new();
        for n in 1..=3 {
            publish(&client, "orders", n).await;
        }
        while seqs.len() < 3 {
            let event = next_event(&mut subscription, &mut seen, Duration::from_secs(10)).await;
            seqs.push(event.seq);
            cursors.push(event.cursor);
        }

        server.kill().await;
        server.restart().await;
        // Published while the consumer may still be away: replayed from its cursor.
        for n in 4..=6 {
            publish(&client, "orders", n).await;
        }
        while seqs.len() < 6 {
            let event = next_event(&mut subscription, &mut seen, Duration::from_secs(20)).await;
            seqs.push(event.seq);
            cursors.push(event.cursor);
        }
        // And live again.
        for n in 7..=8 {
            publish(&client, "orders", n).await;
        }
        while seqs.len() < 8 {
            let event = next_event(&mut subscription, &mut seen, Duration::from_secs(10)).await;
            seqs.push(event.seq);
            cursors.push(event.cursor);
        }
        assert_eq!(
            seqs,
            (1..=8).collect::<Vec<_>>(),
            "{backend}: no gap, no duplicate"
        );
        assert!(
            !seen.reconnects.is_empty(),
            "{backend}: the drop was reported"
        );
        assert!(seen.opens >= 1, "{backend}: a new connection opened");
        assert!(seen.resets.is_empty(), "{backend}: {:?}", seen.resets);
        assert_eq!(subscription.cursor(), Some("orders:8"));
        drop(subscription);

        // A worker that stored the cursor of event 5 resumes from there.
        let mut resumed = client
            .realtime()
            .subscribe(["orders"])
            .cursor(cursors[4].clone())
            .mint_tokens(None, None)
            .build()
            .unwrap();
        let mut seen = Seen::default();
        let mut again = Vec::new();
        for _ in 0..3 {
            again.push(
                next_event(&mut resumed, &mut seen, Duration::from_secs(10))
                    .await
                    .seq,
            );
        }
        assert_eq!(again, [6, 7, 8], "{backend}");
        publish(&client, "orders", 9).await;
        assert_eq!(
            next_event(&mut resumed, &mut seen, Duration::from_secs(10))
                .await
                .seq,
            9,
            "{backend}"
        );
    }
}
