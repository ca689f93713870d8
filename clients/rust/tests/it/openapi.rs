//! Holds the SDK against `docs/openapi.json`: the routes it calls are exactly the
//! document's, and every component schema has a Rust type with the same field names and
//! the same required/optional fields, so a field or route the server adds fails here.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use picloud_client::{
    admin, apps, dead_letters, deliveries, error, events, keys, pubsub, realtime, scripts, sources,
    system, topics, triggers,
};
use support::openapi::{self, Samples};

/// Decodes `value` as `T` and encodes it again.
fn roundtrip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let decoded: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&decoded).map_err(|e| e.to_string())
}

type Roundtrip = fn(&Value) -> Result<Value, String>;

/// A Rust type standing for a schema: how to round-trip JSON through it, and for string
/// enums the values it knows.
struct Mapping {
    roundtrip: Roundtrip,
    known: Option<Vec<String>>,
}

fn object<T: DeserializeOwned + Serialize>() -> Mapping {
    Mapping {
        roundtrip: roundtrip::<T>,
        known: None,
    }
}

macro_rules! string_enum {
    ($t:ty) => {
        Mapping {
            roundtrip: roundtrip::<$t>,
            known: Some(<$t>::KNOWN.iter().map(|v| v.as_str().to_owned()).collect()),
        }
    };
}

/// Every schema of the document and the Rust type that stands for it.
fn mappings() -> BTreeMap<&'static str, Mapping> {
    BTreeMap::from([
        ("Admin", object::<admin::AdminAccount>()),
        ("ApiKey", object::<keys::ApiKey>()),
        ("App", object::<apps::App>()),
        ("AppId", object::<apps::AppId>()),
        ("AppList", object::<apps::AppList>()),
        ("Attempt", object::<deliveries::Attempt>()),
        ("AuthMode", string_enum!(topics::AuthMode)),
        ("BatchAnswer", object::<pubsub::BatchAnswer>()),
        ("BatchBody", object::<pubsub::BatchBody>()),
        ("BatchEvent", object::<pubsub::BatchEvent>()),
        ("CatchUp", string_enum!(triggers::CatchUp)),
        ("CircuitState", string_enum!(triggers::CircuitState)),
        ("Count", object::<dead_letters::Count>()),
        ("CreateApp", object::<apps::CreateApp>()),
        ("CreateAppKey", object::<keys::CreateAppKey>()),
        ("CreateInstanceKey", object::<keys::CreateInstanceKey>()),
        ("CreateTopic", object::<topics::CreateTopic>()),
        ("CreatedKeyResponse", object::<keys::CreatedKeyResponse>()),
        ("CreatedTrigger", object::<triggers::CreatedTrigger>()),
        ("CronPattern", object::<triggers::CronPattern>()),
        ("DeadLetter", object::<dead_letters::DeadLetter>()),
        (
            "DeadLetterDetail",
            object::<dead_letters::DeadLetterDetail>(),
        ),
        ("DeadLetterList", object::<dead_letters::DeadLetterList>()),
        ("Delivery", object::<deliveries::Delivery>()),
        ("DeliveryDetail", object::<deliveries::DeliveryDetail>()),
        ("DeliveryList", object::<deliveries::DeliveryList>()),
        ("ErrorBody", object::<error::ErrorBody>()),
        ("ErrorCode", string_enum!(error::ErrorCode)),
        ("ErrorDetail", object::<error::ErrorDetail>()),
        ("EventPage", object::<events::EventPage>()),
        ("FunctionAccess", string_enum!(scripts::FunctionAccess)),
        ("Handler", object::<triggers::Handler>()),
        ("KeyList", object::<keys::KeyList>()),
        ("LiveSubscribers", object::<realtime::LiveSubscribers>()),
        ("LoggedEvent", object::<events::LoggedEvent>()),
        ("NewSource", object::<sources::NewSource>()),
        ("NewTrigger", object::<triggers::NewTrigger>()),
        ("Pacing", object::<triggers::Pacing>()),
        ("PublishBody", object::<pubsub::PublishBody>()),
        ("PublishedEvent", object::<pubsub::PublishedEvent>()),
        ("ReplayBody", object::<dead_letters::ReplayBody>()),
        ("Retention", object::<topics::Retention>()),
        ("RetryPolicy", object::<triggers::RetryPolicy>()),
        (
            "RetryPolicyRequest",
            object::<triggers::RetryPolicyRequest>(),
        ),
        ("RotatedKey", object::<realtime::RotatedKey>()),
        ("RotatedSecret", object::<triggers::RotatedSecret>()),
        ("RunLogLine", object::<scripts::RunLogLine>()),
        ("Sample", object::<admin::Sample>()),
        ("SaveScript", object::<scripts::SaveScript>()),
        ("Scope", string_enum!(keys::Scope)),
        ("Script", object::<scripts::Script>()),
        ("ScriptList", object::<scripts::ScriptList>()),
        ("ScriptRun", object::<scripts::ScriptRun>()),
        ("ScriptRunList", object::<scripts::ScriptRunList>()),
        ("ScriptSummary", object::<scripts::ScriptSummary>()),
        ("ScriptVersion", object::<scripts::ScriptVersion>()),
        ("ScriptVersionList", object::<scripts::ScriptVersionList>()),
        ("SessionInfo", object::<admin::SessionInfo>()),
        ("SetExternal", object::<topics::SetExternal>()),
        ("SignIn", object::<admin::SignIn>()),
        ("Source", object::<sources::Source>()),
        ("SourceKind", string_enum!(sources::SourceKind)),
        ("SourceList", object::<sources::SourceList>()),
        ("SourcePatch", object::<sources::SourcePatch>()),
        ("SourceStatus", object::<sources::SourceStatus>()),
        ("StatsSeries", object::<admin::StatsSeries>()),
        ("Status", object::<system::Status>()),
        ("TestRequest", object::<scripts::TestRequest>()),
        ("TestRun", object::<scripts::TestRun>()),
        ("TestRunResult", object::<scripts::TestRunResult>()),
        ("TimeZoneName", object::<triggers::TimeZoneName>()),
        ("TokenRequest", object::<pubsub::TokenRequest>()),
        ("TokenResponse", object::<pubsub::TokenResponse>()),
        ("Topic", object::<topics::Topic>()),
        ("TopicList", object::<topics::TopicList>()),
        ("TopicName", object::<topics::TopicName>()),
        ("TopicPattern", object::<topics::TopicPattern>()),
        ("TopicSubscribers", object::<realtime::TopicSubscribers>()),
        ("Trigger", object::<triggers::Trigger>()),
        ("TriggerList", object::<triggers::TriggerList>()),
        ("TriggerPatch", object::<triggers::TriggerPatch>()),
        ("TriggerSecret", object::<triggers::TriggerSecret>()),
        ("TriggerSource", object::<triggers::TriggerSource>()),
        ("WebhookUrl", object::<triggers::WebhookUrl>()),
    ])
}

