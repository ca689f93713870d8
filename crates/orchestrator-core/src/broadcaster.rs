//! The in-process broadcaster: one bounded channel per (app, topic) with subscribers,
//! fed after each publish commits.
//!
//! Sending is O(1) whatever the number of subscribers (each one pulls at its own pace
//! from the shared ring), so the publish path never waits for fan-out. A subscriber that
//! falls more than the channel's capacity behind is told it lagged and reads the gap
//! from the durable log (see [`crate::stream`]); memory stays bounded by the ring.
//! Streams that have caught up can instead be written by the topic's [`Fanout`], which
//! gets each frame too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use picloud_shared::events::{BroadcastError, CommittedEvent, RealtimeBroadcaster};
use picloud_shared::{AppId, TopicName};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::external_topics::ExternalTopics;
use crate::fanout::Fanout;
use crate::sse::Frame;

type ChannelKey = (AppId, TopicName);

/// One topic's live channel: the ring its streams read, and the fan-out that writes the
/// streams linked to it.
struct Channel {
    sender: broadcast::Sender<Frame>,
    fanout: Arc<Fanout>,
}

impl Channel {
    fn new(capacity: usize, fanout_shards: usize) -> Self {
        Channel {
            sender: broadcast::channel(capacity).0,
            fanout: Arc::new(Fanout::new(capacity, fanout_shards)),
        }
    }
}

impl Drop for Channel {
    /// Streams linked to the fan-out go back to their channel, which tells them it ended.
    fn drop(&mut self) {
        self.fanout.close();
    }
}

/// Fans committed events out to this process's live subscribers.
pub struct Broadcaster {
    channels: RwLock<HashMap<ChannelKey, Channel>>,
    capacity: usize,
    /// Tasks per topic fan-out (see [`Fanout`]).
    fanout_shards: usize,
    /// Set at shutdown: every channel is closed and new subscriptions end at once.
    closed: std::sync::atomic::AtomicBool,
    /// Topics seen external, forgotten when a topic or app is closed.
    external: ExternalTopics,
}

impl Broadcaster {
    /// A broadcaster whose per-topic channels hold `capacity` frames, with a fan-out of
    /// one task per stream runtime thread, `fanout_shards`.
    pub fn new(capacity: usize, fanout_shards: usize) -> Self {
        Broadcaster {
            channels: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            fanout_shards: fanout_shards.max(1),
            closed: std::sync::atomic::AtomicBool::new(false),
            external: ExternalTopics::default(),
        }
    }

    /// The topics this process has seen external, for minting tokens without a read.
    pub fn external_topics(&self) -> &ExternalTopics {
        &self.external
    }

    /// A receiver of the topic's frames from now on.
    ///
    /// `closed` is read while the channel map's lock is held: [`Broadcaster::close_all`]
    /// sets it under the write lock, so a subscription either sees it set or lands in the
    /// map before `close_all` clears it, and no late subscription escapes the close.
    pub fn subscribe(&self, app: &AppId, topic: &TopicName) -> broadcast::Receiver<Frame> {
        let key = (app.clone(), topic.clone());
        {
            let channels = self.read();
            if self.is_closed() {
                return ended_receiver();
            }
            if let Some(channel) = channels.get(&key) {
                return channel.sender.subscribe();
            }
        }
        let mut channels = self.channels.write().expect("channel map lock");
        if self.is_closed() {
            return ended_receiver();
        }
        channels
            .entry(key)
            .or_insert_with(|| Channel::new(self.capacity, self.fanout_shards))
            .sender
            .subscribe()
    }

    /// The fan-out of a topic with a live channel, for streams to link to.
    pub(crate) fn fanout(&self, app: &AppId, topic: &TopicName) -> Option<Arc<Fanout>> {
        self.read()
            .get(&(app.clone(), topic.clone()))
            .map(|channel| channel.fanout.clone())
    }

    /// Whether [`Broadcaster::close_all`] ran; read it with the channel map locked.
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many streams of this process listen to the topic now.
    pub fn subscriber_count(&self, app: &AppId, topic: &TopicName) -> usize {
        self.read()
            .get(&(app.clone(), topic.clone()))
            .map_or(0, |channel| channel.sender.receiver_count())
    }

    /// Every topic of `app` with listeners on this process, by name, with their counts.
    pub fn subscriber_counts(&self, app: &AppId) -> Vec<(TopicName, usize)> {
        let mut counts: Vec<(TopicName, usize)> = self
            .read()
            .iter()
            .filter(|((a, _), channel)| a == app && channel.sender.receiver_count() > 0)
            .map(|((_, topic), channel)| (topic.clone(), channel.sender.receiver_count()))
            .collect();
        counts.sort();
        counts
    }

    /// Drops the channels of these topics if nobody listens to them any more: a refused
    /// subscription cleans up at once, so probing made-up names costs no memory.
    pub fn release(&self, app: &AppId, topics: &[TopicName]) {
        let mut channels = self.channels.write().expect("channel map lock");
        for topic in topics {
            let key = (app.clone(), topic.clone());
            if channels
                .get(&key)
                .is_some_and(|c| c.sender.receiver_count() == 0)
            {
                channels.remove(&key);
            }
        }
    }

    /// Closes every channel, so every stream ends (at shutdown; streams wait on their
    /// channels, so this is how they learn of it without a check per frame).
    pub fn close_all(&self) {
        let mut channels = self.channels.write().expect("channel map lock");
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        channels.clear();
    }

    /// Drops the channels nobody listens to; returns how many remain.
    pub fn collect_idle(&self) -> usize {
        let mut channels = self.channels.write().expect("channel map lock");
        channels.retain(|_, channel| channel.sender.receiver_count() > 0);
        metrics::gauge!("picloud_realtime_channels").set(channels.len() as f64);
        channels.len()
    }

