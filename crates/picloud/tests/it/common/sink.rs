//! A local webhook receiver for delivery tests: scripted answers per path, signature
//! checks, an optional delay, and a count of how many requests per `webhook-id` were
//! in flight at once.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use picloud_manager_core::dispatcher::signing::verify;
use serde_json::Value;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub webhook_id: String,
    pub signature_valid: bool,
    pub body: Value,
}

/// A local webhook receiver. Each path answers from its script of statuses (the last one
/// repeats) and checks signatures against the secret registered for the path.
#[derive(Clone, Default)]
pub struct Sink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
pub struct SinkState {
    scripts: std::collections::HashMap<String, VecDeque<u16>>,
    secrets: std::collections::HashMap<String, String>,
    received: Vec<Received>,
    delay: std::time::Duration,
    in_flight: std::collections::HashMap<String, u32>,
    overlaps: u32,
    concurrent: std::collections::HashMap<String, (u32, u32)>,
    outages: std::collections::HashMap<String, (std::time::Duration, Option<std::time::Instant>)>,
}

impl Sink {
    pub async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let router = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (sink, base)
    }

    /// Makes `path` answer 503 for `outage`, counted from its first request, then follow
    /// its script.
    pub fn outage(&self, path: &str, outage: std::time::Duration) {
        self.inner
            .lock()
            .unwrap()
            .outages
            .insert(path.to_owned(), (outage, None));
    }

    /// Makes every answer wait `delay` (to keep deliveries in flight).
    pub fn delay(&self, delay: std::time::Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// How many times a request arrived while another with the same `webhook-id` was
    /// still being answered.
    pub fn overlaps(&self) -> u32 {
        self.inner.lock().unwrap().overlaps
    }

    /// The most requests to `path` that were being answered at once.
    pub fn max_concurrent(&self, path: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .concurrent
            .get(path)
            .map_or(0, |(_, max)| *max)
    }

    /// Every request received, on any path.
    pub fn all(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn script(&self, path: &str, statuses: &[u16]) {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    pub fn secret(&self, path: &str, secret: &str) {
        self.inner
            .lock()
            .unwrap()
            .secrets
            .insert(path.to_owned(), secret.to_owned());
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(sink): State<Sink>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let webhook_id = header("webhook-id");
    let delay = {
        let mut state = sink.inner.lock().unwrap();
        let running = state.in_flight.entry(webhook_id.clone()).or_default();
        *running += 1;
        if *running > 1 {
            state.overlaps += 1;
        }
        let (now, max) = state.concurrent.entry(path.clone()).or_default();
        *now += 1;
        *max = (*max).max(*now);
        state.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = sink.inner.lock().unwrap();
    *state.in_flight.get_mut(&webhook_id).expect("counted above") -= 1;
    state.concurrent.get_mut(&path).expect("counted above").0 -= 1;
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let signature_valid = state.secrets.get(&path).is_some_and(|secret| {
        verify(
            secret,
            &webhook_id,
            timestamp,
            body.as_bytes(),
            &header("webhook-signature"),
        )
    });
    state.received.push(Received {
        path: path.clone(),
        webhook_id,
        signature_valid,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    if let Some((outage, started)) = state.outages.get_mut(&path) {
        let started = *started.get_or_insert_with(std::time::Instant::now);
        if started.elapsed() < *outage {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let script = state.scripts.entry(path).or_default();
    let status = if script.len() > 1 {
        script.pop_front()
    } else {
        script.front().copied()
    }
    .unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}
