//! Publishes single events at a fixed rate for a fixed time, so latency is measured at a
//! known load (wrk measures throughput, not latency at a given rate).

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Publish URL, e.g. http://127.0.0.1:8080/v1/apps/bench/topics/orders/events.
    #[arg(long)]
    url: String,
    /// API key with pubsub:publish.
    #[arg(long, env = "PICLOUD_KEY")]
    key: String,
    /// Events per second.
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
    for n in 0..total {
        tick.tick().await;
        let request = client
            .post(&args.url)
            .bearer_auth(&args.key)
            .json(&serde_json::json!({"type": "bench", "data": {"n": n}}));
        tasks.spawn(async move {
            request
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
    }
    let mut ok = 0u64;
    while let Some(result) = tasks.join_next().await {
        ok += u64::from(result.unwrap_or(false));
    }
    println!("{{\"published\": {ok}, \"asked\": {total}}}");
}