    /// Runs [`Broadcaster::collect_idle`] every `interval` until `stop`.
    pub async fn run_gc(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.collect_idle();
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ChannelKey, Channel>> {
        self.channels.read().expect("channel map lock")
    }
}

/// A receiver whose sender is gone: the stream ends at once.
fn ended_receiver() -> broadcast::Receiver<Frame> {
    broadcast::channel(1).1
}

impl Broadcaster {
    /// Whether anyone here listens to the topic, so events nobody will receive need not
    /// be read.
    pub fn wants(&self, app: &AppId, topic: &TopicName) -> bool {
        self.subscriber_count(app, topic) > 0
    }

    /// The topics someone here listens to now.
    pub fn live_topics(&self) -> Vec<(AppId, TopicName)> {
        self.read()
            .iter()
            .filter(|(_, channel)| channel.sender.receiver_count() > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }
}

impl RealtimeBroadcaster for Broadcaster {
    fn broadcast(&self, events: &[CommittedEvent]) -> Result<(), BroadcastError> {
        let channels = self.read();
        let mut sent = 0u64;
        for event in events {
            let Some(channel) = channels.get(&(event.app.clone(), event.topic.clone())) else {
                continue;
            };
            if channel.sender.receiver_count() == 0 {
                continue;
            }
            // Rendered once; every receiver gets a clone of the same `Bytes`. The ring
            // first: a stream checks it after linking (see `crate::fanout`).
            let frame = Frame::render(event);
            let _ = channel.sender.send(frame.clone());
            channel.fanout.push(&frame);
            sent += 1;
        }
        metrics::counter!("picloud_realtime_events_broadcast_total").increment(sent);
        Ok(())
    }

    fn close_topic(&self, app: &AppId, topic: &TopicName) {
        self.external.forget_topic(app, topic);
        // Dropping the sender ends every receiver once it has read what was sent.
        let key = (app.clone(), topic.clone());
        self.channels
            .write()
            .expect("channel map lock")
            .remove(&key);
    }

    fn close_app(&self, app: &AppId) {
        self.external.forget_app(app);
        self.channels
            .write()
            .expect("channel map lock")
            .retain(|(a, _), _| a != app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(topic: &str, seq: i64) -> CommittedEvent {
        CommittedEvent {
            app: AppId::parse("shop").unwrap(),
            topic: TopicName::parse(topic).unwrap(),
            seq,
            id: format!("evt_{seq}"),
            event_type: "message".into(),
            data: Bytes::from_static(b"{}"),
            published_at: 0,
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_buffer() {
        let b = Broadcaster::new(8, 1);
        let app = AppId::parse("shop").unwrap();
        let orders = TopicName::parse("orders").unwrap();
        let mut one = b.subscribe(&app, &orders);
        let mut two = b.subscribe(&app, &orders);
        let mut other = b.subscribe(&app, &TopicName::parse("other").unwrap());
        b.broadcast(&[event("orders", 1)]).unwrap();
        let (a, c) = (one.recv().await.unwrap(), two.recv().await.unwrap());
        assert_eq!(a.seq, 1);
        assert_eq!(a.whole().as_ptr(), c.whole().as_ptr());
        assert!(other.try_recv().is_err());
        assert_eq!(b.subscriber_count(&app, &orders), 2);
    }

    #[tokio::test]
    async fn idle_channels_are_collected() {
        let b = Broadcaster::new(8, 1);
        let app = AppId::parse("shop").unwrap();
        let kept = b.subscribe(&app, &TopicName::parse("orders").unwrap());
        drop(b.subscribe(&app, &TopicName::parse("gone").unwrap()));
        let probe = TopicName::parse("probe").unwrap();
        drop(b.subscribe(&app, &probe));
        b.release(&app, std::slice::from_ref(&probe));
        assert_eq!(b.read().len(), 2, "released at once");
        assert_eq!(b.collect_idle(), 1);
        drop(kept);
        assert_eq!(b.collect_idle(), 0);
    }

    #[tokio::test]
    async fn closing_all_ends_every_receiver_now_and_later() {
        let b = Broadcaster::new(8, 1);
        let app = AppId::parse("shop").unwrap();
        let topic = TopicName::parse("orders").unwrap();
        let mut before = b.subscribe(&app, &topic);
        b.close_all();
        let mut after = b.subscribe(&app, &topic);
        for receiver in [&mut before, &mut after] {
            assert!(matches!(
                receiver.recv().await,
                Err(broadcast::error::RecvError::Closed)
            ));
        }
    }

    #[test]
    fn a_subscription_racing_close_all_never_stays_open() {
        let app = AppId::parse("shop").unwrap();
        let topic = TopicName::parse("orders").unwrap();
        for _ in 0..20_000 {
            let b = Arc::new(Broadcaster::new(8, 1));
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let closer = {
                let (b, barrier) = (b.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    b.close_all();
                })
            };
            barrier.wait();
            let mut receiver = b.subscribe(&app, &topic);
            closer.join().unwrap();
            assert!(
                matches!(
                    receiver.try_recv(),
                    Err(broadcast::error::TryRecvError::Closed)
                ),
                "a subscription made around close_all is still open"
            );
        }
    }

    #[tokio::test]
    async fn a_slow_receiver_is_told_it_lagged() {
        let b = Broadcaster::new(4, 1);
        let app = AppId::parse("shop").unwrap();
        let mut slow = b.subscribe(&app, &TopicName::parse("orders").unwrap());
        for seq in 1..=10 {
            b.broadcast(&[event("orders", seq)]).unwrap();
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
        assert_eq!(slow.recv().await.unwrap().seq, 7);
    }
}
