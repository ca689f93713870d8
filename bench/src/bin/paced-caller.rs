//! Calls one URL at a fixed rate for a fixed time and reports the latency of each call
//! (send to full response), so a route's tail is measured at a known load, not at
//! whatever rate a closed-loop tool settles on.
//!
//! Prints one JSON object: calls asked, answered 2xx, failed, and latency percentiles in
//! milliseconds.

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The URL to POST to.
    #[arg(long)]
    url: String,
    /// An `Authorization` header value to send, if any.
    #[arg(long)]
    authorization: Option<String>,
    /// The JSON body to send.
    #[arg(long, default_value = "{}")]
    body: String,
    /// Calls per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let total = args.rate * args.seconds;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        let mut request = client
            .post(&args.url)
            .header("content-type", "application/json")
            .body(args.body.clone());
        if let Some(authorization) = &args.authorization {
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
            (ok, started.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failed = 0u64;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok((true, took)) => latencies.push(took),
            _ => failed += 1,
        }
    }
    latencies.sort();
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{{\"asked\": {total}, \"ok\": {}, \"failed\": {failed}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
