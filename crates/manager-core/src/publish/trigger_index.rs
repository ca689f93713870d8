//! Each app's enabled topic triggers, held in memory by the writer and matched against
//! every published topic: a hash lookup for exact names plus the app's patterns.

use std::collections::HashMap;

use crate::triggers::TopicPattern;

/// The enabled topic triggers of one app, as of a trigger generation.
pub(super) struct AppTriggers {
    pub(super) generation: i64,
    exact: HashMap<String, Vec<String>>,
    patterns: Vec<(TopicPattern, String)>,
}

impl AppTriggers {
    pub(super) fn new(generation: i64, rows: Vec<(String, String)>) -> Self {
        let mut exact: HashMap<String, Vec<String>> = HashMap::new();
        let mut patterns = Vec::new();
        for (id, source) in rows {
            let pattern = match TopicPattern::parse(&source) {
                Ok(pattern) => pattern,
                Err(error) => {
                    // Only a damaged database holds one; events still commit, but this
                    // trigger misses them until its pattern is fixed, so say so loudly.
                    tracing::error!(trigger = %id, pattern = %source, %error,
                        "stored trigger pattern is invalid; the trigger matches no event");
                    crate::metrics::trigger_pattern_invalid();
                    continue;
                }
            };
            if pattern.as_str().ends_with('*') {
                patterns.push((pattern, id));
            } else {
                exact
                    .entry(pattern.as_str().to_owned())
                    .or_default()
                    .push(id);
            }
        }
        Self {
            generation,
            exact,
            patterns,
        }
    }

    /// Ids of the triggers matching `topic`: a hash lookup plus the app's patterns.
    pub(super) fn matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let exact = self.exact.get(topic).into_iter().flatten();
        let patterns = self
            .patterns
            .iter()
            .filter(move |(pattern, _)| pattern.matches(topic))
            .map(|(_, id)| id);
        exact.chain(patterns).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_index_matches_exact_names_and_patterns() {
        let rows = vec![
            ("t1".to_owned(), "orders".to_owned()),
            ("t2".to_owned(), "orders.*".to_owned()),
            ("t3".to_owned(), "*".to_owned()),
            ("t4".to_owned(), "users".to_owned()),
        ];
        let index = AppTriggers::new(1, rows);
        let ids = |topic| index.matching(topic).collect::<Vec<_>>();
        assert_eq!(ids("orders"), ["t1", "t3"]);
        assert_eq!(ids("orders.created"), ["t2", "t3"]);
        assert_eq!(ids("billing"), ["t3"]);
    }
}
