//! A webhook receiver for delivery benchmarks: answers 200 at once, and on SIGTERM (or
//! after `--expect` deliveries) prints one JSON line: deliveries, distinct webhook ids,
//! the deliveries/s between the first and last request, and publish-to-webhook latency
//! percentiles (from each body's `published_at`, same machine clock).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Stop after this many deliveries (0: run until SIGTERM).
    #[arg(long, default_value_t = 0)]
    expect: usize,
}

#[derive(Default)]
struct Stats {
    ids: HashSet<String>,
    deliveries: usize,
    latencies_ms: Vec<i64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

type Shared = Arc<(Mutex<Stats>, tokio::sync::Notify, usize)>;

async fn receive(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let published = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["published_at"].as_i64());
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (stats, done, expect) = &*shared;
    let mut stats = stats.lock().unwrap();
    let now = Instant::now();
    stats.first.get_or_insert(now);
    stats.last = Some(now);
    stats.deliveries += 1;
    stats.ids.insert(id);
    if let Some(published) = published {
        stats.latencies_ms.push(now_ms - published);
    }
    if *expect > 0 && stats.ids.len() >= *expect {
        done.notify_one();
    }
    StatusCode::OK
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let shared: Shared = Arc::new((Mutex::default(), tokio::sync::Notify::new(), args.expect));
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .expect("bind");
    println!("listening {}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(shared.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = term.recv() => {}
        _ = shared.1.notified() => {}
    }
    server.abort();
    let stats = shared.0.lock().unwrap();
    let mut latencies = stats.latencies_ms.clone();
    latencies.sort_unstable();
    let span = match (stats.first, stats.last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "{}",
        serde_json::json!({
            "deliveries": stats.deliveries,
            "distinct": stats.ids.len(),
            "per_second": if span > 0.0 { (stats.deliveries as f64 / span).round() } else { 0.0 },
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().copied().unwrap_or(0),
        })
    );
}