/// String enums written inline in a property or parameter rather than as a schema of
/// their own, and the Rust enum that stands for each.
fn inline_enums() -> BTreeMap<&'static str, Vec<String>> {
    let known = |values: &[deliveries::DeliveryState]| {
        values.iter().map(|v| v.as_str().to_owned()).collect()
    };
    BTreeMap::from([
        (
            "schema Delivery.state",
            known(deliveries::DeliveryState::KNOWN),
        ),
        (
            "schema DeliveryDetail.state",
            known(deliveries::DeliveryState::KNOWN),
        ),
        (
            "parameter list_deliveries.state",
            known(deliveries::DeliveryState::KNOWN),
        ),
    ])
}

#[test]
fn the_sdk_calls_exactly_the_routes_of_the_document() {
    let doc = openapi::document();
    let documented = openapi::routes(&doc);
    let sdk: Vec<(String, String)> = picloud_client::routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let implemented: BTreeSet<_> = sdk.iter().cloned().collect();
    assert_eq!(
        implemented.len(),
        sdk.len(),
        "the SDK declares a route twice"
    );
    let missing: Vec<_> = documented.difference(&implemented).collect();
    let extra: Vec<_> = implemented.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes the SDK lacks: {missing:#?}\nroutes the SDK calls that the document does not have: {extra:#?}"
    );
}

