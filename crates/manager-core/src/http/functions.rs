//! `GET|POST /v1/apps/{app}/functions/{script}`: HTTP functions. The request is handed
//! to the script's `handle(req)` on the executor, with `req = #{method, path, query,
//! headers, body, json}`; what it returns is the response: `#{status, headers, body}`, or
//! any other value sent as JSON with 200.
//!
//! Who may call: a script whose access is `public` answers anyone (the script checks
//! the caller itself, e.g. the app's own session token in `Authorization`); any script
//! answers an API key of the app with `functions:invoke` (the access layer checks keys).
//! The script never sees PiCloud's credentials: `Cookie` (a dashboard session would be
//! a superuser's) and an `Authorization` carrying an API key are left out of `req`.
//! A script that throws, times out or returns something unsendable is a 500 with a
//! generic body and the request id; the detail goes to the log, never to the caller.
//! Answers carry `Content-Security-Policy: sandbox` and `nosniff`, and may not set
//! cookies: they come from PiCloud's own origin, which the dashboard shares.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use picloud_executor_core::{Run, RunError};
use picloud_shared::access::Principal;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{bearer_credential, ApiPath};
use picloud_shared::{ApiError, AppId, ErrorCode};
use serde_json::{json, Value};

use super::ManagerState;
use crate::api_keys::KEY_PREFIX;
use crate::error::Error;
use crate::run_log::RunRecord;
use crate::scripts::{script_name, FunctionAccess};

/// The function a script exposes to HTTP callers.
pub const ENTRY_POINT: &str = "handle";

/// Calls script `{script}` as an HTTP function (GET).
#[utoipa::path(get, path = "/v1/apps/{app}/functions/{script}", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security((), ("api_key" = ["functions:invoke"])),
    responses((status = 200, description = "what the function answered"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 500, description = "the function failed (see the run log)", body = ErrorBody),
              (status = 503, description = "every script worker is busy", body = ErrorBody)))]
pub async fn call_function_get(
    state: State<ManagerState>,
    path: ApiPath<(String, String)>,
    principal: Option<Extension<Principal>>,
    request: Request,
) -> Result<Response, ApiError> {
    call(state, path, principal, request).await
}

/// Calls script `{script}` as an HTTP function (POST, any body).
#[utoipa::path(post, path = "/v1/apps/{app}/functions/{script}", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security((), ("api_key" = ["functions:invoke"])),
    responses((status = 200, description = "what the function answered"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 500, description = "the function failed (see the run log)", body = ErrorBody),
              (status = 503, description = "every script worker is busy", body = ErrorBody)))]
pub async fn call_function_post(
    state: State<ManagerState>,
    path: ApiPath<(String, String)>,
    principal: Option<Extension<Principal>>,
    request: Request,
) -> Result<Response, ApiError> {
    call(state, path, principal, request).await
}

async fn call(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
    principal: Option<Extension<Principal>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (method, query, headers) = (parts.method.clone(), parts.uri.query(), &parts.headers);
    let query = query.map(str::to_owned);
    // Read as the Bytes extractor does, so the server's body limit applies (413).
    let body = Bytes::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(|rejection| ApiError::new(ErrorCode::PayloadTooLarge, rejection.body_text()))?;
    let app_id = AppId::parse(&app).map_err(|e| ApiError::invalid(e.0))?;
    let name = script_name(&name)?;
    // One query when the script exists; the app is looked up only to tell a missing
    // app (404 app_not_found) from a missing script.
    let stored = match state.script_cache.get(&state.db, &app, name.as_str()).await {
        Err(Error::ScriptNotFound(missing)) => {
            state.db.get_app(&app).await?;
            return Err(Error::ScriptNotFound(missing).into());
        }
        other => other?,
    };
    if principal.is_none() && stored.summary.access != FunctionAccess::Public {
        return Err(ApiError::unauthorized());
    }
    let script = state
        .scripts
        .compiled(
            &app_id,
            name.as_str(),
            stored.summary.version,
            &stored.source,
        )
        .map_err(|e| {
            tracing::error!(app, script = %name, error = %e, "a stored script does not compile");
            ApiError::internal()
        })?;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let req = request_value(&method, &app, name.as_str(), query, headers, &body);
    let run = Run::Call {
        name: ENTRY_POINT.to_owned(),
        arg: req,
    };
    let version = stored.summary.version;
    let outcome = state.scripts.run(app_id, script, run, "function").await;
    let mut record = RunRecord::of(&app, name.as_str(), version, "function", &outcome);
    record.request_id = request_id;
    state.run_log.record(record);
    match outcome.result {
        Ok(value) => response(value).map_err(|why| {
            tracing::warn!(app, script = %name, why, "function answered something unsendable");
            function_failed()
        }),
        Err(RunError::Overloaded) => Err(ApiError::new(
            ErrorCode::Unavailable,
            "every script worker is busy; retry later",
        )),
        Err(error) => {
            tracing::warn!(app, script = %name, %error, "function failed");
            Err(function_failed())
        }
    }
}

/// The generic answer to a function that failed: the caller learns nothing of why.
fn function_failed() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the function failed; its run log has the details",
    )
}

/// `req` as the script sees it.
pub(super) fn request_value(
    method: &Method,
    app: &str,
    name: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Value {
    let query: BTreeMap<String, String> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        if name == COOKIE || (name == AUTHORIZATION && carries_key(value)) {
            continue; // PiCloud's credentials are never the script's to see
        }
        if let Ok(value) = value.to_str() {
            header_map.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let json = if is_json {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    json!({
        "method": method.as_str(),
        "path": format!("/v1/apps/{app}/functions/{name}"),
        "query": query,
        "headers": header_map,
        "body": text,
        "json": json,
    })
}

/// Whether an `Authorization` value is a bearer PiCloud API key, read as the access layer
/// reads it (scheme case-insensitive, spaces trimmed).
fn carries_key(value: &HeaderValue) -> bool {
    bearer_credential(value).is_some_and(|token| token.starts_with(KEY_PREFIX))
}

/// The HTTP response for what `handle` returned.
fn response(value: Value) -> Result<Response, String> {
    let Some(status) = value.get("status") else {
        return Ok((StatusCode::OK, axum::Json(value)).into_response());
    };
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| format!("status {status} is not an HTTP status"))?;
    let mut response = match value.get("body") {
        None | Some(Value::Null) => status.into_response(),
        Some(Value::String(text)) => {
            let mut r = (status, text.clone()).into_response();
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Some(other) => (status, axum::Json(other.clone())).into_response(),
    };
    if let Some(headers) = value.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("'{name}' is not a header name"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(format!("a function may not set '{name}'"));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = HeaderValue::from_str(&text)
                .map_err(|_| format!("the value of header '{name}' cannot be sent"))?;
            response.headers_mut().insert(name, value);
        }
    }
    // A function answers on PiCloud's own origin, beside the dashboard: whatever it
    // returns must not run there as a page with that origin's rights.
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("sandbox"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Headers a function may not set: the connection's framing is the server's, and a
/// cookie on PiCloud's origin could reach the dashboard's.
const RESERVED_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "set-cookie",
    "content-security-policy",
];
