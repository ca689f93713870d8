//! The topic-pattern grammar a trigger listens with: an exact topic, `PREFIX.*` or `*`.

use std::fmt;

use picloud_shared::{NameError, TopicName};
use serde::{Deserialize, Serialize};

/// The topics a trigger listens to. Grammar, one of:
///
/// - an exact topic name (validated like [`TopicName`]): `orders.created` matches only
///   `orders.created`;
/// - `PREFIX.*`, where `PREFIX` is a valid topic name: matches every topic that starts
///   with `PREFIX.` and has at least one more character, so `orders.*` matches
///   `orders.created` and `orders.eu.created` but not `orders`, `orders.` or `ordersx.y`;
/// - `*` alone: matches every topic.
///
/// `*` anywhere else (`or*ders`, `orders*`, `orders.*.created`) is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PatternKind {
    Exact,
    /// `text` ends with `.*`.
    Prefix,
    All,
}

impl TopicPattern {
    /// Validates `value` as a topic pattern (grammar on [`TopicPattern`]).
    pub fn parse(value: &str) -> Result<TopicPattern, NameError> {
        let kind = if value == "*" {
            PatternKind::All
        } else if let Some(prefix) = value.strip_suffix(".*").filter(|p| !p.contains('*')) {
            TopicName::parse(prefix).map_err(|e| {
                NameError(format!(
                    "invalid topic pattern '{value}': the part before '.*' must be a topic name: {e}"
                ))
            })?;
            PatternKind::Prefix
        } else if value.contains('*') {
            return Err(NameError(format!(
                "invalid topic pattern '{value}': '*' may only be the whole pattern ('*') \
                 or follow a final '.' ('orders.*')"
            )));
        } else {
            TopicName::parse(value)?;
            PatternKind::Exact
        };
        Ok(TopicPattern {
            text: value.to_owned(),
            kind,
        })
    }

    /// Whether an event published to `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        match self.kind {
            PatternKind::Exact => topic == self.text,
            PatternKind::Prefix => {
                // `orders.*` -> `orders.`, followed by at least one character.
                let prefix = &self.text[..self.text.len() - 1];
                topic.len() > prefix.len() && topic.starts_with(prefix)
            }
            PatternKind::All => true,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for TopicPattern {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::parse(&value)
    }
}

impl From<TopicPattern> for String {
    fn from(value: TopicPattern) -> String {
        value.text
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl utoipa::PartialSchema for TopicPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}

impl utoipa::ToSchema for TopicPattern {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(value: &str) -> TopicPattern {
        TopicPattern::parse(value).unwrap()
    }

    #[test]
    fn exact_patterns_match_one_topic() {
        let p = pattern("orders.created");
        assert!(p.matches("orders.created"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders.created.eu"));
        assert_eq!(p.as_str(), "orders.created");
    }

    #[test]
    fn prefix_patterns_need_one_more_segment_character() {
        let p = pattern("orders.*");
        assert!(p.matches("orders.created"));
        assert!(p.matches("orders.eu.created"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders."));
        assert!(!p.matches("ordersx.y"));
        assert!(!p.matches("x.orders.created"));
    }

    #[test]
    fn star_matches_everything() {
        let p = pattern("*");
        assert!(p.matches("orders"));
        assert!(p.matches("a/b:c"));
    }

    #[test]
    fn misplaced_stars_are_rejected_clearly() {
        for bad in [
            "or*ders",
            "orders*",
            "*.orders",
            "orders.*.created",
            "**",
            "orders.**",
        ] {
            let err = TopicPattern::parse(bad).unwrap_err();
            assert!(err.0.contains("'*' may only be"), "{bad}: {err}");
        }
        let err = TopicPattern::parse(".*").unwrap_err();
        assert!(err.0.contains("before '.*'"), "{err}");
        assert!(TopicPattern::parse("").is_err());
        assert!(TopicPattern::parse("a b.*").is_err());
        assert!(TopicPattern::parse(&format!("{}.*", "x".repeat(201))).is_err());
    }

    #[test]
    fn patterns_serialize_as_strings() {
        let p: TopicPattern = serde_json::from_str("\"orders.*\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"orders.*\"");
        assert!(serde_json::from_str::<TopicPattern>("\"or*ders\"").is_err());
    }
}
