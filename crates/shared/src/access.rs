//! Who may call which route: the single table mapping every HTTP route to the access
//! it needs, and the decision function that applies it.
//!
//! The HTTP layer looks up the matched route here for every request, so a handler never
//! checks scopes itself, and one test walks this table with every kind of key.

use crate::error::{ApiError, ErrorCode};
use crate::names::AppId;
use crate::scope::{Scope, ScopeSet};

/// The access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no key (health, metrics, the OpenAPI document).
    Public,
    /// Anyone, no API key: the handler checks a subscriber token against each topic's
    /// auth mode itself (the SSE endpoint). Any `Authorization` header here carries a
    /// subscriber token, never an API key.
    Subscriber,
    /// An instance key with `instance:admin`.
    Instance,
    /// An instance key with `instance:admin`, or a key of the route's `{app}` holding
    /// the scope. Used for managing apps and keys.
    InstanceOrApp(Scope),
    /// A key of the route's `{app}` holding the scope. Instance keys never reach inside
    /// an app.
    App(Scope),
    /// A signed-in dashboard admin (a session cookie); no API key reaches these routes.
    Admin,
    /// An HTTP function: anyone reaches the handler, which serves callers without an
    /// API key only when the script's access is `public`. A bearer token that is an API
    /// key (`pk_…`) must be a key of the route's `{app}` holding `functions:invoke`; any
    /// other `Authorization` is the app's own and passes to the script untouched.
    Function,
}

/// One row of [`ROUTES`].
#[derive(Debug, Clone, Copy)]
pub struct RouteAccess {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// The route template exactly as registered with the router, e.g. `/v1/apps/{app}`.
    pub path: &'static str,
    /// What the caller needs.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteAccess {
    RouteAccess {
        method,
        path,
        access,
    }
}

