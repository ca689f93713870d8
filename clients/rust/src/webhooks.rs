//! Verifying webhook deliveries: [Standard Webhooks](https://www.standardwebhooks.com)
//! signatures, as PiCloud's dispatcher sends them.
//!
//! Each delivery carries `webhook-id` (`msg_<delivery id>`, the same on every retry: use
//! it to drop duplicates), `webhook-timestamp` (seconds since the epoch) and
//! `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` values over
//! `{id}.{timestamp}.{body}`, one per secret in use (two for a day after a rotation).
//! Verify the raw body bytes before parsing them.
//!
//! ```no_run
//! use std::time::Duration;
//! use picloud_client::webhooks::{self, WebhookEvent};
//!
//! # fn handle(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<(), picloud_client::Error> {
//! let secrets = [std::env::var("PICLOUD_WEBHOOK_SECRET").unwrap_or_default()];
//! let verified = webhooks::verify(&secrets, headers, body, Duration::from_secs(300))?;
//! let event: WebhookEvent = serde_json::from_slice(body).expect("an event delivery");
//! println!("{}: {} #{} ({})", verified.id, event.topic, event.seq, event.event_type);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// The header holding the delivery's id.
pub const HEADER_ID: &str = "webhook-id";
/// The header holding the attempt's time, seconds since the epoch.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header holding the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header is missing.
    #[error("webhook verification failed: missing header {0}")]
    MissingHeader(&'static str),
    /// A header is not valid text, or the timestamp is not an integer.
    #[error("webhook verification failed: malformed header {0}")]
    InvalidHeader(&'static str),
    /// The timestamp is older than the tolerance: a replay, or a very late delivery.
    #[error("webhook verification failed: the timestamp is {age_secs} s old, past the {tolerance_secs} s tolerance")]
    Expired {
        /// How old the timestamp is.
        age_secs: i64,
        /// The tolerance given.
        tolerance_secs: i64,
    },
    /// The timestamp is further in the future than the tolerance.
    #[error("webhook verification failed: the timestamp is {ahead_secs} s in the future, past the {tolerance_secs} s tolerance")]
    FromTheFuture {
        /// How far ahead the timestamp is.
        ahead_secs: i64,
        /// The tolerance given.
        tolerance_secs: i64,
    },
    /// A secret is not `whsec_` and base64 of a non-empty key, or none was given.
    #[error("webhook verification failed: invalid secret ({0})")]
    InvalidSecret(String),
    /// No `v1` signature of the header matches any secret.
    #[error(
        "webhook verification failed: no signature matches (wrong secret, or a tampered body)"
    )]
    BadSignature,
}

/// A verified delivery's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedWebhook {
    /// The `webhook-id`: the same on every retry of one delivery, so an idempotency key.
    pub id: String,
    /// The attempt's `webhook-timestamp`, seconds since the epoch.
    pub timestamp: i64,
}

/// The body of an event delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// The event's id (`evt_…`).
    pub id: String,
    /// The app.
    pub app: String,
    /// The topic.
    pub topic: String,
    /// The event's seq in its topic.
    pub seq: i64,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The published data.
    pub data: Value,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
}

/// Where verification reads headers from: a [`reqwest::header::HeaderMap`] (the `http`
/// crate's, as axum and hyper use), a `HashMap<String, String>`, or `(name, value)`
/// pairs. Names are matched case-insensitively.
pub trait WebhookHeaders {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<Result<&str, ()>>;
}

