//! Managing an app through the SDK against the real server: dashboard sessions, keys,
//! scripts called as functions, triggers.

use crate::support;

use picloud_client::keys::{CreateAppKey, CreateInstanceKey, Scope};
use picloud_client::scripts::{FunctionAccess, SaveScript, TestRequest, TestRun};
use picloud_client::topics::CreateTopic;
use picloud_client::triggers::{Handler, NewTrigger, TriggerPatch, TriggerSource};
use picloud_client::{Client, ErrorCode};
use serde_json::json;
use support::server::{Backend, PicloudServer};

#[tokio::test]
async fn an_admin_session_signs_in_reads_stats_and_signs_out() {
    let server = PicloudServer::start(&Backend::Sqlite, &[]).await;
    let created = server
        .cli(
            &[
                "admins",
                "create",
                "--email",
                "Ops@Example.com",
                "--password-stdin",
            ],
            "a long enough password 42\n",
        )
        .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let client = server.app_admin("shop").await;
    client
        .topics()
        .create(CreateTopic::new("orders"))
        .await
        .unwrap();
    client.pubsub().publish("orders", json!(1)).await.unwrap();

    let anonymous = Client::builder().base_url(server.url()).build().unwrap();
    let wrong = anonymous
        .admin()
        .sign_in("ops@example.com", "not it")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(&ErrorCode::Unauthorized));
    let session = anonymous
        .admin()
        .sign_in("ops@example.com", "a long enough password 42")
        .await
        .unwrap();
    assert_eq!(session.info().admin.email, "ops@example.com");
    assert!(
        !format!("{session:?}").contains(&session.info().csrf_token),
        "the CSRF token stays out of Debug"
    );
    assert_eq!(session.current().await.unwrap().admin, session.info().admin);
    let stats = session.stats(Some("shop")).await.unwrap();
    assert_eq!(stats.app.as_deref(), Some("shop"));
    assert!(stats.interval_secs > 0 && stats.window_secs >= stats.interval_secs);
    let copy = session.clone();
    session.sign_out().await.unwrap();
    assert_eq!(
        copy.current().await.unwrap_err().status(),
        Some(401),
        "the session is over"
    );
}

#[tokio::test]
async fn keys_scripts_functions_and_triggers_round_trip() {
    let server = PicloudServer::start(&Backend::Sqlite, &[]).await;
    let admin = server.admin();
    let instance_key = admin
        .keys()
        .create_instance(CreateInstanceKey {
            name: "ops".into(),
            scopes: None,
        })
        .await
        .unwrap();
    assert!(
        !format!("{instance_key:?}").contains(&instance_key.key),
        "a created key's secret stays out of Debug"
    );
    assert!(admin
        .keys()
        .list_instance()
        .await
        .unwrap()
        .keys
        .iter()
        .any(|k| k.id == instance_key.id));
    assert!(admin
        .keys()
        .revoke_instance(&instance_key.id)
        .await
        .unwrap()
        .revoked_at
        .is_some());

    let client = server.app_admin("shop").await;
    let caller_key = client
        .keys()
        .create(CreateAppKey::new("caller", [Scope::FunctionsInvoke]))
        .await
        .unwrap();
    assert_eq!(caller_key.scopes, [Scope::FunctionsInvoke]);

    let source = "fn handle(req) {\n    #{ status: 200, body: #{ hello: req.query.name, sum: req.json.a + req.json.b } }\n}";
    let saved = client
        .scripts()
        .save("hello", SaveScript::new(source))
        .await
        .unwrap();
    assert_eq!(
        (saved.summary.version, saved.summary.access.clone()),
        (1, FunctionAccess::Key)
    );
    let caller = Client::builder()
        .base_url(server.url())
        .app("shop")
        .api_key(caller_key.key.clone())
        .build()
        .unwrap();
    let mut request = TestRequest::default();
    request.query.insert("name".into(), "test".into());
    request
        .headers
        .insert("content-type".into(), "application/json".into());
    request.body = Some(r#"{"a":1,"b":2}"#.into());
    let run = client
        .scripts()
        .test("hello", TestRun::function(request))
        .await
        .unwrap();
    assert_eq!(run.outcome, "ok", "{run:?}");

    let anonymous = Client::builder()
        .base_url(server.url())
        .app("shop")
        .build()
        .unwrap();
    let refused = anonymous
        .functions()
        .call("hello", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401));
    let answer = caller
        .functions()
        .call("hello", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json::<serde_json::Value>().unwrap()["sum"], 3);

    client
        .scripts()
        .save(
            "hello",
            SaveScript::new(source).access(FunctionAccess::Public),
        )
        .await
        .unwrap();
    let versions = client.scripts().versions("hello").await.unwrap();
    assert_eq!(
        versions
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let restored = client.scripts().restore("hello", 1).await.unwrap();
    assert_eq!(restored.summary.version, 3);
    assert_eq!(restored.source, source);
    client.scripts().save_source("hello", source).await.unwrap();
    assert_eq!(client.scripts().list().await.unwrap().scripts.len(), 1);

    client
        .topics()
        .create(CreateTopic::new("orders"))
        .await
        .unwrap();
    let trigger = client
        .triggers()
        .create(NewTrigger::new(
            TriggerSource::topic("orders"),
            Handler::script("hello"),
        ))
        .await
        .unwrap();
    assert!(!format!("{trigger:?}").contains(&trigger.secret));
    let patched = client
        .triggers()
        .update(
            &trigger.trigger.id,
            TriggerPatch {
                enabled: Some(false),
                ordered: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((patched.enabled, patched.ordered), (false, true));
    assert_eq!(client.triggers().list().await.unwrap().triggers.len(), 1);
    client.triggers().delete(&trigger.trigger.id).await.unwrap();
    assert_eq!(
        client
            .triggers()
            .get(&trigger.trigger.id)
            .await
            .unwrap_err()
            .code(),
        Some(&ErrorCode::TriggerNotFound)
    );
    client.scripts().delete("hello").await.unwrap();
    assert_eq!(
        client.scripts().get("hello").await.unwrap_err().code(),
        Some(&ErrorCode::ScriptNotFound)
    );
}
