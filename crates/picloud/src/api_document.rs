//! The OpenAPI document's shared parts: the handlers' annotations describe what each
//! route does, and `complete` adds what follows from the route's access rule
//! (`shared::access::ROUTES`) and its extractors — the 401/403/404 of the access check,
//! the 400 of path and query parsing, the 400/413/415 of a JSON body, the 503 of an
//! unreachable database — plus the security schemes and the app-id and topic-name
//! constraints of path parameters. Generated from the same rules the server applies, so
//! the document cannot drift from them.

use std::collections::BTreeMap;

use picloud_manager_core::api_keys::MAX_KEY_NAME_LEN;
use picloud_manager_core::apps::MAX_APP_NAME_LEN;
use picloud_manager_core::deliveries::DELIVERY_STATES;
use picloud_manager_core::http::deliveries::MAX_REPLAY_PER_SECOND;
use picloud_manager_core::http::event_input::{EVENT_TYPE_PATTERN, MAX_EVENT_TYPE_LEN};
use picloud_orchestrator_core::realtime_api::{MAX_GRACE_SECS, MAX_TOKEN_TOPICS};
use picloud_shared::access::{self, Access};
use picloud_shared::{AppId, TopicName};
use serde_json::{json, Value};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, PathItem, Ref, RefOr, ResponseBuilder};
use utoipa::PartialSchema;

/// Completes the document generated from the handlers' annotations and renders it as
/// JSON.
pub fn render(mut openapi: OpenApi) -> String {
    complete(&mut openapi);
    let mut document = serde_json::to_value(&openapi).expect("OpenAPI document serializes");
    constrain_fields(&mut document);
    document.to_string()
}

/// The bounds the server checks on body fields and query parameters that the handlers'
/// annotations cannot state (their numbers are constants of the validating code): a
/// JSON pointer into the document, and the JSON Schema keywords to add there.
fn field_constraints() -> Vec<(String, Value)> {
    let property =
        |schema: &str, field: &str| format!("/components/schemas/{schema}/properties/{field}");
    let key_name = json!({"minLength": 1, "maxLength": MAX_KEY_NAME_LEN});
    let topic = json!({
        "type": "string",
        "minLength": TopicName::MIN_LEN, "maxLength": TopicName::MAX_LEN,
        "pattern": TopicName::PATTERN,
    });
    let event_type = json!({
        "minLength": 1, "maxLength": MAX_EVENT_TYPE_LEN, "pattern": EVENT_TYPE_PATTERN,
    });
    vec![
        (
            property("CreateApp", "name"),
            json!({"minLength": 1, "maxLength": MAX_APP_NAME_LEN}),
        ),
        (property("CreateAppKey", "name"), key_name.clone()),
        (property("CreateInstanceKey", "name"), key_name),
        (
            property("TokenRequest", "topics"),
            json!({"minItems": 1, "maxItems": MAX_TOKEN_TOPICS}),
        ),
        (property("BatchBody", "events"), json!({"minItems": 1})),
        (property("BatchEvent", "topic"), topic.clone()),
        (
            format!("{}/items", property("TokenRequest", "topics")),
            topic,
        ),
        (
            property("Delivery", "state"),
            json!({"enum": DELIVERY_STATES}),
        ),
        (
            property("DeliveryDetail", "state"),
            json!({"enum": DELIVERY_STATES}),
        ),
        (property("PublishBody", "type"), event_type.clone()),
        (property("BatchEvent", "type"), event_type),
        (
            property("ReplayBody", "per_second"),
            json!({"minimum": 1, "maximum": MAX_REPLAY_PER_SECOND}),
        ),
        (
            query_parameter("/v1/apps/{app}/realtime/keys/rotate", "post", "grace_secs"),
            json!({"minimum": 0, "maximum": MAX_GRACE_SECS}),
        ),
        (
            query_parameter("/v1/apps/{app}/deliveries", "get", "state"),
            json!({"enum": DELIVERY_STATES}),
        ),
    ]
}

/// The pointer to the schema of `method path`'s query parameter `name`, written with a
/// `?name` marker that [`constrain_fields`] resolves (parameters are a list).
fn query_parameter(path: &str, method: &str, name: &str) -> String {
    let path = path.replace('~', "~0").replace('/', "~1");
    format!("/paths/{path}/{method}/parameters?{name}")
}

