//! A host that records what scripts ask of it.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use picloud_executor_core::{Host, HttpRequest, HttpResponse, ScriptEvent};
use picloud_shared::AppId;

/// A token request: app, topics, TTL, subject.
pub type TokenAsked = (AppId, Vec<String>, Option<u64>, Option<String>);

/// Holds publishes back while `hold` is set.
#[derive(Default)]
pub struct Gate {
    pub hold: bool,
    pub entered: usize,
}

/// Records publishes and token requests; `publish` can be held until released.
#[derive(Default)]
pub struct FakeHost {
    pub published: Mutex<Vec<(AppId, ScriptEvent, Option<String>)>>,
    pub tokens: Mutex<Vec<TokenAsked>>,
    pub requests: Mutex<Vec<HttpRequest>>,
    /// Whether `publish` waits, and how many publishes have entered.
    pub gate: Mutex<Gate>,
    pub changed: Condvar,
}

impl FakeHost {
    /// Makes `publish` wait until [`FakeHost::release`].
    pub fn hold_publishes(&self) {
        self.gate.lock().unwrap().hold = true;
    }

    /// Lets held publishes go on.
    pub fn release(&self) {
        self.gate.lock().unwrap().hold = false;
        self.changed.notify_all();
    }

    /// Waits until `n` publishes are being held.
    pub fn wait_entered(&self, n: usize) {
        let mut gate = self.gate.lock().unwrap();
        while gate.entered < n {
            gate = self.changed.wait(gate).unwrap();
        }
    }
}

impl Host for FakeHost {
    fn publish(
        &self,
        app: &AppId,
        events: Vec<ScriptEvent>,
        idempotency_key: Option<String>,
        _deadline: Instant,
    ) -> Result<Vec<i64>, String> {
        {
            let mut gate = self.gate.lock().unwrap();
            gate.entered += 1;
            self.changed.notify_all();
            while gate.hold {
                gate = self.changed.wait(gate).unwrap();
            }
        }
        if events.iter().any(|e| e.topic == "panic") {
            panic!("the host panicked");
        }
        if let Some(bad) = events.iter().find(|e| e.topic.contains(' ')) {
            return Err(format!("'{}' is not a topic name", bad.topic));
        }
        let mut published = self.published.lock().unwrap();
        let first = published.len() as i64 + 1;
        let count = events.len() as i64;
        published.extend(
            events
                .into_iter()
                .map(|e| (app.clone(), e, idempotency_key.clone())),
        );
        Ok((first..first + count).collect())
    }

    fn subscriber_token(
        &self,
        app: &AppId,
        topics: Vec<String>,
        ttl_secs: Option<u64>,
        sub: Option<String>,
        _deadline: Instant,
    ) -> Result<String, String> {
        if topics.iter().any(|t| t == "internal") {
            return Err("topic 'internal' is not external".into());
        }
        self.tokens
            .lock()
            .unwrap()
            .push((app.clone(), topics, ttl_secs, sub));
        Ok("token-1".into())
    }

    fn http_request(
        &self,
        request: HttpRequest,
        _deadline: Instant,
    ) -> Result<HttpResponse, String> {
        self.requests.lock().unwrap().push(request.clone());
        if request.url.contains("10.0.0.1") {
            return Err("the address 10.0.0.1 is not allowed".into());
        }
        Ok(HttpResponse {
            status: 201,
            headers: [("content-type".to_owned(), "text/plain".to_owned())].into(),
            body: format!("{} {}", request.method, request.url),
        })
    }
}
