//! `pubsub::publish(topic, type, data)` and `pubsub::publish_batch([#{topic, type, data},
//! …])` (each with an optional last argument, an idempotency key for the whole call), and
//! `pubsub::subscriber_token(topics, ttl_secs)` / `(topics, ttl_secs, sub)`, for the app
//! the script belongs to: the same paths and rules as the HTTP API.

use rhai::{Array, Dynamic, Map};

use super::{optional_string, sdk_fn, throw, SdkResult};
use crate::host::ScriptEvent;
use crate::sandbox::call_host;
use crate::value::from_script;
use rhai::Module;

pub(super) fn register(module: &mut Module) {
    sdk_fn("publish").set_into_module(module, |topic: &str, event_type: &str, data: Dynamic| {
        publish_one(topic, event_type, data, None)
    });
    sdk_fn("publish").set_into_module(
        module,
        |topic: &str, event_type: &str, data: Dynamic, key: &str| {
            publish_one(topic, event_type, data, Some(key.to_owned()))
        },
    );
    sdk_fn("publish_batch").set_into_module(module, |events: Array| publish_batch(events, None));
    sdk_fn("publish_batch").set_into_module(module, |events: Array, key: &str| {
        publish_batch(events, Some(key.to_owned()))
    });
    sdk_fn("subscriber_token").set_into_module(module, |topics: Array, ttl_secs: i64| {
        subscriber_token(topics, ttl_secs, None)
    });
    sdk_fn("subscriber_token").set_into_module(
        module,
        |topics: Array, ttl_secs: i64, sub: &str| {
            subscriber_token(topics, ttl_secs, Some(sub.to_owned()))
        },
    );
}

fn publish_one(
    topic: &str,
    event_type: &str,
    data: Dynamic,
    idempotency_key: Option<String>,
) -> SdkResult<i64> {
    let data = from_script(&data).or_else(|e| throw(format!("pubsub::publish: data: {e}")))?;
    let event = ScriptEvent {
        topic: topic.to_owned(),
        event_type: event_type.to_owned(),
        data,
    };
    let seqs = publish(vec![event], idempotency_key, "pubsub::publish")?;
    Ok(seqs[0])
}

fn publish_batch(events: Array, idempotency_key: Option<String>) -> SdkResult<Array> {
    let where_ = "pubsub::publish_batch";
    let mut requests = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let Some(map) = event.try_cast::<Map>() else {
            return throw(format!(
                "{where_}: event {i} is not a map #{{topic, type, data}}"
            ));
        };
        let context = format!("{where_}: event {i}");
        let text = |name: &str| optional_string(&map, name, &context);
        let (Some(topic), Some(event_type)) = (text("topic")?, text("type")?) else {
            return throw(format!("{where_}: event {i} needs `topic` and `type`"));
        };
        let data = match map.get("data") {
            Some(data) => {
                from_script(data).or_else(|e| throw(format!("{where_}: event {i}: data: {e}")))?
            }
            None => serde_json::Value::Null,
        };
        requests.push(ScriptEvent {
            topic,
            event_type,
            data,
        });
    }
    let seqs = publish(requests, idempotency_key, where_)?;
    Ok(seqs.into_iter().map(Dynamic::from_int).collect())
}

fn publish(
    events: Vec<ScriptEvent>,
    idempotency_key: Option<String>,
    where_: &str,
) -> SdkResult<Vec<i64>> {
    call_host(|app, host, deadline| host.publish(app, events, idempotency_key, deadline))
        .or_else(|e| throw(format!("{where_}: {e}")))
}

fn subscriber_token(topics: Array, ttl_secs: i64, sub: Option<String>) -> SdkResult<String> {
    let where_ = "pubsub::subscriber_token";
    let topics = topics
        .into_iter()
        .map(|t| t.into_string())
        .collect::<Result<Vec<_>, _>>()
        .or_else(|_| throw(format!("{where_}: topics must be an array of strings")))?;
    if ttl_secs <= 0 {
        return throw(format!("{where_}: ttl_secs must be positive"));
    }
    call_host(|app, host, deadline| {
        host.subscriber_token(app, topics, Some(ttl_secs as u64), sub, deadline)
    })
    .or_else(|e| throw(format!("{where_}: {e}")))
}