/// Adds [`field_constraints`] to the document. A pointer that finds nothing is a bug of
/// this table (a renamed schema or field), so it panics: every test that starts the
/// server notices.
fn constrain_fields(document: &mut Value) {
    for (pointer, keywords) in field_constraints() {
        let target = match pointer.split_once('?') {
            Some((list, name)) => document
                .pointer_mut(list)
                .and_then(Value::as_array_mut)
                .and_then(|params| params.iter_mut().find(|p| p["name"] == name))
                .map(|p| &mut p["schema"]),
            None => document.pointer_mut(&pointer),
        };
        let target = target
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("the API document has no schema at {pointer}"));
        for (keyword, value) in keywords.as_object().into_iter().flatten() {
            target.insert(keyword.clone(), value.clone());
        }
    }
}

/// Completes the document generated from the handlers' annotations.
fn complete(openapi: &mut OpenApi) {
    openapi.info.title = "PiCloud".into();
    openapi.info.description = Some("Realtime pub/sub with a transactional outbox.".into());
    add_security_schemes(openapi);
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let rule = access::lookup(method, path);
            add_generated_responses(operation, rule);
            constrain_path_parameters(operation);
        }
    }
}

/// The operations of a path item with their upper-case methods.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("POST", item.post.as_mut()),
        ("PUT", item.put.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|o| (method, o)))
    .collect()
}

/// The statuses a route can answer with before (or beside) its handler's own, each with
/// why. A route missing from the access table is refused to everyone, which its
/// missing documentation would hide, so it gets a 401 and 403 too.
pub fn generated_statuses(
    rule: Option<Access>,
    has_path_parameters: bool,
    has_query_parameters: bool,
    has_json_body: bool,
) -> BTreeMap<u16, String> {
    let mut statuses: BTreeMap<u16, String> = BTreeMap::new();
    let mut push = |status: u16, why: String| {
        statuses
            .entry(status)
            .and_modify(|text| {
                text.push_str("; or ");
                text.push_str(&why);
            })
            .or_insert(why);
    };
    if has_path_parameters || has_query_parameters {
        push(400, "a path or query parameter is malformed".to_owned());
    }
    if has_json_body {
        push(
            400,
            "the body is not a JSON object of the documented shape".to_owned(),
        );
        push(413, "the body is larger than the server's limit".to_owned());
        push(
            415,
            "the body is not sent as Content-Type: application/json".to_owned(),
        );
    }
    let forbidden = match rule {
        Some(Access::Public | Access::Subscriber) => None,
        Some(Access::Instance) => Some("the key is not an instance key with instance:admin".into()),
        Some(Access::InstanceOrApp(scope)) => Some(format!(
            "the key is neither an instance key with instance:admin nor a key of this app \
             with '{scope}'"
        )),
        Some(Access::App(scope)) => Some(format!(
            "an instance key (they never reach inside an app), or a key of this app \
             without '{scope}'"
        )),
        Some(Access::Admin) => {
            Some("an API key: this route needs a signed-in dashboard admin".into())
        }
        Some(Access::Function) => Some(
            "an instance key, or a key of this app without 'functions:invoke' (callers \
             without an API key reach public functions only)"
                .into(),
        ),
        None => Some("the route is refused to everyone".into()),
    };
    if let Some(forbidden) = forbidden {
        push(401, "missing or invalid credentials".to_owned());
        push(
            403,
            format!(
                "{forbidden}; or a dashboard session changing something without \
                 X-CSRF-Token"
            ),
        );
    }
    if matches!(
        rule,
        Some(Access::App(_) | Access::InstanceOrApp(_) | Access::Function)
    ) {
        push(
            404,
            "the app does not exist, or the key may not see it".to_owned(),
        );
    }
    if rule != Some(Access::Public) {
        push(
            503,
            "the database is unreachable or its writes are failing; see Retry-After".to_owned(),
        );
    }
    statuses
}

/// Adds the generated statuses an operation does not document itself.
fn add_generated_responses(operation: &mut Operation, rule: Option<Access>) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
    let statuses = generated_statuses(
        rule,
        has(ParameterIn::Path),
        has(ParameterIn::Query),
        operation.request_body.is_some(),
    );
    for (status, description) in statuses {
        let responses = &mut operation.responses.responses;
        if responses.contains_key(&status.to_string()) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        responses.insert(status.to_string(), RefOr::T(response));
    }
}

/// Gives `{app}`, `{topic}` and `{script}` path parameters the rules the server checks
/// them by (script names follow topic-name rules).
fn constrain_path_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in != ParameterIn::Path {
            continue;
        }
        match parameter.name.as_str() {
            "app" => parameter.schema = Some(AppId::schema()),
            "topic" | "script" => parameter.schema = Some(TopicName::schema()),
            _ => {}
        }
    }
}

fn add_security_schemes(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "subscriber_token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "picloud_session",
            "the dashboard's session cookie (POST /v1/admin/session); state-changing \
             requests must also send X-CSRF-Token",
        ))),
    );
}
