//! One webhook attempt: the JSON body, the Standard Webhooks headers, the request, and
//! what its outcome means.

use std::time::{Duration, Instant};

use picloud_shared::time::now_ms;
use serde_json::value::RawValue;

use super::outbox::{AttemptRecord, ClaimedRow, DeadLetterInfo, DeliveryPlan};
use super::signing::signature_header;
use crate::error::{Error, Result};

/// Longest response-body prefix kept per attempt.
pub const MAX_KEPT_BODY: usize = 1024;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered.
    Delivered,
    /// 410 Gone: the receiver wants no more; the trigger gets disabled.
    Gone,
    /// Anything else; `retry_after` is the receiver's `Retry-After`, if it sent one.
    Failed {
        /// Requested wait before the next attempt.
        retry_after: Option<Duration>,
    },
}

/// The webhook body for an event delivery: the event as JSON.
pub fn event_body(row: &ClaimedRow, plan: &DeliveryPlan) -> Result<Vec<u8>> {
    let (Some(id), Some(event_type), Some(payload), Some(published_at)) = (
        plan.event_id.as_deref(),
        plan.event_type.as_deref(),
        plan.payload.as_deref(),
        plan.published_at,
    ) else {
        return Err(Error::Invalid(format!(
            "event {}#{} is no longer in the log",
            row.topic, row.seq
        )));
    };
    let data: &RawValue = serde_json::from_slice(payload)
        .map_err(|e| Error::Corrupt(format!("stored event data is not JSON: {e}")))?;
    let body = serde_json::json!({
        "id": id,
        "app": row.app_id,
        "topic": row.topic,
        "seq": row.seq,
        "type": event_type,
        "data": data,
        "published_at": published_at,
    });
    Ok(serde_json::to_vec(&body).expect("JSON values serialize"))
}

/// The webhook body for a dead-letter delivery: the dead letter and its event.
pub fn dead_letter_body(
    row: &ClaimedRow,
    plan: &DeliveryPlan,
    dead_letter: &DeadLetterInfo,
) -> Result<Vec<u8>> {
    let event: serde_json::Value = match event_body(row, plan) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("our own JSON parses"),
        Err(_) => serde_json::json!({ "topic": row.topic, "seq": row.seq }),
    };
    let body = serde_json::json!({
        "type": "dead_letter",
        "app": row.app_id,
        "dead_letter": dead_letter,
        "event": event,
    });
    Ok(serde_json::to_vec(&body).expect("JSON values serialize"))
}

/// The secrets to sign with: the current one, and the previous one while it is honoured.
pub fn signing_secrets(plan: &DeliveryPlan, now: i64) -> Vec<&str> {
    let mut secrets = vec![plan.secret.as_str()];
    if let (Some(previous), Some(until)) = (&plan.previous_secret, plan.previous_secret_until) {
        if until > now {
            secrets.push(previous);
        }
    }
    secrets
}

/// Sends one signed attempt and classifies it.
pub async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    row: &ClaimedRow,
    secrets: &[&str],
    body: Vec<u8>,
) -> (Outcome, AttemptRecord) {
    let msg_id = format!("msg_{}", row.id);
    let started_at = now_ms();
    let timestamp = started_at / 1000;
    let clock = Instant::now();
    let signature = match signature_header(secrets, &msg_id, timestamp, &body) {
        Ok(signature) => signature,
        Err(e) => return failed(started_at, clock, None, format!("cannot sign: {e}"), None),
    };
    let response = client
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => return failed(started_at, clock, None, describe(&e), None),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = read_prefix(response).await;
    let record = AttemptRecord {
        started_at,
        duration_ms: clock.elapsed().as_millis() as i64,
        status: Some(i64::from(status.as_u16())),
        error: (!status.is_success()).then(|| format!("HTTP {status}")),
        response_body: Some(text),
    };
    let outcome = if status.is_success() {
        Outcome::Delivered
    } else if status == reqwest::StatusCode::GONE {
        Outcome::Gone
    } else {
        Outcome::Failed { retry_after }
    };
    (outcome, record)
}

fn failed(
    started_at: i64,
    clock: Instant,
    status: Option<i64>,
    error: String,
    body: Option<String>,
) -> (Outcome, AttemptRecord) {
    (
        Outcome::Failed { retry_after: None },
        AttemptRecord {
            started_at,
            duration_ms: clock.elapsed().as_millis() as i64,
            status,
            error: Some(error),
            response_body: body,
        },
    )
}

/// A short error text without the URL (which may carry credentials in its query).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

async fn read_prefix(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_KEPT_BODY.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= MAX_KEPT_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// `Retry-After` as delay-seconds or as an HTTP date (a date in the past means now).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let asked = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            asked > Duration::from_secs(100) && asked <= Duration::from_secs(120),
            "{asked:?}"
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
    }
}
