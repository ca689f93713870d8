//! What a publish request must be before it reaches the writer: the size limits, event
//! types, JSON nesting depth and idempotency keys, checked as the request is read. The
//! API document takes its bounds from the constants here.

use bytes::Bytes;
use picloud_shared::TopicName;

use crate::error::{Error, Result};
use crate::publish::NewEvent;

/// Size limits on what one request may publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Largest `data` of one event, in bytes of JSON text.
    pub max_event_bytes: usize,
    /// Most events in one batch request.
    pub max_batch_events: usize,
}

/// The event type when the publisher names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// The characters of an event type, as the API document's pattern.
pub const EVENT_TYPE_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

/// Deepest nesting of arrays and objects accepted in event data (`[[1]]` is 2 deep).
/// Far beyond what real payloads use, and well inside the recursion limits of common
/// JSON parsers (serde_json's is 128), so every webhook receiver and SDK can read what
/// was published.
pub const MAX_DATA_DEPTH: usize = 64;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl PublishLimits {
    /// Validates one event of a request and turns it into a [`NewEvent`].
    pub fn new_event(
        &self,
        topic: &str,
        event_type: Option<String>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<NewEvent> {
        let topic = TopicName::parse(topic).map_err(|e| Error::Invalid(e.0))?;
        let event_type = match event_type {
            None => DEFAULT_EVENT_TYPE.to_owned(),
            Some(t) if is_valid_event_type(&t) => t,
            Some(_) => {
                return Err(Error::Invalid(format!(
                "type must be 1 to {MAX_EVENT_TYPE_LEN} characters of letters, digits and . _ : -"
            )))
            }
        };
        let data: Box<str> = data.into();
        if data.len() > self.max_event_bytes {
            return Err(Error::TooLarge(format!(
                "event data is {} bytes; the limit is {}",
                data.len(),
                self.max_event_bytes
            )));
        }
        if nesting_depth(data.as_bytes()) > MAX_DATA_DEPTH {
            return Err(Error::Invalid(format!(
                "event data is nested more than {MAX_DATA_DEPTH} levels deep"
            )));
        }
        Ok(NewEvent {
            topic,
            event_type,
            data: Bytes::from(String::from(data)),
        })
    }

    /// Checks a batch's size.
    pub fn check_batch(&self, events: usize) -> Result<()> {
        if events == 0 {
            return Err(Error::Invalid("events must not be empty".into()));
        }
        if events > self.max_batch_events {
            return Err(Error::TooLarge(format!(
                "batch has {events} events; the limit is {}",
                self.max_batch_events
            )));
        }
        Ok(())
    }
}

fn is_valid_event_type(value: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Validates an `Idempotency-Key` header value: 1-255 visible ASCII characters.
pub fn validate_idempotency_key(value: &str) -> Result<String> {
    if (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(value.to_owned())
    } else {
        Err(Error::Invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )))
    }
}

/// The deepest nesting of arrays and objects in `json` (valid JSON text): one pass over
/// the bytes counting brackets outside strings, without building anything.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    #[test]
    fn nesting_depth_counts_brackets_outside_strings() {
        use super::nesting_depth;
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(b"[[1], {\"a\": {}}]"), 3);
        assert_eq!(nesting_depth(br#""[[[{{""#), 0);
        assert_eq!(nesting_depth(br#"{"a\"[[": [1]}"#), 2);
        assert_eq!(nesting_depth(br#"["\\", [[]]]"#), 3);
    }

    use super::*;

    fn raw(json: &str) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn events_are_validated() {
        let limits = PublishLimits {
            max_event_bytes: 10,
            max_batch_events: 2,
        };
        let event = limits.new_event("orders", None, raw("{\"a\":1}")).unwrap();
        assert_eq!(event.event_type, "message");
        assert_eq!(&event.data[..], b"{\"a\":1}");
        assert!(matches!(
            limits.new_event("or ders", None, raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", Some("a\nb".into()), raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", Some(String::new()), raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", None, raw("\"0123456789\"")),
            Err(Error::TooLarge(_))
        ));
        assert!(limits.check_batch(2).is_ok());
        assert!(matches!(limits.check_batch(3), Err(Error::TooLarge(_))));
        assert!(matches!(limits.check_batch(0), Err(Error::Invalid(_))));
    }

    #[test]
    fn idempotency_keys_are_validated() {
        assert!(validate_idempotency_key("order-42/retry").is_ok());
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("a b").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
    }
}