#[test]
fn every_schema_has_a_rust_type() {
    let doc = openapi::document();
    let schemas: BTreeSet<&str> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mapped: BTreeSet<&str> = mappings().keys().copied().collect();
    let unmapped: Vec<_> = schemas.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&schemas).collect();
    assert!(
        unmapped.is_empty(),
        "schemas without a Rust type in the SDK: {unmapped:?}"
    );
    assert!(
        stale.is_empty(),
        "Rust types for schemas the document no longer has: {stale:?}"
    );
}

#[test]
fn every_schema_round_trips_through_its_rust_type_with_the_same_fields() {
    let doc = openapi::document();
    let samples = Samples::new(&doc);
    let mut failures = Vec::new();
    for (name, mapping) in mappings() {
        let schema = &doc["components"]["schemas"][name];
        let check = |label: &str, sample: &Value, failures: &mut Vec<String>| match (mapping
            .roundtrip)(
            sample
        ) {
            Ok(back) if &back == sample => {}
            Ok(back) => failures.push(format!("{name} ({label}): {sample} came back as {back}")),
            Err(e) => failures.push(format!("{name} ({label}): {sample} does not decode: {e}")),
        };

        for (i, variant) in samples.variants(schema).into_iter().enumerate() {
            let full = samples.full(variant);
            check(
                &format!("variant {i}, every property"),
                &full,
                &mut failures,
            );
            let Some(shape) = samples.object_shape(variant) else {
                continue;
            };
            // Only the required properties: the optional ones must be optional in Rust
            // too, and not come back as nulls.
            let mut minimal = full.as_object().unwrap().clone();
            minimal.retain(|key, _| shape.required.contains(key));
            check(
                &format!("variant {i}, required properties only"),
                &Value::Object(minimal),
                &mut failures,
            );
            // Without any one required property it must not decode.
            for required in &shape.required {
                let mut without = full.as_object().unwrap().clone();
                without.remove(required);
                if (mapping.roundtrip)(&Value::Object(without)).is_ok() {
                    failures.push(format!(
                        "{name} (variant {i}): decodes without its required {required:?}"
                    ));
                }
            }
            // A property the document does not have must not survive a round trip
            // unnoticed (this is what catches a field the server adds).
            let mut extra = full.as_object().unwrap().clone();
            extra.insert("a_field_the_sdk_lacks".into(), Value::Bool(true));
            if let Ok(back) = (mapping.roundtrip)(&Value::Object(extra.clone())) {
                if back == Value::Object(extra) {
                    failures.push(format!(
                        "{name}: keeps unknown fields, so drift would go unnoticed"
                    ));
                }
            }
        }

        if let Some(known) = &mapping.known {
            let documented: Vec<String> = schema["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} is not a string enum in the document"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            if &documented != known {
                failures.push(format!(
                    "{name}: the document has {documented:?}, the SDK knows {known:?}"
                ));
            }
            for value in &documented {
                check(
                    &format!("value {value}"),
                    &Value::String(value.clone()),
                    &mut failures,
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn inline_string_enums_match_the_sdk_enums() {
    let doc = openapi::document();
    let mut found = BTreeMap::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (property, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(values) = sub.get("enum").and_then(Value::as_array) {
                found.insert(format!("schema {name}.{property}"), values.clone());
            }
        }
    }
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for parameter in operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(values) = parameter["schema"].get("enum").and_then(Value::as_array) {
                    let id = operation["operationId"].as_str().unwrap();
                    found.insert(
                        format!("parameter {id}.{}", parameter["name"].as_str().unwrap()),
                        values.clone(),
                    );
                }
            }
        }
    }
    let expected = inline_enums();
    let found: BTreeMap<String, Vec<String>> = found
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
            )
        })
        .collect();
    let found_keys: BTreeSet<&str> = found.keys().map(String::as_str).collect();
    let expected_keys: BTreeSet<&str> = expected.keys().copied().collect();
    assert_eq!(
        found_keys, expected_keys,
        "inline enums of the document vs. the SDK's table"
    );
    for (key, values) in &found {
        assert_eq!(values, &expected[key.as_str()], "{key}");
    }
}
