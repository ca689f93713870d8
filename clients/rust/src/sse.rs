//! A streaming Server-Sent Events parser following the WHATWG "event stream
//! interpretation" rules, as the TypeScript client's `sse-parser.ts` does: UTF-8 with an
//! optional leading BOM, lines ending in CR, LF or CRLF, `data` over several lines,
//! comments, `id` (ignored when it contains NUL) and `retry` (digits only). Chunks may be
//! split at any byte, even inside a UTF-8 sequence or between the CR and LF of one line
//! break: lines are cut at the byte level (CR and LF never occur inside a multi-byte
//! sequence) and decoded whole.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseMessage {
    /// The `event` field, or `message` when the frame named none.
    pub event: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The last event ID at dispatch time (empty when no frame set one yet).
    pub id: String,
}

/// What the parser found in a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseItem {
    /// A complete event.
    Message(SseMessage),
    /// A comment line, without the colon and one leading space.
    Comment(String),
    /// A valid `retry` field: the suggested reconnection delay in ms.
    Retry(u64),
}

/// Parses one event stream; make a new parser for every connection.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    started: bool,
    partial: Vec<u8>,
    skip_leading_lf: bool,
    data: String,
    has_data: bool,
    event_type: String,
    last_event_id: String,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// Feeds the next chunk; appends what it completed to `out`.
    pub(crate) fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        if !self.started {
            // The BOM may itself be split across chunks: wait for three bytes.
            let mut head = std::mem::take(&mut self.partial);
            head.extend_from_slice(chunk);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.partial = head;
                return;
            }
            self.started = true;
            let body = head.strip_prefix(BOM).unwrap_or(&head).to_vec();
            self.feed(&body, out);
            return;
        }
        if self.skip_leading_lf && !chunk.is_empty() {
            self.skip_leading_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.feed(chunk, out);
    }

    fn feed(&mut self, text: &[u8], out: &mut Vec<SseItem>) {
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            let c = text[i];
            if c != b'\n' && c != b'\r' {
                i += 1;
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&text[start..i]);
            if c == b'\r' {
                if i + 1 < text.len() {
                    if text[i + 1] == b'\n' {
                        i += 1;
                    }
                } else {
                    // The LF of a CRLF may arrive with the next chunk.
                    self.skip_leading_lf = true;
                }
            }
            i += 1;
            start = i;
            self.line(&String::from_utf8_lossy(&line), out);
        }
        self.partial.extend_from_slice(&text[start..]);
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseItem::Comment(strip_one_space(comment).to_owned()));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(colon) => (&line[..colon], strip_one_space(&line[colon + 1..])),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            // Unknown fields, an `id` with NUL and a `retry` that is not digits are ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        let has_data = std::mem::take(&mut self.has_data);
        let data = std::mem::take(&mut self.data);
        let event = std::mem::take(&mut self.event_type);
        if has_data {
            out.push(SseItem::Message(SseMessage {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
                id: self.last_event_id.clone(),
            }));
        }
    }
}

fn strip_one_space(value: &str) -> &str {
    value.strip_prefix(' ').unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out);
        }
        out
    }

    fn message(event: &str, data: &str, id: &str) -> SseItem {
        SseItem::Message(SseMessage {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    #[test]
    fn parses_frames_comments_and_retry() {
        let stream = b"\xEF\xBB\xBFid: a:1\nevent: hello\ndata: {\"x\":1}\n\n: heartbeat\nretry: 1500\nretry: 1x\ndata: one\ndata:two\n\n";
        assert_eq!(
            parse_in_chunks(&[stream]),
            vec![
                message("hello", "{\"x\":1}", "a:1"),
                SseItem::Comment("heartbeat".into()),
                SseItem::Retry(1500),
                message("message", "one\ntwo", "a:1"),
            ]
        );
    }

    #[test]
    fn any_split_gives_the_same_frames() {
        let stream =
            "\u{feff}id: t:1\r\nevent: e\r\ndata: ü€😀\r\rdata: x\n\nid: bad\0id\ndata: y\r\n\r\n"
                .as_bytes();
        let whole = parse_in_chunks(&[stream]);
        assert_eq!(
            whole,
            vec![
                message("e", "ü€😀", "t:1"),
                message("message", "x", "t:1"),
                message("message", "y", "t:1")
            ]
        );
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let split = parse_in_chunks(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(split, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn a_frame_without_data_is_not_dispatched() {
        assert_eq!(parse_in_chunks(&[b"event: x\n\nid: 5\n\n"]), vec![]);
    }
}
