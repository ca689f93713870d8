//! PLACEHOLDER until the triggers branch merges: only the pattern type the publish path
//! needs.

use picloud_shared::NameError;

/// A trigger's topic source: an exact name, `PREFIX.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Parses a pattern.
    pub fn parse(value: &str) -> Result<TopicPattern, NameError> {
        Ok(TopicPattern(value.to_owned()))
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => topic.len() > prefix.len() && topic.starts_with(prefix),
            None => self.0 == topic,
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