impl WebhookHeaders for reqwest::header::HeaderMap {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        self.get(name).map(|value| value.to_str().map_err(drop))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, S: std::hash::BuildHasher> WebhookHeaders for HashMap<K, V, S> {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| Ok(v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> WebhookHeaders for [(K, V)] {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| Ok(v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> WebhookHeaders for [(K, V); N] {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> WebhookHeaders for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        self.as_slice().header(name)
    }
}

/// Verifies a delivery: its headers, the raw `body` bytes, and a timestamp within
/// `tolerance` of now (5 minutes is usual). `secrets` holds the trigger's secret, or two
/// during a rotation: a delivery signed with either passes. Signatures are compared in
/// constant time.
pub fn verify<S, H>(
    secrets: &[S],
    headers: &H,
    body: &[u8],
    tolerance: Duration,
) -> Result<VerifiedWebhook, WebhookError>
where
    S: AsRef<str>,
    H: WebhookHeaders + ?Sized,
{
    verify_at(secrets, headers, body, tolerance, SystemTime::now())
}

/// [`verify`] as if the time were `now`.
pub fn verify_at<S, H>(
    secrets: &[S],
    headers: &H,
    body: &[u8],
    tolerance: Duration,
    now: SystemTime,
) -> Result<VerifiedWebhook, WebhookError>
where
    S: AsRef<str>,
    H: WebhookHeaders + ?Sized,
{
    let get = |name: &'static str| match headers.header(name) {
        None => Err(WebhookError::MissingHeader(name)),
        Some(Err(())) => Err(WebhookError::InvalidHeader(name)),
        Some(Ok(value)) => Ok(value.trim()),
    };
    let id = get(HEADER_ID)?;
    let timestamp_text = get(HEADER_TIMESTAMP)?;
    let signatures = get(HEADER_SIGNATURE)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| WebhookError::InvalidHeader(HEADER_TIMESTAMP))?;

    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let tolerance_secs = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance_secs {
        return Err(WebhookError::Expired {
            age_secs: now - timestamp,
            tolerance_secs,
        });
    }
    if timestamp.saturating_sub(now) > tolerance_secs {
        return Err(WebhookError::FromTheFuture {
            ahead_secs: timestamp - now,
            tolerance_secs,
        });
    }

    if secrets.is_empty() {
        return Err(WebhookError::InvalidSecret("no secret given".into()));
    }
    let macs = secrets
        .iter()
        .map(|secret| signed_mac(secret.as_ref(), id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    let candidates: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, signature)| STANDARD.decode(signature).ok())
        .collect();
    // `verify_slice` compares in constant time; every pair is tried, whatever matched.
    let matched = macs.iter().fold(false, |found, mac| {
        candidates.iter().fold(found, |found, candidate| {
            found | mac.clone().verify_slice(candidate).is_ok()
        })
    });
    if !matched {
        return Err(WebhookError::BadSignature);
    }
    Ok(VerifiedWebhook {
        id: id.to_owned(),
        timestamp,
    })
}

/// Signs a delivery as PiCloud does: returns `v1,<base64 signature>` (for tests of
/// receivers).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
    let mac = signed_mac(secret, id, timestamp, body)?;
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The HMAC-SHA256 of `{id}.{timestamp}.{body}` under `secret`'s key.
fn signed_mac(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Hmac<Sha256>, WebhookError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| WebhookError::InvalidSecret("must be 'whsec_' and standard base64".into()))?;
    if key.is_empty() {
        return Err(WebhookError::InvalidSecret("the key is empty".into()));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published Standard Webhooks test vector: `test_sign` in
    /// standard-webhooks/standard-webhooks, `libraries/rust/src/lib.rs` (commit
    /// 1e88c9ce08bb2c605fea9a2a540b4a91d31c7a62).
    const RUST_VECTOR: (&str, &str, i64, &str, &str) = (
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        r#"{"email":"test@example.com","username":"test_user"}"#,
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    );

    /// Another: `testSignFunctionWorks` in standard-webhooks/standard-webhooks,
    /// `libraries/php/tests/WebhookTest.php` (commit
    /// 10f531428d74f502a341d6e73ed2f3490df7679c).
    const PHP_VECTOR: (&str, &str, i64, &str, &str) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        r#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    );

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn headers(id: &str, timestamp: i64, signature: &str) -> Vec<(String, String)> {
        vec![
            ("Webhook-Id".into(), id.into()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            ("webhook-signature".into(), signature.into()),
        ]
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn the_published_test_vectors_verify() {
        for (secret, id, timestamp, body, signature) in [RUST_VECTOR, PHP_VECTOR] {
            assert_eq!(
                sign(secret, id, timestamp, body.as_bytes()).unwrap(),
                signature
            );
            let verified = verify_at(
                &[secret],
                &headers(id, timestamp, signature),
                body.as_bytes(),
                FIVE_MIN,
                at(timestamp + 10),
            )
            .unwrap();
            assert_eq!(
                verified,
                VerifiedWebhook {
                    id: id.into(),
                    timestamp
                }
            );
        }
    }

    #[test]
    fn a_tampered_body_or_a_wrong_secret_is_refused() {
        let (secret, id, timestamp, body, signature) = RUST_VECTOR;
        let h = headers(id, timestamp, signature);
        let now = at(timestamp);
        let tampered = body.replace("test_user", "admin");
        assert_eq!(
            verify_at(&[secret], &h, tampered.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_at(&[PHP_VECTOR.0], &h, body.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::BadSignature)
        );
        let other_id = headers("msg_other", timestamp, signature);
        assert_eq!(
            verify_at(&[secret], &other_id, body.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn either_secret_of_a_rotation_passes_and_several_signatures_are_read() {
        let (secret, id, timestamp, body, signature) = RUST_VECTOR;
        let now = at(timestamp);
        let header = format!("v1,bm9wZQ== v2,abc {signature}  v1,garbage!!");
        let h = headers(id, timestamp, &header);
        verify_at(&[PHP_VECTOR.0, secret], &h, body.as_bytes(), FIVE_MIN, now).unwrap();
        verify_at(&[secret, PHP_VECTOR.0], &h, body.as_bytes(), FIVE_MIN, now).unwrap();
        // A signature under another version tag does not count.
        let v2 = headers(id, timestamp, &signature.replace("v1,", "v2,"));
        assert_eq!(
            verify_at(&[secret], &v2, body.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused_with_a_clear_error() {
        let (secret, id, timestamp, body, signature) = RUST_VECTOR;
        let h = headers(id, timestamp, signature);
        let err = verify_at(
            &[secret],
            &h,
            body.as_bytes(),
            FIVE_MIN,
            at(timestamp + 301),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WebhookError::Expired {
                age_secs: 301,
                tolerance_secs: 300
            }
        );
        assert!(err.to_string().contains("301 s old"), "{err}");
        verify_at(
            &[secret],
            &h,
            body.as_bytes(),
            FIVE_MIN,
            at(timestamp + 300),
        )
        .unwrap();
        let err = verify_at(
            &[secret],
            &h,
            body.as_bytes(),
            FIVE_MIN,
            at(timestamp - 301),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WebhookError::FromTheFuture {
                ahead_secs: 301,
                tolerance_secs: 300
            }
        );
    }

    #[test]
    fn missing_headers_and_bad_secrets_say_what_is_wrong() {
        let (secret, id, timestamp, body, signature) = RUST_VECTOR;
        let now = at(timestamp);
        for missing in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let h: Vec<_> = headers(id, timestamp, signature)
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(missing))
                .collect();
            assert_eq!(
                verify_at(&[secret], &h, body.as_bytes(), FIVE_MIN, now),
                Err(WebhookError::MissingHeader(missing))
            );
        }
        let mut h = headers(id, timestamp, signature);
        h[1].1 = "16493675.53".into();
        assert_eq!(
            verify_at(&[secret], &h, body.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::InvalidHeader(HEADER_TIMESTAMP))
        );
        let h = headers(id, timestamp, signature);
        for bad in ["whsec_!!!", "whsec_", ""] {
            assert!(matches!(
                verify_at(&[bad], &h, body.as_bytes(), FIVE_MIN, now),
                Err(WebhookError::InvalidSecret(_))
            ));
        }
        let none: [&str; 0] = [];
        assert!(matches!(
            verify_at(&none, &h, body.as_bytes(), FIVE_MIN, now),
            Err(WebhookError::InvalidSecret(_))
        ));
    }

    #[test]
    fn reads_an_http_header_map() {
        let (secret, id, timestamp, body, signature) = PHP_VECTOR;
        let mut map = reqwest::header::HeaderMap::new();
        map.insert(HEADER_ID, id.parse().unwrap());
        map.insert(HEADER_TIMESTAMP, timestamp.to_string().parse().unwrap());
        map.insert(HEADER_SIGNATURE, signature.parse().unwrap());
        verify_at(&[secret], &map, body.as_bytes(), FIVE_MIN, at(timestamp)).unwrap();
    }
}