/// Every route PiCloud serves and the access it needs. A route missing here is refused
/// to everyone (fail closed).
pub const ROUTES: &[RouteAccess] = &[
    route("GET", "/healthz", Access::Public),
    route("GET", "/readyz", Access::Public),
    route("GET", "/metrics", Access::Public),
    route("GET", "/openapi.json", Access::Public),
    // the dashboard's assets (not in the OpenAPI document: they are not API)
    route("GET", "/", Access::Public),
    route("GET", "/_", Access::Public),
    route("GET", "/_/", Access::Public),
    route("GET", "/_/{*path}", Access::Public),
    // dashboard admins: signing in and out, the overview series
    route("POST", "/v1/admin/session", Access::Public),
    route("GET", "/v1/admin/session", Access::Admin),
    route("DELETE", "/v1/admin/session", Access::Admin),
    route("GET", "/v1/admin/stats", Access::Admin),
    // instance keys
    route("GET", "/v1/keys", Access::Instance),
    route("POST", "/v1/keys", Access::Instance),
    route("DELETE", "/v1/keys/{key_id}", Access::Instance),
    // apps
    route("GET", "/v1/apps", Access::Instance),
    route("POST", "/v1/apps", Access::Instance),
    route(
        "GET",
        "/v1/apps/{app}",
        Access::InstanceOrApp(Scope::AppRead),
    ),
    route("DELETE", "/v1/apps/{app}", Access::Instance),
    // app keys
    route(
        "GET",
        "/v1/apps/{app}/keys",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    route(
        "POST",
        "/v1/apps/{app}/keys",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/keys/{key_id}",
        Access::InstanceOrApp(Scope::AppAdmin),
    ),
    // topics
    route("GET", "/v1/apps/{app}/topics", Access::App(Scope::AppRead)),
    route(
        "POST",
        "/v1/apps/{app}/topics",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "GET",
        "/v1/apps/{app}/topics/{topic}",
        Access::App(Scope::AppRead),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/topics/{topic}",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "PATCH",
        "/v1/apps/{app}/topics/{topic}/external",
        Access::App(Scope::AppAdmin),
    ),
    // the event log and publishing
    route(
        "POST",
        "/v1/apps/{app}/topics/{topic}/events",
        Access::App(Scope::PubsubPublish),
    ),
    route(
        "GET",
        "/v1/apps/{app}/topics/{topic}/events",
        Access::App(Scope::AppRead),
    ),
    route(
        "POST",
        "/v1/apps/{app}/events",
        Access::App(Scope::PubsubPublish),
    ),
    // realtime: subscribing, minting subscriber tokens, rotating their signing keys
    route("GET", "/v1/apps/{app}/realtime", Access::Subscriber),
    route(
        "POST",
        "/v1/apps/{app}/subscriber-tokens",
        Access::App(Scope::PubsubToken),
    ),
    route(
        "POST",
        "/v1/apps/{app}/realtime/keys/rotate",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "GET",
        "/v1/apps/{app}/realtime/subscribers",
        Access::App(Scope::AppRead),
    ),
    // triggers
    route(
        "GET",
        "/v1/apps/{app}/triggers",
        Access::App(Scope::AppRead),
    ),
    route(
        "POST",
        "/v1/apps/{app}/triggers",
        Access::App(Scope::TriggersManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::AppRead),
    ),
    route(
        "PATCH",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::TriggersManage),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/triggers/{trigger_id}",
        Access::App(Scope::TriggersManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/triggers/{trigger_id}/secret",
        Access::App(Scope::TriggersManage),
    ),
    route(
        "POST",
        "/v1/apps/{app}/triggers/{trigger_id}/secret/rotate",
        Access::App(Scope::TriggersManage),
    ),
    // deliveries and dead letters
    route(
        "GET",
        "/v1/apps/{app}/deliveries",
        Access::App(Scope::AppRead),
    ),
    route(
        "GET",
        "/v1/apps/{app}/deliveries/{delivery_id}",
        Access::App(Scope::AppRead),
    ),
    route(
        "POST",
        "/v1/apps/{app}/deliveries/{delivery_id}/retry",
        Access::App(Scope::DeliveriesManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/dead-letters",
        Access::App(Scope::AppRead),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/dead-letters",
        Access::App(Scope::DeliveriesManage),
    ),
    route(
        "POST",
        "/v1/apps/{app}/dead-letters/replay",
        Access::App(Scope::DeliveriesManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}",
        Access::App(Scope::AppRead),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}",
        Access::App(Scope::DeliveriesManage),
    ),
    route(
        "POST",
        "/v1/apps/{app}/dead-letters/{dead_letter_id}/replay",
        Access::App(Scope::DeliveriesManage),
    ),
    // scripts and HTTP functions
    route("GET", "/v1/apps/{app}/functions/{script}", Access::Function),
    route(
        "POST",
        "/v1/apps/{app}/functions/{script}",
        Access::Function,
    ),
    route(
        "GET",
        "/v1/apps/{app}/scripts",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "PUT",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/scripts/{script}",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/scripts/{script}/versions",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "POST",
        "/v1/apps/{app}/scripts/{script}/versions/{version}/restore",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "GET",
        "/v1/apps/{app}/scripts/{script}/runs",
        Access::App(Scope::ScriptsManage),
    ),
    route(
        "POST",
        "/v1/apps/{app}/scripts/{script}/test",
        Access::App(Scope::ScriptsManage),
    ),
    // outbox sources
    route(
        "GET",
        "/v1/apps/{app}/sources",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "POST",
        "/v1/apps/{app}/sources",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "GET",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "PATCH",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
    route(
        "DELETE",
        "/v1/apps/{app}/sources/{source_id}",
        Access::App(Scope::AppAdmin),
    ),
];

/// The access rule for a matched route, if the table has one.
pub fn lookup(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.access)
}

/// An authenticated caller: an API key, or a signed-in dashboard admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key's id (never its secret), or the admin's id for a dashboard session.
    pub key_id: String,
    /// The app the key belongs to; `None` for instance keys and admins.
    pub app: Option<AppId>,
    /// The key's scopes (empty for admins, who need none).
    pub scopes: ScopeSet,
    /// A signed-in dashboard admin: passes every rule, for every app.
    pub superuser: bool,
}

impl Principal {
    /// The principal of a signed-in dashboard admin with id `admin_id`.
    pub fn admin(admin_id: impl Into<String>) -> Principal {
        Principal {
            key_id: admin_id.into(),
            app: None,
            scopes: ScopeSet::EMPTY,
            superuser: true,
        }
    }
}

