//! Resume cursors: a stream's position in each of its topics, carried as the SSE `id:`
//! and sent back as `Last-Event-ID`. Text form: `topic:seq` pairs joined by `,`, topics
//! sorted (a topic name may contain `:`; the seq follows the last one).

use std::fmt::Write;

use picloud_shared::TopicName;

/// Longest cursor accepted.
const MAX_CURSOR_LEN: usize = 16 * 1024;

/// A parsed cursor: the last seq seen per topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor(Vec<(TopicName, i64)>);

impl Cursor {
    /// Parses the text form; `None` for anything that is not a well-formed cursor.
    pub fn parse(text: &str) -> Option<Cursor> {
        if text.is_empty() || text.len() > MAX_CURSOR_LEN {
            return None;
        }
        let mut positions = Vec::new();
        for pair in text.split(',') {
            let (name, seq) = pair.rsplit_once(':')?;
            let name = TopicName::parse(name).ok()?;
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seq: i64 = seq.parse().ok()?;
            if positions.iter().any(|(n, _)| *n == name) {
                return None;
            }
            positions.push((name, seq));
        }
        Some(Cursor(positions))
    }

    /// The position in `topic`, if the cursor names it.
    pub fn position(&self, topic: &TopicName) -> Option<i64> {
        self.0.iter().find(|(n, _)| n == topic).map(|(_, s)| *s)
    }
}

/// Writes the text form of `positions` (already sorted by topic) to `out`.
pub fn write_cursor<'a>(out: &mut String, positions: impl Iterator<Item = (&'a TopicName, i64)>) {
    for (i, (topic, seq)) in positions.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{topic}:{seq}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::parse(name).unwrap()
    }

    #[test]
    fn round_trip_with_colons_in_names() {
        let topics = [topic("chat:lobby"), topic("orders")];
        let mut text = String::new();
        write_cursor(&mut text, topics.iter().zip([7, 12]));
        assert_eq!(text, "chat:lobby:7,orders:12");
        let cursor = Cursor::parse(&text).unwrap();
        assert_eq!(cursor.position(&topics[0]), Some(7));
        assert_eq!(cursor.position(&topics[1]), Some(12));
        assert_eq!(cursor.position(&topic("other")), None);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "orders",
            "orders:",
            ":5",
            "orders:-1",
            "orders:+1",
            "orders:1x",
            "orders:1,",
            ",orders:1",
            "orders:1,orders:2",
            "bad name:1",
            "orders:99999999999999999999",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
