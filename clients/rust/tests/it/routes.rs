//! Calls every method of the SDK against a mock that answers each documented route with
//! a sample of its documented answer: every route of `docs/openapi.json` is reached by
//! some method, and every answer decodes into the method's type.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use picloud_client::apps::CreateApp;
use picloud_client::dead_letters::{ListDeadLetters, ReplayBody};
use picloud_client::deliveries::ListDeliveries;
use picloud_client::events::ReadEvents;
use picloud_client::keys::{CreateAppKey, CreateInstanceKey, Scope};
use picloud_client::pubsub::{BatchEvent, Event};
use picloud_client::realtime::StreamItem;
use picloud_client::scripts::{ListRuns, SaveScript, TestRequest, TestRun};
use picloud_client::sources::NewSource;
use picloud_client::topics::CreateTopic;
use picloud_client::triggers::{Handler, NewTrigger, TriggerPatch, TriggerSource};
use picloud_client::{Client, USER_AGENT};
use serde_json::json;
use support::mock::MockServer;
use support::openapi;

#[tokio::test]
async fn every_documented_route_is_reached_by_a_method_and_its_answer_decodes() {
    let mock = MockServer::start().await;
    let client = Client::builder()
        .base_url(&mock.url)
        .app("shop")
        .api_key("pk_test_key")
        .build()
        .unwrap();

    // system
    client.system().health().await.unwrap();
    client.system().ready().await.unwrap();
    assert_eq!(client.system().metrics().await.unwrap(), "picloud_up 1\n");
    client.system().openapi().await.unwrap();
    // admin
    let session = client
        .admin()
        .sign_in("admin@example.com", "pw")
        .await
        .unwrap();
    session.current().await.unwrap();
    session.stats(Some("shop")).await.unwrap();
    session.clone().sign_out().await.unwrap();
    // apps and keys
    client.apps().list().await.unwrap();
    client.apps().create(CreateApp::new("shop")).await.unwrap();
    client.apps().get("shop").await.unwrap();
    client.apps().delete("shop").await.unwrap();
    client.keys().list().await.unwrap();
    client
        .keys()
        .create(CreateAppKey::new("k", [Scope::AppRead]))
        .await
        .unwrap();
    client.keys().revoke("key_1").await.unwrap();
    client.keys().list_instance().await.unwrap();
    client
        .keys()
        .create_instance(CreateInstanceKey {
            name: "ops".into(),
            scopes: None,
        })
        .await
        .unwrap();
    client.keys().revoke_instance("key_2").await.unwrap();
    // topics and events
    client.topics().list().await.unwrap();
    client
        .topics()
        .create(CreateTopic::new("orders"))
        .await
        .unwrap();
    client.topics().get("chat/lobby:1").await.unwrap();
    client.topics().set_external("orders", true).await.unwrap();
    client.topics().delete("orders").await.unwrap();
    client
        .events()
        .read(
            "orders",
            ReadEvents {
                after: Some(3),
                limit: Some(10),
            },
        )
        .await
        .unwrap();
    client
        .pubsub()
        .publish("orders", Event::new(json!({"n": 1})).event_type("created"))
        .await
        .unwrap();
    client
        .pubsub()
        .publish_batch([BatchEvent::new("orders", json!(1))])
        .await
        .unwrap();
    client
        .pubsub()
        .subscriber_token(["orders"], Some(Duration::from_secs(60)), Some("u1"))
        .await
        .unwrap();
    // triggers, deliveries, dead letters
    let new = NewTrigger::new(
        TriggerSource::topic("orders"),
        Handler::webhook("https://hooks.example.com/x"),
    );
    client.triggers().list().await.unwrap();
    client.triggers().create(new).await.unwrap();
    client.triggers().get("trg_1").await.unwrap();
    client
        .triggers()
        .update(
            "trg_1",
            TriggerPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client.triggers().secret("trg_1").await.unwrap();
    client.triggers().rotate_secret("trg_1").await.unwrap();
    client.triggers().delete("trg_1").await.unwrap();
    client
        .deliveries()
        .list(ListDeliveries::default())
        .await
        .unwrap();
    client.deliveries().get(1).await.unwrap();
    client.deliveries().retry(1).await.unwrap();
    client
        .dead_letters()
        .list(ListDeadLetters::default())
        .await
        .unwrap();
    client.dead_letters().get(1).await.unwrap();
    client.dead_letters().replay(1).await.unwrap();
    client
        .dead_letters()
        .replay_many(ReplayBody::default())
        .await
        .unwrap();
    client.dead_letters().purge(1).await.unwrap();
    client.dead_letters().purge_all().await.unwrap();
    // scripts and functions
    client.scripts().list().await.unwrap();
    client.scripts().get("hello").await.unwrap();
    client
        .scripts()
        .save("hello", SaveScript::new("fn handle(req) { 1 }"))
        .await
        .unwrap();
    client
        .scripts()
        .save_source("hello", "fn handle(req) { 2 }")
        .await
        .unwrap();
    client.scripts().versions("hello").await.unwrap();
    client.scripts().restore("hello", 1).await.unwrap();
    client
        .scripts()
        .runs("hello", ListRuns::default())
        .await
        .unwrap();
    client
        .scripts()
        .test("hello", TestRun::function(TestRequest::default()))
        .await
        .unwrap();
    client.scripts().delete("hello").await.unwrap();
    client
        .functions()
        .call("hello", json!({"a": 1}))
        .await
        .unwrap();
    client
        .functions()
        .get("hello", &[("q", "1")])
        .await
        .unwrap();
    // sources
    client.sources().list().await.unwrap();
    client
        .sources()
        .create(NewSource::postgres_outbox("postgres://relay@127.0.0.1/db"))
        .await
        .unwrap();
    client.sources().get("src_1").await.unwrap();
    client.sources().set_enabled("src_1", false).await.unwrap();
    client.sources().delete("src_1").await.unwrap();
    // realtime
    client
        .realtime()
        .rotate_keys(Some(Duration::from_secs(10)))
        .await
        .unwrap();
    client.realtime().live_subscribers().await.unwrap();
    let mut subscription = client.realtime().subscribe(["orders"]).build().unwrap();
    assert!(matches!(
        subscription.next().await,
        Some(Ok(StreamItem::Open(_)))
    ));
    match subscription.next().await {
        Some(Ok(StreamItem::Event(event))) => {
            assert_eq!((event.seq, event.cursor.as_str()), (1, "orders:1"))
        }
        other => panic!("expected the event, got {other:?}"),
    }
    assert_eq!(subscription.cursor(), Some("orders:1"));
    drop(subscription);

    let requests = mock.requests();
    let unmatched: Vec<_> = requests
        .iter()
        .filter(|r| r.route.is_none())
        .map(|r| (&r.method, &r.target))
        .collect();
    assert!(
        unmatched.is_empty(),
        "requests to undocumented routes: {unmatched:?}"
    );
    let reached: BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.route.clone().unwrap()))
        .collect();
    let documented = openapi::routes(&openapi::document());
    let missed: Vec<_> = documented.difference(&reached).collect();
    assert!(
        missed.is_empty(),
        "documented routes no test call reached: {missed:#?}"
    );

    // What every request carries.
    for request in &requests {
        assert_eq!(
            request.header("user-agent"),
            Some(USER_AGENT),
            "{}",
            request.target
        );
    }
    let find = |method: &str, route: &str| {
        requests
            .iter()
            .find(|r| r.method == method && r.route.as_deref() == Some(route))
            .unwrap()
            .clone()
    };
    assert_eq!(
        find("GET", "/v1/apps/{app}/topics").header("authorization"),
        Some("Bearer pk_test_key")
    );
    let get_topic = find("GET", "/v1/apps/{app}/topics/{topic}");
    assert_eq!(
        get_topic.target, "/v1/apps/shop/topics/chat%2Flobby%3A1",
        "one percent-encoded segment"
    );
    for route in [
        "/v1/apps/{app}/topics/{topic}/events",
        "/v1/apps/{app}/events",
    ] {
        let key = find("POST", route)
            .header("idempotency-key")
            .map(str::to_owned);
        assert!(
            key.is_some_and(|k| k.len() > 10),
            "{route} sends a generated Idempotency-Key"
        );
    }
    let publish = find("POST", "/v1/apps/{app}/topics/{topic}/events");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&publish.body).unwrap(),
        json!({"data": {"n": 1}, "type": "created"})
    );
    let stats = find("GET", "/v1/admin/stats");
    assert_eq!(stats.header("cookie"), Some("picloud_session=s3cr3t"));
    assert_eq!(
        stats.header("authorization"),
        None,
        "a session call sends no API key"
    );
    assert!(find("DELETE", "/v1/admin/session")
        .header("x-csrf-token")
        .is_some());
    let stream = find("GET", "/v1/apps/{app}/realtime");
    assert_eq!(stream.target, "/v1/apps/shop/realtime?topic=orders");
    assert_eq!(stream.header("accept"), Some("text/event-stream"));
    assert_eq!(
        stream.header("authorization"),
        None,
        "the API key never goes to the realtime route"
    );
    assert_eq!(
        find("POST", "/v1/apps/{app}/realtime/keys/rotate").target,
        "/v1/apps/shop/realtime/keys/rotate?grace_secs=10"
    );
    assert_eq!(
        find("PUT", "/v1/apps/{app}/scripts/{script}").header("content-type"),
        Some("application/json")
    );
}
