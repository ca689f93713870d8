//! One webhook attempt: the JSON body, the Standard Webhooks headers, the request, and
//! what its outcome means.

use std::time::{Duration, Instant};

use picloud_shared::time::now_ms;
use serde_json::value::RawValue;

use super::outbox::{AttemptRecord, ClaimedRow, DeadLetterInfo, DeliveryPlan};
use super::signing::signature_header;
use crate::cron::CRON_TOPIC;
use crate::error::{Error, Result};

/// Longest response-body prefix kept per attempt.
pub const MAX_KEPT_BODY: usize = 1024;

/// Most response-body bytes read to learn its size when the receiver did not declare it.
pub const MAX_COUNTED_BODY: usize = 64 * 1024;

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

/// An event as webhook receivers get it. `data` is the stored JSON, spliced in as it
/// was published: it is never parsed into a `serde_json::Value`, whose recursion limit a
/// deeply nested (or any future) payload could hit.
#[derive(Debug, serde::Serialize)]
struct EventBody<'a> {
    id: &'a str,
    app: &'a str,
    topic: &'a str,
    seq: i64,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a RawValue,
    published_at: i64,
}

/// A cron trigger's tick, as its handler gets it.
#[derive(Debug, serde::Serialize)]
struct TickBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    app: &'a str,
    trigger_id: &'a str,
    scheduled_at: i64,
}

impl<'a> TickBody<'a> {
    fn new(app: &'a str, trigger_id: &'a str, scheduled_at: i64) -> Self {
        TickBody {
            kind: "cron.tick",
            app,
            trigger_id,
            scheduled_at,
        }
    }
}

/// The event a dead letter points at (a cron tick's own body), or just its place when it
/// left the log.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum DeadEvent<'a> {
    Logged(EventBody<'a>),
    Tick(TickBody<'a>),
    Gone {
        topic: &'a str,
        seq: i64,
    },
    /// A row of an outbox source that PiCloud refused: it never became an event.
    SourceRow {
        source_row: &'a serde_json::value::RawValue,
    },
}

/// The webhook body for a dead-letter delivery.
#[derive(Debug, serde::Serialize)]
struct DeadLetterBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    app: &'a str,
    dead_letter: &'a DeadLetterInfo,
    event: DeadEvent<'a>,
}

/// The event a row delivers, borrowed from its plan.
fn logged_event<'a>(row: &'a ClaimedRow, plan: &'a DeliveryPlan) -> Result<EventBody<'a>> {
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
    // Parsing into a `RawValue` only checks the syntax (without a depth limit), so the
    // body is valid JSON even if the stored bytes were damaged.
    let data: &RawValue = serde_json::from_slice(payload)
        .map_err(|e| Error::Corrupt(format!("stored event data is not JSON: {e}")))?;
    Ok(EventBody {
        id,
        app: &row.app_id,
        topic: &row.topic,
        seq: row.seq,
        event_type,
        data,
        published_at,
    })
}

fn to_json(body: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body)
        .map_err(|e| Error::Invalid(format!("cannot write the webhook body: {e}")))
}

/// The webhook body for an event delivery: the event as JSON, or a cron trigger's tick.
pub fn event_body(row: &ClaimedRow, plan: &DeliveryPlan) -> Result<Vec<u8>> {
    if row.topic == CRON_TOPIC {
        return to_json(&TickBody::new(&row.app_id, &row.trigger_id, row.seq));
    }
    to_json(&logged_event(row, plan)?)
}

/// The webhook body for a dead-letter delivery: the dead letter and its event.
pub fn dead_letter_body(
    row: &ClaimedRow,
    plan: &DeliveryPlan,
    dead_letter: &DeadLetterInfo,
) -> Result<Vec<u8>> {
    let source_row = match dead_letter.payload.as_deref() {
        Some(payload) => Some(
            serde_json::from_str::<&serde_json::value::RawValue>(payload)
                .map_err(|e| Error::Corrupt(format!("a source dead letter's row: {e}")))?,
        ),
        None => None,
    };
    let event = if let Some(source_row) = source_row {
        DeadEvent::SourceRow { source_row }
    } else if row.topic == CRON_TOPIC {
        DeadEvent::Tick(TickBody::new(&row.app_id, &dead_letter.trigger_id, row.seq))
    } else {
        match logged_event(row, plan) {
            Ok(event) => DeadEvent::Logged(event),
            Err(_) => DeadEvent::Gone {
                topic: &row.topic,
                seq: row.seq,
            },
        }
    };
    to_json(&DeadLetterBody {
        kind: "dead_letter",
        app: &row.app_id,
        dead_letter,
        event,
    })
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
    // An excerpt only of answers meant to be read as text: anything else (an HTML page,
    // a binary file) could be content of an internal service the URL points at.
    let textual = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_textual);
    let (text, size) = read_body(response, textual).await;
    let record = AttemptRecord {
        started_at,
        duration_ms: clock.elapsed().as_millis() as i64,
        status: Some(i64::from(status.as_u16())),
        error: (!status.is_success()).then(|| format!("HTTP {status}")),
        response_body: text,
        response_bytes: size,
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
            response_bytes: None,
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

/// Whether a response's content type is one whose excerpt is kept: JSON (also `+json`)
/// or plain text.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/plain" || essence.ends_with("+json")
}

