//! Realtime end to end: subscriber tokens, the SSE endpoint, resume, catch-up and the
//! token lifecycle, over HTTP against `build_app` on both backends.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::sse::{served_directly, Frame, Subscribe, Subscriber, UNKNOWN_SESSION};
use crate::common::{code, spawn_app_with, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::retention::DEFAULT_DELIVERY_HISTORY;
use picloud_manager_core::testing::TestDb;
use picloud_orchestrator_core::subscriber_token::{self, TokenClaims};
use picloud_shared::realtime::{RealtimeStore, SUBSCRIBER_TOKEN_PURPOSE};
use picloud_shared::time::now_ms;
use picloud_shared::AppId;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// An app `shop` with a key holding every app scope.
struct Fixture {
    app: TestApp,
    key: String,
}

async fn fixture(t: TestDb) -> Fixture {
    fixture_with(t, ServeArgs::for_tests()).await
}

async fn fixture_with(t: TestDb, args: ServeArgs) -> Fixture {
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    Fixture { app, key }
}

impl Fixture {
    /// Registers `name`, external or not, with `auth_mode`.
    async fn topic(&self, name: &str, auth_mode: &str, external: bool) {
        self.topic_of("shop", &self.key, name, auth_mode, external)
            .await;
    }

    async fn topic_of(&self, app: &str, key: &str, name: &str, auth_mode: &str, external: bool) {
        let (status, body) = self
            .app
            .call(
                Method::POST,
                &format!("/v1/apps/{app}/topics"),
                Some(key),
                Some(json!({"name": name, "auth_mode": auth_mode})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        if external {
            let (status, body) = self
                .app
                .call(
                    Method::PATCH,
                    &format!("/v1/apps/{app}/topics/{name}/external"),
                    Some(key),
                    Some(json!({"external_subscribable": true})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }

    /// The status of minting a subscriber token for `topic` on `node`.
    async fn mint_on(&self, node: &TestApp, topic: &str) -> u16 {
        let (status, body) = node
            .call(
                Method::POST,
                "/v1/apps/shop/subscriber-tokens",
                Some(&self.key),
                Some(json!({"topics": [topic]})),
            )
            .await;
        assert!(matches!(status, 201 | 400), "{status} {body}");
        status
    }

    /// Publishes `data` and returns its seq.
    async fn publish(&self, topic: &str, data: Value) -> i64 {
        let (status, body) = self
            .app
            .call(
                Method::POST,
                &format!("/v1/apps/shop/topics/{topic}/events"),
                Some(&self.key),
                Some(json!({"data": data})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["seq"].as_i64().expect("seq")
    }

    /// Publishes `{"i": i}` for `i` in `0..count` to each of `topics` in turn, back to
    /// back, in a task of its own; each must be accepted.
    fn publish_in_background(&self, topics: &'static [&'static str], count: i64) -> JoinHandle<()> {
        let (client, url, key) = (
            self.app.client.clone(),
            self.app.url("/v1/apps/shop/topics"),
            self.key.clone(),
        );
        tokio::spawn(async move {
            for i in 0..count {
                for topic in topics {
                    let response = client
                        .post(format!("{url}/{topic}/events"))
                        .bearer_auth(&key)
                        .json(&json!({"data": {"i": i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            }
        })
    }

    async fn mint(&self, body: Value) -> (u16, Value) {
        self.app
            .call(
                Method::POST,
                "/v1/apps/shop/subscriber-tokens",
                Some(&self.key),
                Some(body),
            )
            .await
    }

    /// A subscriber token for `topics`.
    async fn token(&self, topics: &[&str]) -> String {
        let (status, body) = self.mint(json!({"topics": topics})).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    async fn subscribe(&self, topics: &[&str], options: Subscribe<'_>) -> Subscriber {
        let mut sub = self
            .app
            .subscribe("shop", topics, options)
            .await
            .unwrap_or_else(|(status, body)| panic!("subscribe refused: {status} {body}"));
        let hello = sub.expect("hello").await;
        assert_eq!(hello.data["protocol"], 1);
        sub
    }

    async fn rotate(&self, grace_secs: u64) -> Value {
        let (status, body) = self
            .app
            .call(
                Method::POST,
                &format!("/v1/apps/shop/realtime/keys/rotate?grace_secs={grace_secs}"),
                Some(&self.key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// The positions of event frames, grouped by topic, in arrival order.
fn by_topic(frames: &[Frame]) -> BTreeMap<String, Vec<i64>> {
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for frame in frames {
        let (topic, seq) = frame.position();
        seen.entry(topic).or_default().push(seq);
    }
    seen
}

backend_test!(subscribe_then_publish_and_publish_then_resume);
async fn subscribe_then_publish_and_publish_then_resume(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.shutdown_grace_sec = 300;
    let f = fixture_with(t, args).await;
    f.topic("news", "public", true).await;
    let mut live = f.subscribe(&["news"], Subscribe::default()).await;
    for i in 1..=5 {
        assert_eq!(f.publish("news", json!({"n": i})).await, i);
    }
    let frames = live.events(5).await;
    for (i, frame) in frames.iter().enumerate() {
        let n = i as i64 + 1;
        assert_eq!(frame.event, "message");
        assert_eq!(frame.position(), ("news".to_owned(), n));
        assert_eq!(frame.data["data"], json!({"n": n}));
        assert_eq!(frame.data["type"], "message");
        assert!(frame.data["published_at"].as_i64().unwrap() > 0);
        assert_eq!(frame.id, format!("news:{n}"));
    }

    // Published while nobody listened: a subscriber resuming from seq 2 gets 3..=8.
    for i in 6..=8 {
        f.publish("news", json!({"n": i})).await;
    }
    let mut resumed = f
        .subscribe(
            &["news"],
            Subscribe {
                last_event_id: Some("news:2"),
                ..Default::default()
            },
        )
        .await;
    let seqs: Vec<i64> = resumed
        .events(6)
        .await
        .iter()
        .map(|f| f.position().1)
        .collect();
    assert_eq!(seqs, (3..=8).collect::<Vec<_>>());
    // And then live, with no duplicate at the seam.
    f.publish("news", json!({"n": 9})).await;
    assert_eq!(resumed.events(1).await[0].position().1, 9);
    // A fresh subscriber starts at the head: hello's cursor says where.
    let mut fresh = f
        .app
        .subscribe("shop", &["news"], Subscribe::default())
        .await
        .unwrap();
    let hello = fresh.expect("hello").await;
    assert_eq!(hello.data["cursor"], "news:9");
    assert_eq!(hello.data["topics"], json!(["news"]));
    assert_eq!(hello.data["heartbeat_secs"], 30);
    // Shutting down ends open streams rather than waiting out the grace period.
    let started = std::time::Instant::now();
    f.app.stop().await;
    let mut rest = Vec::new();
    while let Some(frame) = live.next().await {
        rest.push(frame.position().1);
    }
    // Whatever it had not yet sent, the client resumes from its cursor.
    let expected: Vec<i64> = (6..6 + rest.len() as i64).collect();
    assert_eq!(rest, expected, "in order up to the end at shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "open streams did not hold shutdown for its grace"
    );
}

backend_test!(streams_opened_while_a_topic_is_busy_get_every_later_event_once);
/// Single-topic streams hand their socket to the topic's fan-out once they have sent
/// everything, and take it back when the fan-out cannot write; opened while events keep
/// coming, each must still get every event after its `hello`'s cursor, once, in order,
/// and without waiting for a later event to notice one it missed.
async fn streams_opened_while_a_topic_is_busy_get_every_later_event_once(t: TestDb) {
    let f = fixture(t).await;
    f.topic("ticks", "public", true).await;
    const EVENTS: i64 = 300;
    // Published back to back while the streams open.
    let publisher = f.publish_in_background(&["ticks"], EVENTS);
    let mut streams = Vec::new();
    while !publisher.is_finished() && streams.len() < 60 {
        let mut stream = f
            .app
            .subscribe("shop", &["ticks"], Subscribe::default())
            .await
            .unwrap_or_else(|(status, body)| panic!("subscribe refused: {status} {body}"));
        let hello = stream.expect("hello").await;
        let cursor = hello.data["cursor"].as_str().unwrap().to_owned();
        let from: i64 = cursor.strip_prefix("ticks:").unwrap().parse().unwrap();
        streams.push((from, stream));
    }
    publisher.await.unwrap();
    assert!(
        streams.len() > 5,
        "only {} streams opened while publishing",
        streams.len()
    );
    for (from, stream) in &mut streams {
        let seqs: Vec<i64> = stream
            .events((EVENTS - *from) as usize)
            .await
            .iter()
            .map(|frame| frame.position().1)
            .collect();
        assert_eq!(
            seqs,
            (*from + 1..=EVENTS).collect::<Vec<_>>(),
            "opened at {from}"
        );
    }
}

backend_test!(reconnecting_across_two_topics_while_publishing_loses_nothing);
async fn reconnecting_across_two_topics_while_publishing_loses_nothing(t: TestDb) {
    let f = fixture(t).await;
    f.topic("a", "token", true).await;
    f.topic("b", "public", true).await;
    let token = f.token(&["a"]).await;
    const PER_TOPIC: i64 = 150;

    let mut sub = f
        .subscribe(
            &["a", "b"],
            Subscribe {
                token: Some(&token),
                ..Default::default()
            },
        )
        .await;
    let publisher = f.publish_in_background(&["a", "b"], PER_TOPIC);

    // Drop the connection three times mid-stream and resume from the last cursor.
    let mut frames = Vec::new();
    // Alternate between the direct and the routed HTTP path: both resume the same way.
    for round in 0..4 {
        frames.extend(sub.events(40).await);
        let cursor = sub.cursor.clone();
        assert!(
            cursor.starts_with("a:") && cursor.contains(",b:"),
            "{cursor}"
        );
        drop(sub);
        sub = f
            .subscribe(
                &["a", "b"],
                Subscribe {
                    token: Some(&token),
                    last_event_id: Some(&cursor),
                    routed: round % 2 == 0,
                    ..Default::default()
                },
            )
            .await;
    }
    let remaining = (2 * PER_TOPIC) as usize - frames.len();
    frames.extend(sub.events(remaining).await);
    publisher.await.unwrap();

    let seen = by_topic(&frames);
    let all: Vec<i64> = (1..=PER_TOPIC).collect();
    assert_eq!(seen["a"], all, "topic a: every seq once, in order");
    assert_eq!(seen["b"], all, "topic b: every seq once, in order");
    f.app.stop().await;
}

backend_test!(a_reader_too_slow_for_the_live_channel_catches_up_from_the_log);
async fn a_reader_too_slow_for_the_live_channel_catches_up_from_the_log(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.realtime_broadcast_capacity = 4;
    let f = fixture_with(t, args).await;
    f.topic("firehose", "public", true).await;
    let mut sub = f.subscribe(&["firehose"], Subscribe::default()).await;
    // Far more than the channel holds, published while the reader reads nothing.
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({"topic": "firehose", "data": {"i": i, "pad": "x".repeat(200)}}))
        .collect();
    for _ in 0..4 {
        let (status, body) = f
            .app
            .call(
                Method::POST,
                "/v1/apps/shop/events",
                Some(&f.key),
                Some(json!({"events": batch})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let seqs: Vec<i64> = sub
        .events(2000)
        .await
        .iter()
        .map(|f| f.position().1)
        .collect();
    assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    // Live again afterwards.
    f.publish("firehose", json!({"after": true})).await;
    assert_eq!(sub.events(1).await[0].position().1, 2001);
    f.app.stop().await;
}

backend_test!(missing_and_internal_topics_get_the_same_404);
async fn missing_and_internal_topics_get_the_same_404(t: TestDb) {
    let f = fixture(t).await;
    f.topic("internal", "public", false).await;
    f.topic("open", "public", true).await;
    let missing = f
        .app
        .subscribe("shop", &["missing"], Subscribe::default())
        .await
        .err()
        .unwrap();
    let internal = f
        .app
        .subscribe("shop", &["internal"], Subscribe::default())
        .await
        .err()
        .unwrap();
    let mixed = f
        .app
        .subscribe("shop", &["open", "internal"], Subscribe::default())
        .await
        .err()
        .unwrap();
    let no_app = f
        .app
        .subscribe("nope", &["open"], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!(missing.0, 404);
    assert_eq!(code(&missing.1), "not_found");
    assert_eq!(missing, internal);
    assert_eq!(missing, mixed);
    assert_eq!(missing, no_app);
    // Bad requests are 400s with a reason.
    let (status, body) = f
        .app
        .subscribe("shop", &[], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = f
        .app
        .subscribe("shop", &["bad topic"], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _) = f
        .app
        .subscribe("shop", &many, Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!(status, 400);
    f.app.stop().await;
}

/// A token for `app` with `claims`, signed with the key stored for `app` in the database
/// (or `secret` when given): how a forger who stole or guessed a key would make one.
async fn forge(t: &TestDb, app: &str, claims: &TokenClaims, secret: Option<&[u8]>) -> String {
    let keys =
        t.db.signing_keys(&AppId::parse(app).unwrap(), SUBSCRIBER_TOKEN_PURPOSE)
            .await
            .unwrap();
    let key = keys.last().expect("the app has a key");
    subscriber_token::sign(claims, &key.kid, secret.unwrap_or(&key.secret))
}

backend_test!(every_bad_token_gets_the_same_401);
async fn every_bad_token_gets_the_same_401(t: TestDb) {
    let f = fixture(t).await;
    f.topic("orders", "token", true).await;
    f.topic("other", "token", true).await;
    f.app.create_app("blog").await;
    let blog_key = f.app.create_key("blog", &["app:admin"]).await;
    f.topic_of("blog", &blog_key, "orders", "token", true).await;
    let (status, blog_token) = f
        .app
        .call(
            Method::POST,
            "/v1/apps/blog/subscriber-tokens",
            Some(&blog_key),
            Some(json!({"topics": ["orders"]})),
        )
        .await;
    assert_eq!(status, 201);
    let blog_token = blog_token["token"].as_str().unwrap().to_owned();

    let good = f.token(&["orders"]).await;
    let now = now_ms() / 1000;
    let claims = |app: &str, topics: &[&str], iat: i64, exp: i64| TokenClaims {
        app: app.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        iat,
        nbf: None,
        exp,
        sub: None,
    };
    let t = &f.app.t;
    let expired = forge(
        t,
        "shop",
        &claims("shop", &["orders"], now - 120, now - 60),
        None,
    )
    .await;
    let not_yet = forge(
        t,
        "shop",
        &claims("shop", &["orders"], now + 3600, now + 7200),
        None,
    )
    .await;
    let claims_other_app =
        forge(t, "shop", &claims("blog", &["orders"], now, now + 60), None).await;
    let wrong_key = forge(
        t,
        "shop",
        &claims("shop", &["orders"], now, now + 60),
        Some(b"guess"),
    )
    .await;
    let no_topics = forge(t, "shop", &claims("shop", &[], now, now + 60), None).await;
    // Lifetimes beyond the configured maximum (a day), and times that would overflow.
    let forever = forge(t, "shop", &claims("shop", &["orders"], now, i64::MAX), None).await;
    let too_long = forge(
        t,
        "shop",
        &claims("shop", &["orders"], now, now + 86_400 + 3600),
        None,
    )
    .await;
    let negative_iat = forge(t, "shop", &claims("shop", &["orders"], -1, now + 60), None).await;
    let (_, body, _) = {
        let mut parts = good.splitn(3, '.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let alg_none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
    );
    let other_topic = f.token(&["other"]).await;

    let bad: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-token")),
        ("an API key", Some(f.key.as_str())),
        ("expired", Some(&expired)),
        ("not yet valid", Some(&not_yet)),
        ("claims another app", Some(&claims_other_app)),
        ("another app's token", Some(&blog_token)),
        ("wrong key", Some(&wrong_key)),
        ("no topics", Some(&no_topics)),
        ("lives for ever", Some(&forever)),
        ("lives longer than the maximum", Some(&too_long)),
        ("issued before the epoch", Some(&negative_iat)),
        ("alg none", Some(&alg_none)),
        ("another topic", Some(&other_topic)),
    ];
    let mut answers = Vec::new();
    for (case, token) in &bad {
        for (in_query, routed) in [(false, false), (true, false), (false, true)] {
            let options = Subscribe {
                token: *token,
                token_in_query: in_query,
                routed,
                ..Default::default()
            };
            let refused = f.app.subscribe("shop", &["orders"], options).await.err();
            let (status, body) = refused.unwrap_or_else(|| panic!("{case} was accepted"));
            assert_eq!(status, 401, "{case}: {body}");
            answers.push(body);
        }
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one generic 401: {answers:?}"
    );

    // The good token works from the header and from the query.
    f.subscribe(
        &["orders"],
        Subscribe {
            token: Some(&good),
            ..Default::default()
        },
    )
    .await;
    f.subscribe(
        &["orders"],
        Subscribe {
            token: Some(&good),
            token_in_query: true,
            ..Default::default()
        },
    )
    .await;
    f.app.stop().await;
}

backend_test!(minting_checks_topics_and_clamps_the_ttl);
async fn minting_checks_topics_and_clamps_the_ttl(t: TestDb) {
    let f = fixture(t).await;
    f.topic("orders", "token", true).await;
    f.topic("internal", "token", false).await;
    let (status, body) = f.mint(json!({"topics": ["orders", "ghost"]})).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'ghost'"),
        "{body}"
    );
    let (status, body) = f.mint(json!({"topics": ["internal"]})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'internal'"),
        "{body}"
    );
    let (status, _) = f.mint(json!({"topics": []})).await;
    assert_eq!(status, 400);
    let (status, _) = f.mint(json!({"topics": ["orders"], "ttl": 5})).await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, _) = f
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/subscriber-tokens",
            None,
            Some(json!({"topics": ["orders"]})),
        )
        .await;
    assert_eq!(status, 401);

    for (ttl, expected) in [
        (None, 3600),
        (Some(1), 10),
        (Some(600), 600),
        (Some(10_000_000), 86_400),
    ] {
        let mut body = json!({"topics": ["orders"], "sub": "user-1"});
        if let Some(ttl) = ttl {
            body["ttl_secs"] = json!(ttl);
        }
        let before = now_ms();
        let (status, minted) = f.mint(body).await;
        assert_eq!(status, 201, "{minted}");
        let expires_at = minted["expires_at"].as_i64().unwrap();
        let lifetime = (expires_at - before) / 1000;
        assert!(
            (expected - 1..=expected).contains(&lifetime),
            "ttl {ttl:?}: {lifetime}"
        );
        // A standard JWT: the claims decode without the key.
        let token = minted["token"].as_str().unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["app"], "shop");
        assert_eq!(claims["topics"], json!(["orders"]));
        assert_eq!(claims["sub"], "user-1");
        assert_eq!(claims["exp"].as_i64().unwrap() * 1000, expires_at);
    }
    f.app.stop().await;
}

backend_test!(rotated_keys_stay_valid_for_their_grace_and_other_nodes_learn_of_rotation);
async fn rotated_keys_stay_valid_for_their_grace_and_other_nodes_learn_of_rotation(t: TestDb) {
    let f = fixture(t).await;
    f.topic("orders", "token", true).await;
    let first = f.token(&["orders"]).await;
    // A second node on the same database caches the first key.
    let node_b = f.app.second_node().await;
    let subscribe_on_b = |token: String| {
        let node_b = &node_b;
        async move {
            node_b
                .subscribe(
                    "shop",
                    &["orders"],
                    Subscribe {
                        token: Some(&token),
                        ..Default::default()
                    },
                )
                .await
                .map(drop)
        }
    };
    subscribe_on_b(first.clone())
        .await
        .expect("node b accepts the first token");

    let rotated = f.rotate(3600).await;
    assert_ne!(rotated["kid"], "k1");
    let second = f.token(&["orders"]).await;
    assert_ne!(header_kid(&first), header_kid(&second));
    // Within the grace both verify, on both nodes: node b learns the new kid at once.
    f.subscribe(
        &["orders"],
        Subscribe {
            token: Some(&first),
            ..Default::default()
        },
    )
    .await;
    f.subscribe(
        &["orders"],
        Subscribe {
            token: Some(&second),
            ..Default::default()
        },
    )
    .await;
    subscribe_on_b(second.clone())
        .await
        .expect("node b accepts the rotated key at once");

    // A rotation with no grace ends both earlier keys at once on this node.
    f.rotate(0).await;
    let third = f.token(&["orders"]).await;
    for old in [&first, &second] {
        let (status, _) = f
            .app
            .subscribe(
                "shop",
                &["orders"],
                Subscribe {
                    token: Some(old),
                    ..Default::default()
                },
            )
            .await
            .err()
            .expect("refused");
        assert_eq!(status, 401);
    }
    f.subscribe(
        &["orders"],
        Subscribe {
            token: Some(&third),
            ..Default::default()
        },
    )
    .await;
    subscribe_on_b(third)
        .await
        .expect("node b accepts the newest key");
    node_b.stop().await;
    f.app.stop().await;
}

fn header_kid(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

backend_test!(a_stream_warns_before_its_token_expires_then_ends);
async fn a_stream_warns_before_its_token_expires_then_ends(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.subscriber_token_ttl_min_sec = 1;
    args.realtime.realtime_token_notice_sec = 1;
    let f = fixture_with(t, args).await;
    f.topic("orders", "token", true).await;
    let (status, minted) = f.mint(json!({"topics": ["orders"], "ttl_secs": 3})).await;
    assert_eq!(status, 201);
    let token = minted["token"].as_str().unwrap();
    let expires_at = minted["expires_at"].as_i64().unwrap();
    let mut sub = f
        .subscribe(
            &["orders"],
            Subscribe {
                token: Some(token),
                ..Default::default()
            },
        )
        .await;
    f.publish("orders", json!({"before": "expiry"})).await;
    assert_eq!(sub.events(1).await[0].position().1, 1);
    let expiring = sub.expect("token_expiring").await;
    assert_eq!(expiring.data["expires_at"], expires_at);
    assert!(now_ms() < expires_at, "the notice comes before the cut");
    let expired = sub.expect("token_expired").await;
    assert_eq!(expired.data["expired_at"], expires_at);
    assert!(now_ms() >= expires_at - 1000);
    assert!(sub.next().await.is_none(), "the stream ends at expiry");
    // Reconnecting with the same token is refused; a fresh one resumes with nothing lost.
    f.publish("orders", json!({"after": "expiry"})).await;
    let (status, _) = f
        .app
        .subscribe(
            "shop",
            &["orders"],
            Subscribe {
                token: Some(token),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let fresh = f.token(&["orders"]).await;
    let cursor = sub.cursor.clone();
    let mut resumed = f
        .subscribe(
            &["orders"],
            Subscribe {
                token: Some(&fresh),
                last_event_id: Some(&cursor),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(resumed.events(1).await[0].position().1, 2);
    f.app.stop().await;
}

backend_test!(a_cursor_beyond_retention_or_garbage_gets_a_reset_frame);
async fn a_cursor_beyond_retention_or_garbage_gets_a_reset_frame(t: TestDb) {
    let f = fixture(t).await;
    let (status, body) = f
        .app
        .call(Method::POST, "/v1/apps/shop/topics", Some(&f.key),
              Some(json!({"name": "short", "auth_mode": "public", "retention": {"max_events": 5, "max_age_secs": null}})))
        .await;
    assert_eq!(status, 201, "{body}");
    f.app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/short/external",
            Some(&f.key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    for i in 1..=20 {
        f.publish("short", json!({"i": i})).await;
    }
    f.app
        .t
        .db
        .prune(now_ms(), DEFAULT_DELIVERY_HISTORY)
        .await
        .unwrap();

    let mut sub = f
        .app
        .subscribe(
            "shop",
            &["short"],
            Subscribe {
                last_event_id: Some("short:2"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    sub.expect("hello").await;
    let reset = sub.expect("reset").await;
    assert_eq!(reset.data["reason"], "cursor_expired");
    assert_eq!(
        reset.data["lost"],
        json!([{"topic": "short", "from_seq": 3, "to_seq": 15}])
    );
    assert_eq!(reset.id, "short:15");
    let seqs: Vec<i64> = sub.events(5).await.iter().map(|f| f.position().1).collect();
    assert_eq!(seqs, vec![16, 17, 18, 19, 20]);

    let mut head = 20;
    for garbage in ["garbage", "short:999", "short:-1"] {
        let mut sub = f
            .app
            .subscribe(
                "shop",
                &["short"],
                Subscribe {
                    last_event_id: Some(garbage),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        sub.expect("hello").await;
        let reset = sub.expect("reset").await;
        assert_eq!(reset.data["reason"], "cursor_invalid", "{garbage}");
        assert_eq!(reset.data["lost"], json!([]));
        assert_eq!(
            reset.id,
            format!("short:{head}"),
            "continues live from the head"
        );
        head = f.publish("short", json!({"live": garbage})).await;
        assert_eq!(sub.events(1).await[0].position().1, head);
    }
    f.app.stop().await;
}

backend_test!(multi_line_data_and_heartbeats_follow_the_sse_spec);
async fn multi_line_data_and_heartbeats_follow_the_sse_spec(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.realtime_heartbeat_sec = 1;
    let f = fixture_with(t, args).await;
    f.topic("pretty", "public", true).await;
    // Raw bytes: heartbeat comments arrive on a quiet stream.
    let mut raw = f
        .app
        .client
        .get(f.app.url("/v1/apps/shop/realtime?topic=pretty"))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains(": heartbeat\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), raw.chunk())
            .await
            .expect("a heartbeat")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.starts_with("id: pretty:0\nevent: hello\ndata: {"),
        "{text}"
    );
    drop(raw);

    // Pretty-printed JSON (with CR, LF and CRLF) is sent as several data lines, and a
    // spec-compliant parser gets the same JSON back.
    let mut sub = f.subscribe(&["pretty"], Subscribe::default()).await;
    let body = "{\"data\": {\r\n  \"a\": [1,\n 2],\r \"s\": \"line\\nbreak\"\n}}";
    let response = f
        .app
        .client
        .post(f.app.url("/v1/apps/shop/topics/pretty/events"))
        .bearer_auth(&f.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let frame = sub.events(1).await.remove(0);
    assert_eq!(frame.data["data"], json!({"a": [1, 2], "s": "line\nbreak"}));
    f.app.stop().await;
}

backend_test!(stream_limits_answer_429_per_app_and_503_per_server);
async fn stream_limits_answer_429_per_app_and_503_per_server(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.realtime.realtime_max_connections_per_app = 2;
    args.realtime.realtime_max_connections = 3;
    let f = fixture_with(t, args).await;
    f.topic("news", "public", true).await;
    f.app.create_app("blog").await;
    let blog_key = f.app.create_key("blog", &["app:admin"]).await;
    f.topic_of("blog", &blog_key, "news", "public", true).await;
    let one = f.subscribe(&["news"], Subscribe::default()).await;
    let _two = f.subscribe(&["news"], Subscribe::default()).await;
    let (status, live) = f
        .app
        .call(
            Method::GET,
            "/v1/apps/shop/realtime/subscribers",
            Some(&f.key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        live,
        json!({"streams": 2, "topics": [{"topic": "news", "subscribers": 2}]})
    );
    let (status, body) = f
        .app
        .subscribe("shop", &["news"], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    let _three = f
        .app
        .subscribe("blog", &["news"], Subscribe::default())
        .await
        .unwrap();
    let (status, body) = f
        .app
        .subscribe("blog", &["news"], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
    // Closing a stream frees its slot (the server notices once it writes to it).
    drop(one);
    let mut reopened = None;
    for _ in 0..100 {
        f.publish("news", json!({})).await;
        if let Ok(sub) = f
            .app
            .subscribe("shop", &["news"], Subscribe::default())
            .await
        {
            reopened = Some(sub);
            break;
        }
    }
    assert!(reopened.is_some(), "a closed stream's slot is freed");
    f.app.stop().await;
}

/// The CORS headers of a response (and `vary`), sorted, for comparing two answers.
fn cors_headers(response: &reqwest::Response) -> Vec<(String, String)> {
    let mut headers: Vec<_> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-") || *name == "vary")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    headers
}

backend_test!(cross_origin_subscribers_get_the_same_cors_answers_on_both_paths);
async fn cross_origin_subscribers_get_the_same_cors_answers_on_both_paths(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.cors_origins = "http://app.example".into();
    let f = fixture_with(t, args).await;
    f.topic("news", "token", true).await;
    let token = f.token(&["news"]).await;
    let url = f.app.url("/v1/apps/shop/realtime?topic=news");
    // A browser's connection: the preflight, then the subscription on the same
    // connection, the site's own cookies included. The front door answers both.
    let browser = reqwest::Client::new();
    // Requests with a dashboard session cookie go through the HTTP stack.
    let through_stack = reqwest::Client::new();
    let preflight = |routed: bool, origin: &'static str| {
        let (client, cookie) = if routed {
            (&through_stack, UNKNOWN_SESSION)
        } else {
            (&browser, "theme=dark")
        };
        client
            .request(Method::OPTIONS, &url)
            .header("cookie", cookie)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, last-event-id",
            )
            .send()
    };

    for origin in ["http://app.example", "http://evil.example"] {
        let direct_answer = preflight(false, origin).await.unwrap();
        let routed_answer = preflight(true, origin).await.unwrap();
        assert_eq!(direct_answer.status(), routed_answer.status(), "{origin}");
        assert_eq!(
            cors_headers(&direct_answer),
            cors_headers(&routed_answer),
            "{origin}"
        );
        assert!(direct_answer.headers().contains_key("x-request-id"));
        assert_eq!(direct_answer.bytes().await.unwrap().len(), 0);
        routed_answer.bytes().await.unwrap();
    }
    let allowed = preflight(false, "http://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed_headers.contains("last-event-id") && allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    allowed.bytes().await.unwrap();

    let subscribe = |routed: bool| {
        let (client, cookie) = if routed {
            (&through_stack, UNKNOWN_SESSION)
        } else {
            (&browser, "theme=dark; cart=3")
        };
        client
            .get(&url)
            .header("origin", "http://app.example")
            .header("cookie", cookie)
            .bearer_auth(&token)
            .send()
    };
    let direct = subscribe(false).await.unwrap();
    let routed = subscribe(true).await.unwrap();
    assert!(served_directly(&direct) && !served_directly(&routed));
    assert_eq!(
        (direct.status().as_u16(), routed.status().as_u16()),
        (200, 200)
    );
    assert_eq!(cors_headers(&direct), cors_headers(&routed));
    assert_eq!(
        direct.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    assert_eq!(
        direct.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    let mut direct = Subscriber::from_response(direct);
    let mut routed = Subscriber::from_response(routed);
    for subscriber in [&mut direct, &mut routed] {
        assert_eq!(subscriber.next().await.unwrap().event, "hello");
    }
    let seq = f.publish("news", json!({"n": 1})).await;
    for subscriber in [&mut direct, &mut routed] {
        assert_eq!(
            subscriber.next().await.unwrap().position(),
            ("news".into(), seq)
        );
    }

    // Refusals carry the CORS headers too, so the page can read the error.
    let refused = reqwest::Client::new()
        .get(f.app.url("/v1/apps/shop/realtime?topic=news"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert!(served_directly(&refused));
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    // An origin not configured gets no CORS grant on either path.
    let other = reqwest::Client::new()
        .get(&url)
        .header("origin", "http://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    f.app.stop().await;
}

/// PostgreSQL only: nodes sharing one database see each other's commits live. (SQLite
/// is a one-node store.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_any_postgres_node_reach_subscribers_on_every_node() {
    let Some(t) = TestDb::new(picloud_manager_core::db::Backend::Postgres).await else {
        eprintln!("skipped: set PICLOUD_TEST_DATABASE_URL to run PostgreSQL tests");
        return;
    };
    let f = fixture(t).await;
    f.topic("news", "public", true).await;
    let node_b = f.app.second_node().await;
    let mut on_a = f.subscribe(&["news"], Subscribe::default()).await;
    let mut on_b = node_b
        .subscribe("shop", &["news"], Subscribe::default())
        .await
        .unwrap();
    on_b.expect("hello").await;
    // Alternating nodes, then node A alone: node B's subscriber gets the last thirty
    // only through the cluster feed.
    for i in 0..60 {
        let node = if i % 2 == 0 || i >= 30 {
            &f.app
        } else {
            &node_b
        };
        let (status, body) = node
            .call(
                Method::POST,
                "/v1/apps/shop/topics/news/events",
                Some(&f.key),
                Some(json!({"data": {"i": i}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let all: Vec<i64> = (1..=60).collect();
    for sub in [&mut on_a, &mut on_b] {
        let seqs: Vec<i64> = sub
            .events(60)
            .await
            .iter()
            .map(|f| f.position().1)
            .collect();
        assert_eq!(seqs, all);
    }
    // Making the topic internal on node A ends its streams on node B too, and node B
    // mints no more tokens for it (though it just minted one).
    assert_eq!(f.mint_on(&node_b, "news").await, 201);
    let (status, _) = f
        .app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&f.key),
            Some(json!({"external_subscribable": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(on_b.next().await.is_none(), "node b's stream ends");
    assert!(on_a.next().await.is_none(), "node a's stream ends");
    assert_eq!(f.mint_on(&node_b, "news").await, 400);
    node_b.stop().await;
    f.app.stop().await;
}

backend_test!(making_a_topic_internal_or_deleting_it_ends_its_streams);
async fn making_a_topic_internal_or_deleting_it_ends_its_streams(t: TestDb) {
    let f = fixture(t).await;
    f.topic("a", "public", true).await;
    f.topic("b", "public", true).await;
    let mut both = f.subscribe(&["a", "b"], Subscribe::default()).await;
    let mut only_b = f.subscribe(&["b"], Subscribe::default()).await;
    assert_eq!(f.mint_on(&f.app, "a").await, 201);
    assert_eq!(f.mint_on(&f.app, "b").await, 201);
    let (status, _) = f
        .app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/a/external",
            Some(&f.key),
            Some(json!({"external_subscribable": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        both.next().await.is_none(),
        "a stream with the now-internal topic ends"
    );
    let (status, _) = f
        .app
        .subscribe("shop", &["a", "b"], Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404, "and cannot come back");
    assert_eq!(f.mint_on(&f.app, "a").await, 400, "no tokens for it either");
    // Streams of other topics go on.
    f.publish("b", json!({})).await;
    assert_eq!(only_b.events(1).await[0].position(), ("b".to_owned(), 1));
    let (status, _) = f
        .app
        .call(Method::DELETE, "/v1/apps/shop/topics/b", Some(&f.key), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        only_b.next().await.is_none(),
        "deleting the topic ends its streams"
    );
    assert_eq!(f.mint_on(&f.app, "b").await, 400);
    f.app.stop().await;
}

/// The PostgreSQL pool of a test database.
fn pg_pool(t: &TestDb) -> &sqlx::PgPool {
    match &t.db {
        picloud_manager_core::Db::Postgres(pool, _) => pool,
        _ => unreachable!("a PostgreSQL test"),
    }
}

/// Waits until `count` cluster-feed listeners are connected to database `name`; asks
/// through `t`, which may be another database of the same server.
async fn wait_for_listeners(t: &TestDb, name: &str, count: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(name)
        .fetch_one(pg_pool(t))
        .await
        .unwrap();
        if listening == count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{listening} listeners, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The name of the test database `t`.
async fn database_name(t: &TestDb) -> String {
    sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pg_pool(t))
        .await
        .unwrap()
}

/// Polls `node` with `key` until the key is refused; fails after a deadline far below
/// the key cache's 10 s TTL.
async fn refused_soon(node: &TestApp, key: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _) = node
            .call(Method::GET, "/v1/apps/shop/topics", Some(key), None)
            .await;
        if status != 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still accepted on node b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PostgreSQL only: revoking a key or deleting an app on one node (over the API, or
/// straight in the database as `picloud apps delete` does) reaches every node's key
/// cache at once, not after its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_revocations_and_app_deletions_reach_every_node_at_once() {
    let Some(t) = TestDb::new(picloud_manager_core::db::Backend::Postgres).await else {
        eprintln!("skipped: set PICLOUD_TEST_DATABASE_URL to run PostgreSQL tests");
        return;
    };
    let f = fixture(t).await;
    let node_b = f.app.second_node().await;
    let name = database_name(&f.app.t).await;
    wait_for_listeners(&f.app.t, &name, 2).await;
    let (status, created) = f
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/keys",
            Some(&f.app.admin_key),
            Some(json!({"name": "reader", "scopes": ["app:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let reader = created["key"].as_str().unwrap().to_owned();
    let (status, _) = node_b
        .call(Method::GET, "/v1/apps/shop/topics", Some(&reader), None)
        .await;
    assert_eq!(status, 200, "node b caches the key");
    let (status, _) = f
        .app
        .call(
            Method::DELETE,
            &format!("/v1/apps/shop/keys/{}", created["id"].as_str().unwrap()),
            Some(&f.app.admin_key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    refused_soon(&node_b, &reader, "revoked on node a").await;

    let other = f.app.create_key("shop", &["app:read"]).await;
    let (status, _) = node_b
        .call(Method::GET, "/v1/apps/shop/topics", Some(&other), None)
        .await;
    assert_eq!(status, 200, "node b caches the key");
    // As `picloud apps delete` does: straight in the database, then the id is reused.
    f.app.t.db.delete_app("shop").await.unwrap();
    f.app.create_app("shop").await;
    refused_soon(&node_b, &other, "the deleted app's key").await;
    node_b.stop().await;
    f.app.stop().await;
}

/// PostgreSQL only: a notification lost while a node's cluster feed was disconnected is
/// filled in when it listens again, without waiting for a later event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fills_in_events_committed_while_its_feed_was_down() {
    let Some(t) = TestDb::new(picloud_manager_core::db::Backend::Postgres).await else {
        eprintln!("skipped: set PICLOUD_TEST_DATABASE_URL to run PostgreSQL tests");
        return;
    };
    let f = fixture(t).await;
    f.topic("news", "public", true).await;
    // Node B on a pool of its own, whose connections can be told apart.
    let url_b = format!("{}?application_name=picloud_node_b", f.app.t.url);
    let t_b = f.app.t.another_node(url_b);
    let node_b = crate::common::spawn_existing(t_b, ServeArgs::for_tests()).await;
    let name = database_name(&f.app.t).await;
    wait_for_listeners(&f.app.t, &name, 2).await;
    let mut on_b = node_b
        .subscribe("shop", &["news"], Subscribe::default())
        .await
        .unwrap();
    on_b.expect("hello").await;

    // Cut node B off the database (its listener and its pool) and keep it off while
    // node A publishes.
    let admin = TestDb::new(picloud_manager_core::db::Backend::Postgres)
        .await
        .unwrap();
    let admin_pool = pg_pool(&admin);
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(admin_pool)
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'picloud_node_b'",
    )
    .bind(&name)
    .execute(admin_pool)
    .await
    .unwrap();
    wait_for_listeners(&admin, &name, 1).await;
    let (status, body) = f
        .app
        .call(
            Method::POST,
            "/v1/apps/shop/topics/news/events",
            Some(&f.key),
            Some(json!({"data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(admin_pool)
        .await
        .unwrap();

    let got: Vec<i64> = on_b
        .events(1)
        .await
        .iter()
        .map(|f| f.position().1)
        .collect();
    assert_eq!(
        got,
        [1],
        "node b's subscriber gets the event with nothing published after it"
    );
    node_b.stop().await;
    f.app.stop().await;
}
