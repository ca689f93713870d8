//! `POST /v1/apps/{app}/scripts/{script}/test`: a test run, as the dashboard's editor
//! makes one. It runs the saved script, or an unsaved source sent along, the way a
//! function call or a trigger delivery would run it, and answers with everything the run
//! did: its value, its error and its log lines. A test run is a real run — what the
//! script publishes is published — and it is recorded in the run log as kind `test`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::Json;
use picloud_executor_core::{Run, RunError, Script};
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::{ApiError, AppId, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::functions::{request_value, ENTRY_POINT};
use super::ManagerState;
use crate::error::Error;
use crate::run_log::{RunLogLine, RunRecord};
use crate::scripts::script_name;

/// The run log's version for a test of an unsaved source.
pub const UNSAVED_VERSION: i64 = 0;

/// Body of a test run: run the script as an HTTP function or as a trigger handler.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TestRun {
    /// Call `handle(req)` with a request built from `request`.
    Function {
        /// Run this source instead of the saved version (it is compiled, not saved).
        source: Option<String>,
        /// The request the function gets (a bare `POST` when absent).
        #[serde(default)]
        request: TestRequest,
    },
    /// Run the script as a trigger handler with `event` and `delivery = #{id: 0,
    /// attempt: 1}` in scope.
    Handler {
        /// Run this source instead of the saved version (it is compiled, not saved).
        source: Option<String>,
        /// The event envelope, as a webhook would get it.
        event: Value,
    },
}

/// The request a test run hands to `handle(req)`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// `GET` or `POST` (default `POST`).
    pub method: Option<String>,
    /// Query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request headers (a `content-type` of `application/json` fills `req.json`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default)]
    pub body: String,
}

/// What a test run did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestRunResult {
    /// `ok`, `error` or `timeout`.
    pub outcome: &'static str,
    /// What the run returned (a function's response map, a handler's last value); null
    /// when it failed.
    pub result: Option<Value>,
    /// Why it failed, with the line and column when the engine knows them.
    pub error: Option<String>,
    /// How long it ran, in microseconds.
    pub duration_us: i64,
    /// What it logged.
    pub logs: Vec<RunLogLine>,
    /// Lines logged over the limit, not kept.
    pub dropped_logs: i64,
}

/// Runs a script once, as a function or a handler, and answers with what it did.
#[utoipa::path(post, path = "/v1/apps/{app}/scripts/{script}/test", tag = "scripts",
    request_body = TestRun,
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, description = "the run happened (its outcome may be an error)",
               body = TestRunResult),
              (status = 400, description = "a bad request, or a source that does not compile \
               (`line`, `column`)", body = ErrorBody),
              (status = 404, description = "no such app, or no saved script and no source",
               body = ErrorBody),
              (status = 503, description = "every script worker is busy", body = ErrorBody)))]
pub async fn test_script(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<TestRun>,
) -> Result<Json<TestRunResult>, ApiError> {
    state.db.get_app(&app).await?;
    let app_id = AppId::parse(&app).map_err(|e| ApiError::invalid(e.0))?;
    let name = script_name(&name)?;
    let (source, run) = match body {
        TestRun::Function { source, request } => {
            let req = test_request(&app, name.as_str(), request)?;
            let run = Run::Call {
                name: ENTRY_POINT.to_owned(),
                arg: req,
            };
            (source, run)
        }
        TestRun::Handler { source, event } => {
            let delivery = json!({"id": 0, "attempt": 1});
            (source, Run::Handler { event, delivery })
        }
    };
    let (version, script) = script_to_test(&state, &app_id, name.as_str(), source).await?;
    let outcome = state.scripts.run(app_id, script, run, "test").await;
    let record = RunRecord::of(&app, name.as_str(), version, "test", &outcome);
    state.run_log.record(record.clone());
    let result = match outcome.result {
        Err(RunError::Overloaded | RunError::Stopped) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "every script worker is busy; retry later",
            ))
        }
        Ok(value) => Some(value),
        Err(_) => None,
    };
    Ok(Json(TestRunResult {
        outcome: record.outcome,
        result,
        error: record.error,
        duration_us: record.duration_us,
        logs: record.logs,
        dropped_logs: record.dropped_logs,
    }))
}

/// The script a test runs, with the version the run log records: the unsaved `source`
/// when one is sent (compiled here, so a syntax error is a 400 with its position),
/// otherwise the saved current version.
async fn script_to_test(
    state: &ManagerState,
    app: &AppId,
    name: &str,
    source: Option<String>,
) -> Result<(i64, Script), ApiError> {
    if let Some(source) = source {
        let script = state
            .scripts
            .compile(&source)
            .map_err(Error::ScriptCompile)?;
        return Ok((UNSAVED_VERSION, script));
    }
    let stored = state
        .script_cache
        .get(&state.db, app.as_str(), name)
        .await?;
    let version = stored.summary.version;
    let script = state
        .scripts
        .compiled(app, name, version, &stored.source)
        .map_err(Error::ScriptCompile)?;
    Ok((version, script))
}

/// `req` for a test's function call, built as a real call's would be.
fn test_request(app: &str, name: &str, request: TestRequest) -> Result<Value, ApiError> {
    let method = match request.method.as_deref().map(str::to_ascii_uppercase) {
        None => Method::POST,
        Some(m) if m == "POST" => Method::POST,
        Some(m) if m == "GET" => Method::GET,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "method '{other}': a function is called with GET or POST"
            )))
        }
    };
    let mut headers = HeaderMap::new();
    for (key, value) in &request.headers {
        let header = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| ApiError::invalid(format!("'{key}' is not a header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ApiError::invalid(format!("the value of header '{key}' is not valid")))?;
        headers.insert(header, value);
    }
    let query = (!request.query.is_empty()).then(|| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&request.query)
            .finish()
    });
    let body = Bytes::from(request.body);
    Ok(request_value(&method, app, name, query, &headers, &body))
}
