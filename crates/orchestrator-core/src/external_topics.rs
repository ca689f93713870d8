//! Which topics this process has seen external (subscribable from outside), so minting
//! a subscriber token — the route and scripts' `pubsub::subscriber_token` — need not read
//! the topics table each time. Only "external" is remembered, never access facts a
//! stream needs (those are read fresh at subscribe), and an entry is forgotten when its
//! topic is closed — made internal, deleted, or its app deleted — here or on another
//! node (the [`Broadcaster`](crate::broadcaster::Broadcaster) hears both), and after
//! [`FRESH_FOR`] in any case.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use picloud_shared::{AppId, TopicName};

/// How long an entry is trusted without a closure being heard: the bound on how late a
/// missed notice (a cluster feed that reconnected) can be noticed.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// Most entries kept; past it the cache starts over.
const MAX_ENTRIES: usize = 100_000;

/// The cache; see the module docs.
#[derive(Debug, Default)]
pub struct ExternalTopics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every closure, so a read that raced one is not remembered.
    generation: u64,
    /// When each topic was last seen external, by app: looked up by reference, so a
    /// mint allocates nothing to ask.
    seen: HashMap<AppId, HashMap<TopicName, Instant>>,
    /// How many topics `seen` holds in all.
    entries: usize,
}

/// Taken before reading the database; [`ExternalTopics::remember`] keeps what was read
/// only if no topic was closed meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl ExternalTopics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("external topics lock")
    }

    /// The current generation, to hand back to [`ExternalTopics::remember`].
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// Whether every one of `topics` of `app` was seen external within [`FRESH_FOR`].
    pub fn all_external(&self, app: &AppId, topics: &[TopicName]) -> bool {
        self.lock().seen.get(app).is_some_and(|seen| {
            topics
                .iter()
                .all(|topic| seen.get(topic).is_some_and(|at| at.elapsed() < FRESH_FOR))
        })
    }

    /// Remembers `topics` of `app` as external, as read from the database after
    /// `generation` was taken — unless a topic was closed since.
    pub fn remember(&self, generation: Generation, app: &AppId, topics: &[TopicName]) {
        let mut inner = self.lock();
        if inner.generation != generation.0 {
            return;
        }
        if inner.entries + topics.len() > MAX_ENTRIES {
            inner.seen.clear();
            inner.entries = 0;
        }
        let Inner { seen, entries, .. } = &mut *inner;
        let seen = seen.entry(app.clone()).or_default();
        let now = Instant::now();
        for topic in topics {
            if seen.insert(topic.clone(), now).is_none() {
                *entries += 1;
            }
        }
    }

    /// Forgets `topic` of `app`: it was made internal or deleted.
    pub fn forget_topic(&self, app: &AppId, topic: &TopicName) {
        let mut inner = self.lock();
        inner.generation += 1;
        let forgotten = inner
            .seen
            .get_mut(app)
            .is_some_and(|seen| seen.remove(topic).is_some());
        if forgotten {
            inner.entries -= 1;
        }
    }

    /// Forgets every topic of `app`: it was deleted.
    pub fn forget_app(&self, app: &AppId) {
        let mut inner = self.lock();
        inner.generation += 1;
        if let Some(seen) = inner.seen.remove(app) {
            inner.entries -= seen.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (AppId, TopicName, TopicName) {
        (
            AppId::parse("shop").unwrap(),
            TopicName::parse("orders").unwrap(),
            TopicName::parse("chat").unwrap(),
        )
    }

    #[test]
    fn remembers_until_the_topic_or_app_is_closed() {
        let (app, orders, chat) = names();
        let cache = ExternalTopics::default();
        assert!(!cache.all_external(&app, std::slice::from_ref(&orders)));
        cache.remember(cache.generation(), &app, &[orders.clone(), chat.clone()]);
        assert!(cache.all_external(&app, &[orders.clone(), chat.clone()]));
        cache.forget_topic(&app, &orders);
        assert!(!cache.all_external(&app, &[orders.clone(), chat.clone()]));
        assert!(cache.all_external(&app, std::slice::from_ref(&chat)));
        cache.forget_app(&app);
        assert!(!cache.all_external(&app, &[chat]));
    }

    #[test]
    fn a_read_that_raced_a_closure_is_not_remembered() {
        let (app, orders, _) = names();
        let cache = ExternalTopics::default();
        // Read external from the database, then the topic is made internal before the
        // answer is remembered: the stale answer must not stick.
        let before_read = cache.generation();
        cache.forget_topic(&app, &orders);
        cache.remember(before_read, &app, std::slice::from_ref(&orders));
        assert!(!cache.all_external(&app, &[orders]));
    }
}
