//! Calls URLs at a fixed rate for a fixed time and reports the latency of each call
//! (send to full response), so a route's tail is measured at a known load, not at
//! whatever rate a closed-loop tool settles on.
//!
//! Given several `--url`s it takes turns: `--turn-ms` of calls to the first, then to
//! the next, round and round, so every URL meets the same stretches of a noisy machine
//! and their tails can be compared within one run.
//!
//! Prints one JSON object per URL, a line each: calls asked, answered 2xx, failed, and
//! latency percentiles in milliseconds.

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A URL to POST to (repeat for several, called in turns).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// The `Authorization` header value for each URL, in the same order (none if absent).
    #[arg(long)]
    authorization: Vec<String>,
    /// The JSON body for each URL, in the same order (`{}` if absent).
    #[arg(long)]
    body: Vec<String>,
    /// Calls per second (in all).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long each URL's turn lasts, with several URLs.
    #[arg(long, default_value_t = 500)]
    turn_ms: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let rate = args.rate.max(1);
    let total = rate * args.seconds;
    let per_turn = (rate * args.turn_ms / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for call in 0..total {
        tick.tick().await;
        let target = ((call / per_turn) % args.url.len() as u64) as usize;
        let body = args
            .body
            .get(target)
            .cloned()
            .unwrap_or_else(|| "{}".into());
        let mut request = client
            .post(&args.url[target])
            .header("content-type", "application/json")
            .body(body);
        if let Some(authorization) = args.authorization.get(target) {
            request = request.header("authorization", authorization);
        }
        tasks.spawn(async move {
            let started = Instant::now();
            let ok = match request.send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    response.bytes().await.is_ok() && ok
                }
                Err(_) => false,
            };
            (target, ok, started.elapsed())
        });
    }
    let mut latencies = vec![Vec::new(); args.url.len()];
    let mut asked = vec![0u64; args.url.len()];
    let mut failed = vec![0u64; args.url.len()];
    while let Some(result) = tasks.join_next().await {
        let (target, ok, took) = result.expect("a call task panicked");
        asked[target] += 1;
        if ok {
            latencies[target].push(took);
        } else {
            failed[target] += 1;
        }
    }
    for (target, latencies) in latencies.iter_mut().enumerate() {
        latencies.sort();
        let at = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "{{\"url\": \"{}\", \"asked\": {}, \"ok\": {}, \"failed\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
            args.url[target],
            asked[target],
            latencies.len(),
            failed[target],
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}
