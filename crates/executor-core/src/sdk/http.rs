//! `http::request(#{method, url, headers, body, timeout_ms})`: an outbound request through
//! the server's guarded client (the webhook address policy and allow-lists apply),
//! answered as `#{status, headers, body}`. Waits at most `timeout_ms`, and never past the
//! run's own time limit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map};

use super::{optional_string, sdk_fn, throw, SdkResult};
use crate::host::HttpRequest;
use crate::sandbox::call_host;
use rhai::Module;

pub(super) fn register(module: &mut Module) {
    sdk_fn("request").set_into_module(module, request);
}

fn request(options: Map) -> SdkResult<Map> {
    let where_ = "http::request";
    let text = |name: &str| optional_string(&options, name, where_);
    let Some(url) = text("url")? else {
        return throw(format!("{where_}: `url` is required"));
    };
    let method = text("method")?
        .unwrap_or_else(|| "GET".to_owned())
        .to_uppercase();
    let mut headers = BTreeMap::new();
    if let Some(given) = options.get("headers").filter(|h| !h.is_unit()) {
        let Some(given) = given.clone().try_cast::<Map>() else {
            return throw(format!("{where_}: `headers` is not a map"));
        };
        for (name, value) in given {
            let Ok(value) = value.into_string() else {
                return throw(format!("{where_}: header `{name}` is not a string"));
            };
            headers.insert(name.to_string(), value);
        }
    }
    let timeout = options
        .get("timeout_ms")
        .and_then(|t| t.as_int().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms as u64));
    let request = HttpRequest {
        method,
        url,
        headers,
        body: text("body")?,
    };
    let response = call_host(|_, host, run_deadline| {
        let deadline = match timeout {
            Some(timeout) => run_deadline.min(Instant::now() + timeout),
            None => run_deadline,
        };
        host.http_request(request, deadline)
    })
    .or_else(|e| throw(format!("{where_}: {e}")))?;
    let mut answer = Map::new();
    answer.insert(
        "status".into(),
        Dynamic::from_int(i64::from(response.status)),
    );
    let headers: Map = response
        .headers
        .into_iter()
        .map(|(name, value)| (name.into(), Dynamic::from(value)))
        .collect();
    answer.insert("headers".into(), Dynamic::from_map(headers));
    answer.insert("body".into(), Dynamic::from(response.body));
    Ok(answer)
}