impl Access {
    /// Decides whether `principal` may call a route with this access, for the app named
    /// in its path (if any).
    ///
    /// A key of another app gets the same 404 as an app that does not exist, so keys
    /// cannot probe which apps exist.
    pub fn check(
        self,
        principal: Option<&Principal>,
        path_app: Option<&str>,
    ) -> Result<(), ApiError> {
        if matches!(self, Access::Public | Access::Subscriber)
            || (self == Access::Function && principal.is_none())
        {
            return Ok(());
        }
        let principal = principal.ok_or_else(ApiError::unauthorized)?;
        let this = match self {
            Access::Function => Access::App(Scope::FunctionsInvoke),
            other => other,
        };
        if principal.superuser {
            return Ok(());
        }
        match (this, &principal.app) {
            (Access::Public | Access::Subscriber | Access::Function, _) => Ok(()),
            (Access::Admin, _) => Err(forbidden(
                "this route needs a signed-in dashboard admin, not an API key",
            )),
            (Access::Instance, None) | (Access::InstanceOrApp(_), None) => {
                require(principal.scopes, Scope::InstanceAdmin)
            }
            (Access::Instance, Some(_)) => Err(forbidden("this route needs an instance key")),
            (Access::App(_), None) => Err(forbidden(
                "instance keys manage apps and keys only; use a key of the app",
            )),
            (Access::InstanceOrApp(scope) | Access::App(scope), Some(own_app)) => match path_app {
                Some(app) if app == own_app.as_str() => require(principal.scopes, scope),
                Some(app) => Err(app_not_found(app)),
                None => Err(forbidden("this route needs an instance key")),
            },
        }
    }
}

/// The 404 for an app that does not exist or that the caller may not see.
pub fn app_not_found(app: &str) -> ApiError {
    ApiError::new(ErrorCode::AppNotFound, format!("app '{app}' not found"))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn require(scopes: ScopeSet, scope: Scope) -> Result<(), ApiError> {
    if scopes.grants(scope) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this key lacks the '{scope}' scope"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: Option<&str>, scopes: &[Scope]) -> Principal {
        Principal {
            key_id: "key_1".into(),
            app: app.map(|a| AppId::parse(a).unwrap()),
            scopes: scopes.iter().copied().collect(),
            superuser: false,
        }
    }

    fn code(result: Result<(), ApiError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn routes_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{a:?}");
            }
        }
    }

    #[test]
    fn a_signed_in_admin_passes_every_rule_for_every_app() {
        let admin = Principal::admin("adm_1");
        for route in ROUTES {
            for app in [None, Some("shop"), Some("other")] {
                assert_eq!(
                    code(route.access.check(Some(&admin), app)),
                    None,
                    "{route:?}"
                );
            }
        }
    }

    #[test]
    fn decisions() {
        let instance = key(None, &[Scope::InstanceAdmin]);
        let reader = key(Some("shop"), &[Scope::AppRead]);
        let admin = key(Some("shop"), &[Scope::AppAdmin]);
        let read = Access::App(Scope::AppRead);

        assert_eq!(code(Access::Public.check(None, None)), None);
        assert_eq!(
            code(read.check(None, Some("shop"))),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(code(read.check(Some(&reader), Some("shop"))), None);
        assert_eq!(code(read.check(Some(&admin), Some("shop"))), None);
        assert_eq!(
            code(read.check(Some(&reader), Some("other"))),
            Some(ErrorCode::AppNotFound)
        );
        assert_eq!(
            code(read.check(Some(&instance), Some("shop"))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(Access::App(Scope::PubsubPublish).check(Some(&reader), Some("shop"))),
            Some(ErrorCode::Forbidden)
        );
        let manage = Access::InstanceOrApp(Scope::AppAdmin);
        assert_eq!(code(manage.check(Some(&instance), Some("shop"))), None);
        assert_eq!(code(manage.check(Some(&admin), Some("shop"))), None);
        assert_eq!(
            code(manage.check(Some(&reader), Some("shop"))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(Access::Instance.check(Some(&admin), None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(Access::Instance.check(Some(&instance), None)), None);
        assert_eq!(
            code(Access::Admin.check(Some(&instance), None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(Access::Admin.check(None, None)),
            Some(ErrorCode::Unauthorized)
        );
        let scopeless_instance = key(None, &[]);
        assert_eq!(
            code(Access::Instance.check(Some(&scopeless_instance), None)),
            Some(ErrorCode::Forbidden)
        );
    }
}
