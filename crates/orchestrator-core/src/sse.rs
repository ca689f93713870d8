//! Rendering Server-Sent-Events frames. An event is rendered once into a [`Frame`]
//! whose bytes every subscriber shares; control frames (`hello`, `reset`, token notices)
//! are per stream and rare.

use std::fmt::Write;

use bytes::{BufMut, Bytes, BytesMut};
use picloud_shared::events::CommittedEvent;
use serde::Serialize;

/// The comment sent when a stream has been quiet for a heartbeat period.
pub const HEARTBEAT: Bytes = Bytes::from_static(b": heartbeat\n\n");

/// The wire protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// An event rendered as an SSE frame: `id: topic:seq`, `event:`, `data:` lines.
///
/// A stream of one topic sends [`Frame::whole`]: its cursor is the event's own
/// `topic:seq`. A stream of several topics writes its own `id:` line (its cursor covers
/// every topic) and then sends [`Frame::body`]. Either way the payload bytes are the
/// same buffer for every subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's seq in its topic.
    pub seq: i64,
    bytes: Bytes,
    body_start: usize,
}

impl Frame {
    /// Renders `event`.
    pub fn render(event: &CommittedEvent) -> Frame {
        let mut envelope = String::with_capacity(event.data.len() + 128);
        envelope.push_str("{\"topic\":");
        push_json_str(&mut envelope, event.topic.as_str());
        let _ = write!(envelope, ",\"seq\":{},\"type\":", event.seq);
        push_json_str(&mut envelope, &event.event_type);
        envelope.push_str(",\"data\":");
        // Stored data is the publisher's JSON text, checked at publish.
        envelope.push_str(&String::from_utf8_lossy(&event.data));
        let _ = write!(envelope, ",\"published_at\":{}}}", event.published_at);

        let mut out = BytesMut::with_capacity(envelope.len() + 96);
        let _ = writeln!(out, "id: {}:{}", event.topic, event.seq);
        let body_start = out.len();
        out.put_slice(b"event: ");
        out.put_slice(event.event_type.as_bytes());
        out.put_u8(b'\n');
        put_data_lines(&mut out, &envelope);
        Frame {
            seq: event.seq,
            bytes: out.freeze(),
            body_start,
        }
    }

    /// The whole frame, `id:` line included.
    pub fn whole(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The frame without its `id:` line.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(self.body_start..)
    }
}

/// An `id:` line for a stream whose cursor is `cursor`.
pub fn id_line(cursor: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(cursor.len() + 5);
    out.put_slice(b"id: ");
    out.put_slice(cursor.as_bytes());
    out.put_u8(b'\n');
    out.freeze()
}

/// A control frame: `event` with `data` as JSON, and an `id:` line when the frame moves
/// the stream's cursor.
pub fn control<T: Serialize>(event: &str, id: Option<&str>, data: &T) -> Bytes {
    let json = serde_json::to_string(data).expect("control frames serialize");
    let mut out = BytesMut::with_capacity(json.len() + 64);
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    let _ = writeln!(out, "event: {event}");
    put_data_lines(&mut out, &json);
    out.freeze()
}

/// `data:` lines for `text`, one per line of it (JSON whitespace may hold CR or LF,
/// which SSE treats as line ends), then the blank line that ends the frame.
fn put_data_lines(out: &mut BytesMut, text: &str) {
    for line in text.split(['\n', '\r']) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

fn push_json_str(out: &mut String, value: &str) {
    out.push_str(&serde_json::to_string(value).expect("strings serialize"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use picloud_shared::{AppId, TopicName};

    fn event(data: &str) -> CommittedEvent {
        CommittedEvent {
            app: AppId::parse("shop").unwrap(),
            topic: TopicName::parse("chat:lobby").unwrap(),
            seq: 7,
            id: "evt_1".into(),
            event_type: "message".into(),
            data: Bytes::from(data.to_owned()),
            published_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn event_frame_shares_its_body() {
        let frame = Frame::render(&event(r#"{"a":1}"#));
        assert_eq!(
            frame.whole(),
            "id: chat:lobby:7\nevent: message\ndata: {\"topic\":\"chat:lobby\",\"seq\":7,\"type\":\"message\",\"data\":{\"a\":1},\"published_at\":1700000000000}\n\n"
        );
        assert!(frame.whole().ends_with(&frame.body()));
        assert_eq!(frame.body().as_ptr(), frame.whole()[17..].as_ptr());
    }

    #[test]
    fn multi_line_json_becomes_several_data_lines() {
        let frame = Frame::render(&event("{\r\n  \"a\": 1\n}"));
        let text = String::from_utf8(frame.body().to_vec()).unwrap();
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert!(data.len() >= 3, "{text}");
        let joined = data.join("\n");
        let value: serde_json::Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(value["data"]["a"], 1);
        assert!(text.ends_with("\n\n"));
    }
}
