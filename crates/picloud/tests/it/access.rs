//! The access table, walked end to end: every route, with no key, a bad key, a revoked
//! key, an instance key, a key of the route's app holding each single scope, a key of
//! another app holding every scope, a signed-in dashboard admin, and that admin's cookie
//! without its CSRF token. Each answer must be exactly what the route's rule says: 401,
//! 403, the app-hiding 404, or through to the handler.

use std::collections::BTreeSet;

use crate::common::{code, spawn_app, AdminSession, TestApp};
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use picloud_shared::access::Access;
use picloud_shared::Scope;
use reqwest::Method;

/// Who calls.
#[derive(Debug, Clone)]
enum Caller {
    Anonymous,
    Garbage,
    Revoked,
    Instance,
    /// A key of the path's app with exactly this scope.
    OwnApp(Scope),
    /// A key of another app with every app scope.
    OtherApp,
    /// A signed-in dashboard admin: the session cookie and its CSRF token.
    Admin,
    /// The admin's session cookie without the CSRF token.
    CookieWithoutCsrf,
}

/// What a caller sends.
enum Credentials {
    None,
    Key(String),
    Session { session: AdminSession, csrf: bool },
}

/// What must happen, stated from the rules in DESIGN.md rather than from the code.
#[derive(Debug, PartialEq)]
enum Expect {
    Unauthorized,
    Forbidden,
    /// 403 for a cookie-authenticated change without the CSRF token.
    MissingCsrf,
    HiddenApp,
    Allowed,
}

fn expected(access: Access, method: &str, caller: &Caller) -> Expect {
    use Caller::*;
    use Expect::*;
    let grants = |held: Scope, needed: Scope| held == needed || held == Scope::AppAdmin;
    match (access, caller) {
        // No API key is involved: the handler judges subscriber tokens itself.
        (Access::Public | Access::Subscriber, _) => Allowed,
        // HTTP functions: callers without an API key (a session cookie is not one)
        // reach the handler, which serves them public scripts only; an API key must be
        // one of the app's with functions:invoke.
        (Access::Function, Anonymous | Admin | CookieWithoutCsrf) => Allowed,
        (Access::Function, Garbage | Revoked) => Unauthorized,
        (Access::Function, Instance) => Forbidden,
        (Access::Function, OtherApp) => HiddenApp,
        (Access::Function, OwnApp(held)) => {
            if grants(*held, Scope::FunctionsInvoke) {
                Allowed
            } else {
                Forbidden
            }
        }
        // A signed-in admin is a superuser; reads need no CSRF token, changes do.
        (_, Admin) => Allowed,
        (_, CookieWithoutCsrf) if method == "GET" => Allowed,
        (_, CookieWithoutCsrf) => MissingCsrf,
        (_, Anonymous | Garbage | Revoked) => Unauthorized,
        (Access::Admin, Instance | OwnApp(_) | OtherApp) => Forbidden,
        (Access::Instance, Instance) => Allowed,
        (Access::Instance, OwnApp(_) | OtherApp) => Forbidden,
        (Access::InstanceOrApp(_), Instance) => Allowed,
        (Access::App(_), Instance) => Forbidden,
        (Access::InstanceOrApp(_) | Access::App(_), OtherApp) => HiddenApp,
        (Access::InstanceOrApp(needed) | Access::App(needed), OwnApp(held)) => {
            if grants(*held, needed) {
                Allowed
            } else {
                Forbidden
            }
        }
    }
}

