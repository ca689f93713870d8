//! App commit to SSE subscriber, two ways, in one run: (1) the app publishes inside its
//! own transaction with `picloud.publish(...)` and PiCloud's outbox source relays it;
//! (2) the app commits its own write, then calls PiCloud's HTTP publish (the dual write
//! sources replace). The two take turns of `--turn-ms` at `--rate` events/s in all, so
//! both meet the same stretches of a noisy machine.
//!
//! One SSE subscriber reads both topics. Each event's latency is its arrival at the
//! subscriber minus the moment the app's commit returned. Prints one JSON object per way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

#[derive(Parser)]
struct Args {
    /// PiCloud's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    picloud: String,
    /// The app.
    #[arg(long, default_value = "bench")]
    app: String,
    /// An API key of the app that may publish.
    #[arg(long)]
    key: String,
    /// A subscriber token for both topics.
    #[arg(long)]
    token: String,
    /// The app database (with the outbox schema and a source relaying it).
    #[arg(long)]
    database_url: String,
    /// The topic the outbox source publishes to.
    #[arg(long, default_value = "via_source")]
    source_topic: String,
    /// The topic HTTP publishes go to.
    #[arg(long, default_value = "via_http")]
    http_topic: String,
    /// Events per second, both ways together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long each way's turn lasts.
    #[arg(long, default_value_t = 500)]
    turn_ms: u64,
}

/// Per way and event number: when the app's commit returned, when the event arrived.
#[derive(Default)]
struct Clock {
    committed: HashMap<(usize, u64), Instant>,
    arrived: HashMap<(usize, u64), Instant>,
    duplicates: u64,
}

const WAYS: [&str; 2] = ["outbox_source", "http_after_commit"];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let clock = Arc::new(Mutex::new(Clock::default()));
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(&args.database_url)
        .await
        .expect("connect to the app database");
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_orders (n BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("TRUNCATE bench_orders")
        .execute(&pool)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let reader = tokio::spawn(subscribe(
        args.picloud.clone(),
        args.app.clone(),
        args.token.clone(),
        [args.source_topic.clone(), args.http_topic.clone()],
        clock.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await; // the stream's hello

    let rate = args.rate.max(1);
    let total = rate * args.seconds;
    let per_turn = (rate * args.turn_ms / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = [0u64; 2];
    for n in 0..total {
        tick.tick().await;
        let way = ((n / per_turn) % 2) as usize;
        sent[way] += 1;
        let (pool, http, clock) = (pool.clone(), http.clone(), clock.clone());
        let url = format!(
            "{}/v1/apps/{}/topics/{}/events",
            args.picloud, args.app, args.http_topic
        );
        let (key, source_topic) = (args.key.clone(), args.source_topic.clone());
        tasks.spawn(async move {
            let data = json!({"n": n, "way": way}).to_string();
            if way == 0 {
                sqlx::query("SELECT picloud.publish($1, 'bench', $2::jsonb)")
                    .bind(&source_topic)
                    .bind(&data)
                    .execute(&pool)
                    .await
                    .expect("publish in the app database");
                clock
                    .lock()
                    .unwrap()
                    .committed
                    .insert((way, n), Instant::now());
            } else {
                sqlx::query("INSERT INTO bench_orders (n) VALUES ($1)")
                    .bind(n as i64)
                    .execute(&pool)
                    .await
                    .expect("the app's own write");
                clock
                    .lock()
                    .unwrap()
                    .committed
                    .insert((way, n), Instant::now());
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(format!("{{\"data\": {data}}}"))
                    .send()
                    .await
                    .expect("HTTP publish");
                assert!(
                    response.status().is_success(),
                    "HTTP publish: {}",
                    response.status()
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a publish failed");
    }
    // Let the last events arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while clock.lock().unwrap().arrived.len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let clock = clock.lock().unwrap();
    for (way, name) in WAYS.iter().enumerate() {
        let mut latencies: Vec<Duration> = clock
            .committed
            .iter()
            .filter(|((w, _), _)| *w == way)
            .filter_map(|(id, committed)| {
                clock
                    .arrived
                    .get(id)
                    .map(|arrived| arrived.saturating_duration_since(*committed))
            })
            .collect();
        latencies.sort();
        let at = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "{{\"way\": \"{name}\", \"sent\": {}, \"arrived\": {}, \"duplicates\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
            sent[way],
            latencies.len(),
            clock.duplicates,
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

/// Reads the SSE stream of both topics, recording each event's arrival.
async fn subscribe(
    base: String,
    app: String,
    token: String,
    topics: [String; 2],
    clock: Arc<Mutex<Clock>>,
) {
    use futures::StreamExt;
    let url = format!(
        "{base}/v1/apps/{app}/realtime?topic={}&topic={}",
        topics[0], topics[1]
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("subscribe");
    assert!(
        response.status().is_success(),
        "subscribe: {}",
        response.status()
    );
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        let now = Instant::now();
        pending.extend_from_slice(&chunk.expect("stream"));
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let Ok(envelope) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let (Some(n), Some(way)) = (
                envelope["data"]["n"].as_u64(),
                envelope["data"]["way"].as_u64(),
            ) else {
                continue;
            };
            let mut clock = clock.lock().unwrap();
            if clock.arrived.insert((way as usize, n), now).is_some() {
                clock.duplicates += 1;
            }
        }
    }
}
