//! Scripts over HTTP, end to end: saving compiles first and refuses with line and
//! column, every save is a version, versions restore, concurrent saves each land whole,
//! and only `scripts:manage` (or `app:admin`) sees source.

use crate::common::{code, spawn_app};
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

const PATH: &str = "/v1/apps/shop/scripts/mint_token";

backend_test!(scripts_save_as_versions_and_restore);
async fn scripts_save_as_versions_and_restore(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["scripts:manage"]).await;
    let key = Some(key.as_str());

    let first = "fn handle(req) { #{ status: 200 } }";
    let (status, saved) = app
        .call(Method::PUT, PATH, key, Some(json!({"source": first})))
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (
            &saved["name"],
            &saved["version"],
            &saved["access"],
            &saved["source"]
        ),
        (
            &json!("mint_token"),
            &json!(1),
            &json!("key"),
            &json!(first)
        )
    );

    let second = "fn handle(req) { #{ status: 201 } }";
    let (status, saved) = app
        .call(
            Method::PUT,
            PATH,
            key,
            Some(json!({"source": second, "access": "public"})),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (&saved["version"], &saved["access"]),
        (&json!(2), &json!("public"))
    );

    let (_, current) = app.call(Method::GET, PATH, key, None).await;
    assert_eq!(
        (&current["version"], &current["source"]),
        (&json!(2), &json!(second))
    );

    let (_, list) = app
        .call(Method::GET, "/v1/apps/shop/scripts", key, None)
        .await;
    assert_eq!(list["scripts"].as_array().unwrap().len(), 1, "{list}");
    assert!(list["scripts"][0].get("source").is_none(), "{list}");

    let versions_path = format!("{PATH}/versions");
    let (_, versions) = app.call(Method::GET, &versions_path, key, None).await;
    let listed: Vec<(Value, Value)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].clone(), v["source"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![(json!(2), json!(second)), (json!(1), json!(first))]
    );

    // Restoring version 1 saves its source again, as version 3; access is kept.
    let (status, restored) = app
        .call(
            Method::POST,
            &format!("{PATH}/versions/1/restore"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(
        (
            &restored["version"],
            &restored["source"],
            &restored["access"]
        ),
        (&json!(3), &json!(first), &json!("public"))
    );
    let (status, missing) = app
        .call(
            Method::POST,
            &format!("{PATH}/versions/9/restore"),
            key,
            None,
        )
        .await;
    assert_eq!((status, code(&missing)), (404, "script_not_found"));

    let (status, _) = app.call(Method::DELETE, PATH, key, None).await;
    assert_eq!(status, 204);
    let (status, gone) = app.call(Method::GET, PATH, key, None).await;
    assert_eq!((status, code(&gone)), (404, "script_not_found"));
    let (status, gone) = app.call(Method::GET, &versions_path, key, None).await;
    assert_eq!((status, code(&gone)), (404, "script_not_found"));
}

backend_test!(a_script_saves_from_a_plain_text_body);
async fn a_script_saves_from_a_plain_text_body(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["scripts:manage"]).await;
    let put_text = |body: Vec<u8>| {
        reqwest::Client::new()
            .put(app.url(PATH))
            .bearer_auth(&key)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
    };

    let source = "// minted for the signed-in user\nfn handle(req) { #{ ok: true } }\n";
    let (status, _, saved) = app.exchange(put_text(source.into())).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (&saved["version"], &saved["access"], &saved["source"]),
        (&json!(1), &json!("key"), &json!(source))
    );

    // A text body leaves the access setting as the last JSON save made it.
    let (status, _) = app
        .call(
            Method::PUT,
            PATH,
            Some(&key),
            Some(json!({"source": source, "access": "public"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, saved) = app.exchange(put_text(source.into())).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (&saved["version"], &saved["access"]),
        (&json!(3), &json!("public"))
    );

    let (status, _, refused) = app.exchange(put_text("fn handle(req) {".into())).await;
    assert_eq!(
        (status, code(&refused)),
        (400, "script_compile_error"),
        "{refused}"
    );
    let (status, _, refused) = app.exchange(put_text(vec![0x66, 0x6e, 0xff])).await;
    assert_eq!(
        (status, code(&refused)),
        (400, "invalid_request"),
        "{refused}"
    );
    let (_, current) = app.call(Method::GET, PATH, Some(&key), None).await;
    assert_eq!(current["version"], json!(3), "refused saves store nothing");
}

backend_test!(a_script_that_does_not_compile_is_refused_with_its_position);
async fn a_script_that_does_not_compile_is_refused_with_its_position(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let key = Some(key.as_str());
    let good = json!({"source": "40 + 2"});
    assert_eq!(app.call(Method::PUT, PATH, key, Some(good)).await.0, 200);

    for (source, line, column) in [
        ("let a = 1;\nlet b = ;\n", 2, 9),
        ("fn handle(req) {\n  req.\n}", 3, 1),
        ("import \"x\" as y;", 1, 1),
        ("eval(\"1\")", 1, 1),
    ] {
        let (status, error) = app
            .call(Method::PUT, PATH, key, Some(json!({"source": source})))
            .await;
        assert_eq!(status, 400, "{source:?}: {error}");
        assert_eq!(code(&error), "script_compile_error", "{error}");
        assert_eq!(
            (
                error["error"]["line"].as_u64(),
                error["error"]["column"].as_u64()
            ),
            (Some(line), Some(column)),
            "{source:?}: {error}"
        );
    }
    // Nothing of the refused saves was stored.
    let (_, current) = app.call(Method::GET, PATH, key, None).await;
    assert_eq!(current["version"], 1, "{current}");

    let too_long = "1;".repeat(200 * 1024);
    let (status, error) = app
        .call(Method::PUT, PATH, key, Some(json!({"source": too_long})))
        .await;
    assert_eq!(
        (status, code(&error)),
        (400, "script_compile_error"),
        "{error}"
    );
    for name in ["bad name", "a%2Fb%20c"] {
        let path = format!("/v1/apps/shop/scripts/{name}");
        let (status, error) = app
            .call(Method::PUT, &path, key, Some(json!({"source": "1"})))
            .await;
        assert_eq!(
            (status, code(&error)),
            (400, "invalid_request"),
            "{name}: {error}"
        );
    }
}

backend_test!(concurrent_saves_each_land_whole);
async fn concurrent_saves_each_land_whole(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["scripts:manage"]).await;
    let saves = (0..8).map(|i| {
        let (app, key) = (&app, key.clone());
        async move {
            let source = format!("let n = {i};\n{}", "n + 1;\n".repeat(500));
            let (status, saved) = app
                .call(
                    Method::PUT,
                    PATH,
                    Some(&key),
                    Some(json!({"source": source})),
                )
                .await;
            assert_eq!(status, 200, "{saved}");
            (saved["version"].as_i64().unwrap(), source)
        }
    });
    let mut saved: Vec<(i64, String)> = futures::future::join_all(saves).await;
    saved.sort();
    assert_eq!(
        saved.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    // Each version holds exactly the source its save sent, and the current one is the
    // newest version.
    let (_, versions) = app
        .call(Method::GET, &format!("{PATH}/versions"), Some(&key), None)
        .await;
    for version in versions["versions"].as_array().unwrap() {
        let v = version["version"].as_i64().unwrap();
        let sent = &saved.iter().find(|(n, _)| *n == v).unwrap().1;
        assert_eq!(version["source"].as_str().unwrap(), sent);
    }
    let (_, current) = app.call(Method::GET, PATH, Some(&key), None).await;
    assert_eq!(current["version"], 8);
    assert_eq!(current["source"].as_str().unwrap(), saved[7].1);
}

backend_test!(only_scripts_manage_reads_and_writes_scripts);
async fn only_scripts_manage_reads_and_writes_scripts(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    app.create_app("other").await;
    let reader = app
        .create_key("shop", &["app:read", "triggers:manage"])
        .await;
    let other = app.create_key("other", &["scripts:manage"]).await;
    let body = json!({"source": "1"});
    for key in [&reader, &other] {
        let (status, _) = app
            .call(Method::PUT, PATH, Some(key), Some(body.clone()))
            .await;
        assert!(status == 403 || status == 404, "{status}");
        let (status, _) = app.call(Method::GET, PATH, Some(key), None).await;
        assert!(status == 403 || status == 404, "{status}");
    }
    let (status, _) = app.call(Method::GET, PATH, None, None).await;
    assert_eq!(status, 401);
}