/// The access each route must have, written down here independently of the server's
/// table so that a wrong entry there fails this test.
const SPEC: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/", Access::Public),
    ("GET", "/_", Access::Public),
    ("GET", "/_/", Access::Public),
    ("GET", "/_/{*path}", Access::Public),
    ("POST", "/v1/admin/session", Access::Public),
    ("GET", "/v1/admin/session", Access::Admin),
    ("DELETE", "/v1/admin/session", Access::Admin),
    ("GET", "/v1/admin/stats", Access::Admin),
    ("GET", "/v1/keys", Access::Instance),
    ("POST", "/v1/keys", Access::Instance),
    ("DELETE", "/v1/keys/{key_id}", Access::Instance),
    ("GET", "/v1/apps", Access::Instance),
    ("POST", "/v1/apps", Access::Instance),
    (
        "GET",
        "/v1/apps/{app}",
        Access::InstanceOrApp(Scope::AppRead),
    ),
    ("DELETE", "/v1/apps/{app}", Access::Instance),
    (
        "GET",
        "/v1/apps/{app}/keys",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    (
        "POST",
        "/v1/apps/{app}/keys",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/keys/{key_id}",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    ("GET", "/v1/apps/{app}/topics", Access::App(Scope::AppRead)),
    (
        "POST",
        "/v1/apps/{app}/topics",
        Access::App(Scope::AppAdmin),
    ),
    (
        "GET",
        "/v1/apps/{app}/topics/{topic}",
        Access::App(Scope::AppRead),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/topics/{topic}",
        Access::App(Scope::AppAdmin),
    ),
    (
        "PATCH",
        "/v1/apps/{app}/topics/{topic}/external",
        Access::App(Scope::AppAdmin),
    ),
    (
        "POST",
        "/v1/apps/{app}/topics/{topic}/events",
        Access::App(Scope::PubsubPublish),
    ),
    (
        "GET",
        "/v1/apps/{app}/topics/{topic}/events",
        Access::App(Scope::AppRead),
    ),
    (
        "POST",
        "/v1/apps/{app}/events",
        Access::App(Scope::PubsubPublish),
    ),
    ("GET", "/v1/apps/{app}/realtime", Access::Subscriber),
    (
        "POST",
        "/v1/apps/{app}/subscriber-tokens",
        Access::App(Scope::PubsubToken),
    ),
    (
        "POST",
        "/v1/apps/{app}/realtime/keys/rotate",
        Access::App(Scope::AppAdmin),
    ),
    (
        "GET",
        "/v1/apps/{app}/realtime/subscribers",
        Access::App(Scope::AppRead),
    ),
    (
        "GET",
        "/v1/apps/{app}/triggers",
        Access::App(Scope::AppRead),
    ),
    (
        "POST",
        "/v1/apps/{app}/triggers",
        Access::App(Scope::TriggersManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::AppRead),
    ),
    (
        "PATCH",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::TriggersManage),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::TriggersManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/triggers/{trigger_id}/secret",
        Access::App(Scope::TriggersManage),
    ),
    (
        "POST",
        "/v1/apps/{app}/triggers/{trigger_id}/secret/rotate",
        Access::App(Scope::TriggersManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/deliveries",
        Access::App(Scope::AppRead),
    ),
    (
        "GET",
        "/v1/apps/{app}/deliveries/{delivery_id}",
        Access::App(Scope::AppRead),
    ),
    (
        "POST",
        "/v1/apps/{app}/deliveries/{delivery_id}/retry",
        Access::App(Scope::DeliveriesManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/dead-letters",
        Access::App(Scope::AppRead),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/dead-letters",
        Access::App(Scope::DeliveriesManage),
    ),
    (
        "POST",
        "/v1/apps/{app}/dead-letters/replay",
        Access::App(Scope::DeliveriesManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}",
        Access::App(Scope::AppRead),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}",
        Access::App(Scope::DeliveriesManage),
    ),
    (
        "POST",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}/replay",
        Access::App(Scope::DeliveriesManage),
    ),
    ("GET", "/v1/apps/{app}/functions/{script}", Access::Function),
    (
        "POST",
        "/v1/apps/{app}/functions/{script}",
        Access::Function,
    ),
    (
        "GET",
        "/v1/apps/{app}/scripts",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "PUT",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/scripts/{script}/versions",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "POST",
        "/v1/apps/{app}/scripts/{script}/versions/{version}/restore",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/scripts/{script}/runs",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "POST",
        "/v1/apps/{app}/scripts/{script}/test",
        Access::App(Scope::ScriptsManage),
    ),
    (
        "GET",
        "/v1/apps/{app}/sources",
        Access::App(Scope::AppAdmin),
    ),
    (
        "POST",
        "/v1/apps/{app}/sources",
        Access::App(Scope::AppAdmin),
    ),
    (
        "GET",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
    (
        "PATCH",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
    (
        "DELETE",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
];

fn concrete_path(template: &str) -> String {
    template
        .replace("{app}", "shop")
        .replace("{key_id}", "key_doesnotexist")
        .replace("{topic}", "orders")
        .replace("{trigger_id}", "trg_doesnotexist")
        .replace("{delivery_id}", "999999")
        .replace("{dead_letter_id}", "999999")
        .replace("{script}", "mint_token")
        .replace("{source_id}", "src_doesnotexist")
        .replace("{version}", "1")
        .replace("{*path}", "apps/shop")
}

async fn check(
    app: &TestApp,
    method: &str,
    template: &str,
    caller: &Caller,
    credentials: &Credentials,
    access: Access,
) {
    let path = concrete_path(template);
    let mut want = expected(access, method, caller);
    // A function's caller may send the app's own Authorization (a session token, say):
    // only an API key (`pk_…`) is PiCloud's to judge; anything else goes to the script.
    if let (Access::Function, Credentials::Key(sent)) = (access, credentials) {
        if !sent.starts_with("pk_") {
            want = Expect::Allowed;
        }
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method.clone(), app.url(&path));
    request = match credentials {
        Credentials::None => request,
        Credentials::Key(key) => request.bearer_auth(key),
        Credentials::Session { session, csrf } => {
            app.as_admin(method.clone(), &path, session, *csrf)
        }
    };
    if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.json(&serde_json::json!({}));
    }
    let (status, _, body) = app.exchange(request).await;
    let what = format!("{method} {template} as {caller:?}: got {status} {body}, want {want:?}");
    match want {
        Expect::Unauthorized => {
            assert_eq!((status, code(&body)), (401, "unauthorized"), "{what}");
            assert_eq!(
                body["error"]["message"], "missing or invalid credentials",
                "{what}"
            );
        }
        Expect::Forbidden => assert_eq!((status, code(&body)), (403, "forbidden"), "{what}"),
        Expect::MissingCsrf => {
            assert_eq!((status, code(&body)), (403, "forbidden"), "{what}");
            assert_eq!(
                body["error"]["message"], "missing or invalid CSRF token",
                "{what}"
            );
        }
        Expect::HiddenApp => assert_eq!((status, code(&body)), (404, "app_not_found"), "{what}"),
        Expect::Allowed => {
            assert!(status != 401 && status != 403, "{what}");
            assert_ne!(code(&body), "app_not_found", "{what}");
            assert!(status < 500, "{what}");
        }
    }
}

backend_test!(every_route_with_every_kind_of_key);
async fn every_route_with_every_kind_of_key(t: TestDb) {
    let app = spawn_app(t).await;
    app.create_app("shop").await;
    app.create_app("blog").await;
    let revoked = app.create_key("shop", &["app:admin"]).await;
    let (_, keys) = app
        .call(
            Method::GET,
            "/v1/apps/shop/keys",
            Some(&app.admin_key),
            None,
        )
        .await;
    let revoked_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/apps/shop/keys/{revoked_id}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(status, 200);

    let app_scopes: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| s.is_app_scope())
        .collect();
    let all_names: Vec<&str> = app_scopes.iter().map(|s| s.as_str()).collect();
    let other = app.create_key("blog", &all_names).await;

    let session = app.admin_session().await;

    let key = |k: String| Credentials::Key(k);
    let mut callers: Vec<(Caller, Credentials)> = vec![
        (Caller::Anonymous, Credentials::None),
        (Caller::Garbage, key(format!("pk_{}", "A".repeat(43)))),
        (Caller::Garbage, key("not a key".to_owned())),
        (Caller::Revoked, key(revoked)),
        (Caller::OtherApp, key(other)),
    ];
    for scope in &app_scopes {
        callers.push((
            Caller::OwnApp(*scope),
            key(app.create_key("shop", &[scope.as_str()]).await),
        ));
    }
    callers.push((Caller::Instance, key(app.admin_key.clone())));
    callers.push((
        Caller::CookieWithoutCsrf,
        Credentials::Session {
            session: session.clone(),
            csrf: false,
        },
    ));
    callers.push((
        Caller::Admin,
        Credentials::Session {
            session,
            csrf: true,
        },
    ));

    // Deleting the app must come last, or it would take the fixture with it.
    let mut routes: Vec<_> = SPEC.iter().collect();
    routes.sort_by_key(|(method, path, _)| *method == "DELETE" && *path == "/v1/apps/{app}");
    for (method, path, access) in routes {
        for (caller, credentials) in &callers {
            match ((*method, *path), caller) {
                // Each caller allowed to delete the app must find it there.
                (("DELETE", "/v1/apps/{app}"), _) => {
                    app.call(
                        Method::POST,
                        "/v1/apps",
                        Some(&app.admin_key),
                        Some(serde_json::json!({"id": "shop"})),
                    )
                    .await;
                }
                // Signing out ends a session of its own, so the walk keeps its own.
                (("DELETE", "/v1/admin/session"), Caller::Admin) => {
                    let own = app
                        .sign_in("root@example.com", crate::common::ADMIN_PASSWORD)
                        .await;
                    check(
                        &app,
                        method,
                        path,
                        caller,
                        &Credentials::Session {
                            session: own,
                            csrf: true,
                        },
                        *access,
                    )
                    .await;
                    continue;
                }
                _ => {}
            }
            check(&app, method, path, caller, credentials, *access).await;
        }
    }
    app.stop().await;
}

backend_test!(the_table_and_the_router_name_the_same_routes);
async fn the_table_and_the_router_name_the_same_routes(t: TestDb) {
    let app = spawn_app(t).await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    // The dashboard's files (`/_…`) and `/` (its redirect) are routes of the table but
    // not API: the OpenAPI document leaves them out.
    let api: BTreeSet<(String, String)> = SPEC
        .iter()
        .filter(|(_, p, _)| *p != "/" && !p.starts_with("/_"))
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, api,
        "routes served (per OpenAPI) vs the routes this test walks"
    );
    let spec: BTreeSet<(String, String)> = SPEC
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let table: BTreeSet<(String, String)> = picloud_shared::access::ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(
        table, spec,
        "the server's access table vs the routes this test walks"
    );
    app.stop().await;
}
