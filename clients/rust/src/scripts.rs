//! Scripts: save (compiled first), version, test-run, inspect runs.
//!
//! ```no_run
//! use picloud_client::scripts::{FunctionAccess, SaveScript, TestRequest, TestRun};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let source = r#"fn handle(req) { #{ status: 200, body: #{ hello: req.query.name } } }"#;
//! let saved = client
//!     .scripts()
//!     .save("hello", SaveScript::new(source).access(FunctionAccess::Public))
//!     .await?;
//! let mut request = TestRequest::default();
//! request.method = Some("GET".into());
//! request.query.insert("name".into(), "world".into());
//! let run = client.scripts().test("hello", TestRun::function(request)).await?;
//! println!("v{} answered {:?} in {} µs", saved.summary.version, run.result, run.duration_us);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Body, Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/scripts");
const GET: Route = Route::get("/v1/apps/{app}/scripts/{script}");
const SAVE: Route = Route::put("/v1/apps/{app}/scripts/{script}");
const DELETE: Route = Route::delete("/v1/apps/{app}/scripts/{script}");
const RUNS: Route = Route::get("/v1/apps/{app}/scripts/{script}/runs");
const TEST: Route = Route::post("/v1/apps/{app}/scripts/{script}/test");
const VERSIONS: Route = Route::get("/v1/apps/{app}/scripts/{script}/versions");
const RESTORE: Route = Route::post("/v1/apps/{app}/scripts/{script}/versions/{version}/restore");

pub(crate) const ROUTES: &[Route] = &[LIST, GET, SAVE, DELETE, RUNS, TEST, VERSIONS, RESTORE];

crate::string_enum! {
    /// Who may call a script as an HTTP function.
    FunctionAccess {
        /// Keys with `functions:invoke` (the default).
        Key = "key",
        /// Anyone.
        Public = "public",
    }
}

/// A script as listed: its current version and settings, without the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptSummary {
    /// The script's name.
    pub name: String,
    /// The current version (1 for the first save).
    pub version: i64,
    /// Who may call it as an HTTP function.
    pub access: FunctionAccess,
    /// First save, ms since the epoch.
    pub created_at: i64,
    /// Last save or restore, ms since the epoch.
    pub updated_at: i64,
}

/// A script with the source of its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Script {
    /// Name, version and settings.
    #[serde(flatten)]
    pub summary: ScriptSummary,
    /// The source of the current version.
    pub source: String,
}

/// A list of scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptList {
    /// The scripts, by name.
    pub scripts: Vec<ScriptSummary>,
}

/// One saved version of a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptVersion {
    /// The version number.
    pub version: i64,
    /// Its source.
    pub source: String,
    /// When it was saved, ms since the epoch.
    pub created_at: i64,
}

/// A script's versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptVersionList {
    /// The versions, newest first.
    pub versions: Vec<ScriptVersion>,
}

/// One line a script logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunLogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// What it said.
    pub message: String,
}

/// A run as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptRun {
    /// The run's id: later runs have larger ids.
    pub id: i64,
    /// The script's name.
    pub script: String,
    /// The version that ran.
    pub version: i64,
    /// How it ran: `function`, `handler`, `cron` or `test`.
    pub kind: String,
    /// `ok`, `error`, `timeout`, `overloaded` or `stopped`.
    pub outcome: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it started, ms since the epoch.
    pub started_at: i64,
    /// How long it ran, in microseconds.
    pub duration_us: i64,
    /// What it logged, in order.
    pub logs: Vec<RunLogLine>,
    /// Lines logged over the limit, not kept.
    pub dropped_logs: i64,
    /// The delivery that ran a trigger handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<i64>,
    /// The `x-request-id` of the HTTP request that ran a function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A page of a script's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScriptRunList {
    /// The runs, newest first.
    pub runs: Vec<ScriptRun>,
}

/// Body of `PUT /v1/apps/{app}/scripts/{script}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveScript {
    /// The Rhai source (at most 256 KiB).
    pub source: String,
    /// Who may call it as an HTTP function; unchanged (or `key`) when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<FunctionAccess>,
}

impl SaveScript {
    /// A save of `source`.
    pub fn new(source: impl Into<String>) -> Self {
        SaveScript {
            source: source.into(),
            access: None,
        }
    }

    /// Sets who may call it.
    pub fn access(mut self, access: FunctionAccess) -> Self {
        self.access = Some(access);
        self
    }
}