/// Reads the response body: keeps its first [`MAX_KEPT_BODY`] bytes when `keep`, and
/// returns its size, as declared (`Content-Length`) or as counted when the body ends
/// within [`MAX_COUNTED_BODY`] bytes (else unknown).
async fn read_body(mut response: reqwest::Response, keep: bool) -> (Option<String>, Option<i64>) {
    let declared = response.content_length();
    let mut kept = Vec::new();
    let mut counted = 0usize;
    let mut ended = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                counted += chunk.len();
                if keep {
                    let room = MAX_KEPT_BODY.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                let need_more = declared.is_none() || (keep && kept.len() < MAX_KEPT_BODY);
                if !need_more || counted > MAX_COUNTED_BODY {
                    break;
                }
            }
            Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    let size = declared
        .and_then(|n| i64::try_from(n).ok())
        .or_else(|| ended.then_some(counted as i64));
    let text = keep.then(|| String::from_utf8_lossy(&kept).into_owned());
    (text, size)
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
    use super::super::fixtures::{plan, row};
    use super::*;

    #[test]
    fn bodies_carry_the_stored_data_verbatim_however_deep() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let body = String::from_utf8(event_body(&row(), &plan(&deep)).unwrap()).unwrap();
        assert!(
            body.contains(&format!(r#""data":{deep}"#)),
            "{}",
            &body[..80]
        );

        let shallow = r#"{"n": 1,  "s":"x"}"#;
        let body: serde_json::Value =
            serde_json::from_slice(&event_body(&row(), &plan(shallow)).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": "evt_1", "app": "shop", "topic": "orders", "seq": 3,
                "type": "a\"b", "data": {"n": 1, "s": "x"}, "published_at": 42})
        );

        let info = DeadLetterInfo {
            id: 1,
            trigger_id: "trg_0".into(),
            attempts: 3,
            last_error: None,
            last_status: Some(500),
            created_at: 5,
            payload: None,
        };
        let body = dead_letter_body(&row(), &plan(&deep), &info).unwrap();
        assert!(String::from_utf8(body).unwrap().contains(&deep));
        let mut gone = plan(shallow);
        gone.payload = None;
        let body: serde_json::Value =
            serde_json::from_slice(&dead_letter_body(&row(), &gone, &info).unwrap()).unwrap();
        assert_eq!(
            body["event"],
            serde_json::json!({"topic": "orders", "seq": 3})
        );
        assert_eq!(body["type"], "dead_letter");
        assert_eq!(body["dead_letter"]["last_status"], 500);
        // A source's refused row never became an event: the row itself is sent.
        let refused = DeadLetterInfo {
            payload: Some(r#"{"topic":"bad topic!","type":"t","data":1}"#.into()),
            ..info
        };
        let body: serde_json::Value =
            serde_json::from_slice(&dead_letter_body(&row(), &gone, &refused).unwrap()).unwrap();
        assert_eq!(
            body["event"],
            serde_json::json!({"source_row": {"topic": "bad topic!", "type": "t", "data": 1}})
        );
        assert!(body["dead_letter"].get("payload").is_none(), "{body}");
    }

    #[test]
    fn excerpts_are_kept_for_json_and_plain_text_only() {
        for kept in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/plain",
            "application/problem+json",
        ] {
            assert!(is_textual(kept), "{kept}");
        }
        for dropped in [
            "text/html",
            "application/octet-stream",
            "image/png",
            "application/xml",
            "",
        ] {
            assert!(!is_textual(dropped), "{dropped}");
        }
    }

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