/// The request a test run hands to `handle(req)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRequest {
    /// `GET` or `POST` (default `POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers (a `content-type` of `application/json` fills `req.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Body of a test run: the script as an HTTP function or as a trigger handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TestRun {
    /// Call `handle(req)` with a request built from `request`.
    Function {
        /// The request the function gets (a bare `POST` when `None`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<TestRequest>,
        /// Run this source instead of the saved version (compiled, not saved).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// Run the script as a trigger handler with `event` in scope.
    Handler {
        /// The event envelope, as a webhook would get it.
        event: Value,
        /// Run this source instead of the saved version (compiled, not saved).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
}

impl TestRun {
    /// Runs the saved script as a function with `request`.
    pub fn function(request: TestRequest) -> Self {
        TestRun::Function {
            request: Some(request),
            source: None,
        }
    }

    /// Runs the saved script as a trigger handler with `event`.
    pub fn handler(event: Value) -> Self {
        TestRun::Handler {
            event,
            source: None,
        }
    }
}

/// What a test run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TestRunResult {
    /// `ok`, `error` or `timeout`.
    pub outcome: String,
    /// What the run returned (a function's response map, a handler's last value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed, with the line and column when the engine knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it logged.
    pub logs: Vec<RunLogLine>,
    /// Lines logged over the limit, not kept.
    pub dropped_logs: i64,
    /// How long it ran, in microseconds.
    pub duration_us: i64,
}

/// Which runs to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListRuns {
    /// Only runs below this id: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// Scripts; from [`Client::scripts`].
#[derive(Debug, Clone, Copy)]
pub struct Scripts<'a> {
    client: &'a Client,
}

impl Client {
    /// Scripts of the client's app.
    pub fn scripts(&self) -> Scripts<'_> {
        Scripts { client: self }
    }
}

impl Scripts<'_> {
    /// Lists the app's scripts (`GET /v1/apps/{app}/scripts`).
    pub async fn list(&self) -> Result<ScriptList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIST, &[app])).await
    }

    /// Gets a script with the source of its current version
    /// (`GET /v1/apps/{app}/scripts/{script}`).
    pub async fn get(&self, name: &str) -> Result<Script> {
        let app = self.client.app()?;
        self.client.json(Call::new(&GET, &[app, name])).await
    }

    /// Saves a script: compiles it, then stores it as its next version
    /// (`PUT /v1/apps/{app}/scripts/{script}`). A source that does not compile is an
    /// [`crate::Error::Api`] with code `script_compile_error`, `line` and `column`.
    pub async fn save(&self, name: &str, script: SaveScript) -> Result<Script> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&SAVE, &[app, name]).json(&script)?)
            .await
    }

    /// Saves a script's source sent as `text/plain`, keeping its settings.
    pub async fn save_source(&self, name: &str, source: &str) -> Result<Script> {
        let app = self.client.app()?;
        let mut call = Call::new(&SAVE, &[app, name]);
        call.body = Body::Bytes {
            content_type: Some("text/plain; charset=utf-8".into()),
            bytes: source.to_owned().into(),
        };
        self.client.json(call).await
    }

    /// Deletes a script with all its versions (`DELETE /v1/apps/{app}/scripts/{script}`).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let app = self.client.app()?;
        self.client.empty(Call::new(&DELETE, &[app, name])).await
    }

    /// Lists a script's saved versions, newest first
    /// (`GET /v1/apps/{app}/scripts/{script}/versions`).
    pub async fn versions(&self, name: &str) -> Result<ScriptVersionList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&VERSIONS, &[app, name])).await
    }

    /// Restores a saved version as the newest
    /// (`POST /v1/apps/{app}/scripts/{script}/versions/{version}/restore`).
    pub async fn restore(&self, name: &str, version: i64) -> Result<Script> {
        let app = self.client.app()?;
        let version = version.to_string();
        self.client
            .json(Call::new(&RESTORE, &[app, name, &version]))
            .await
    }

    /// Lists a script's last runs, newest first (`GET /v1/apps/{app}/scripts/{script}/runs`).
    pub async fn runs(&self, name: &str, page: ListRuns) -> Result<ScriptRunList> {
        let app = self.client.app()?;
        let call = Call::new(&RUNS, &[app, name])
            .query("before", page.before)
            .query("limit", page.limit);
        self.client.json(call).await
    }

    /// Runs a script once, as a function or a handler
    /// (`POST /v1/apps/{app}/scripts/{script}/test`).
    pub async fn test(&self, name: &str, run: TestRun) -> Result<TestRunResult> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&TEST, &[app, name]).json(&run)?)
            .await
    }
}
