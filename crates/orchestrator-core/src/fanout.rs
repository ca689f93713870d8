//! Writing a topic's events straight to the sockets of its caught-up streams.
//!
//! A stream served on its socket ([`crate::direct_sse`]) that has sent everything
//! (nothing pending, not reading the log, its live channel empty) *links* itself to its
//! topic's [`Fanout`]. From then on a task of the topic (one per stream runtime thread,
//! each with its share of the streams) writes each new event to every linked socket in a
//! tight loop, one non-blocking send each, and the streams' own tasks sleep until a
//! heartbeat or token notice is due: a 10,000-way fan-out wakes a task per thread, not
//! 10,000 (issue #17: the per-stream wake and poll were a quarter of the fan-out's CPU).
//!
//! Whatever the fan-out cannot do at once it hands back: a send that would block or was
//! short (the rest of the frame goes with it), an event that is not the next one of the
//! stream, a fan-out that fell more than the channel's capacity behind. The stream is
//! then *unlinked*, its task is woken and goes on as before, from its own live channel
//! (which still holds what followed) or from the log, so every event still arrives
//! once, in order.
//!
//! The socket's write half is in exactly one place at a time: the stream's task while
//! unlinked, the [`Link`] while linked, so the two never write at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::metrics;
use crate::sse::Frame;

/// One topic's fan-out to its linked streams: one task per shard, each writing the
/// streams that joined it, so a topic with many subscribers is written by as many
/// threads as the stream runtime has.
pub struct Fanout {
    shards: Box<[Arc<Shard>]>,
    /// Which shard the next stream joins.
    next: AtomicUsize,
}

impl Fanout {
    /// A fan-out of `shards` tasks, each falling behind past `capacity` queued frames.
    pub(crate) fn new(capacity: usize, shards: usize) -> Self {
        Fanout {
            shards: (0..shards.max(1))
                .map(|_| Arc::new(Shard::new(capacity)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Queues a committed frame for the linked streams, if there are any.
    pub(crate) fn push(&self, frame: &Frame) {
        for shard in self.shards.iter() {
            shard.push(frame);
        }
    }

    /// Hands every link back and takes no more: the topic's channel is gone.
    pub(crate) fn close(&self) {
        for shard in self.shards.iter() {
            shard.close();
        }
    }

    /// Links a stream whose last written event is `link`'s position; false if the
    /// channel is closed. Must be called on the runtime the sockets belong to, which the
    /// shard's task then runs on.
    pub(crate) fn join(&self, link: Arc<Link>) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[i].join(link)
    }
}

/// One task's share of a topic's linked streams.
struct Shard {
    /// Frames committed and not yet written by the task, oldest first.
    queue: Mutex<Queue>,
    /// Links waiting to join the task's list (the task alone holds the list).
    joining: Mutex<Vec<Arc<Link>>>,
    /// Streams linked or joining, so a topic nobody is linked to costs nothing.
    linked: AtomicUsize,
    /// Whether the task runs.
    running: AtomicBool,
    /// Wakes the task: a frame, a joining link, or the close.
    wake: Notify,
    /// Most frames queued before the task counts as fallen behind.
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// More than `capacity` frames were queued: every link is handed back.
    overflowed: bool,
    /// The topic's channel was closed: every link is handed back, none taken.
    closed: bool,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            queue: Mutex::new(Queue::default()),
            joining: Mutex::new(Vec::new()),
            linked: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, frame: &Frame) {
        if self.linked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut queue = lock(&self.queue);
        if queue.frames.len() >= self.capacity {
            queue.overflowed = true;
            queue.frames.clear();
        } else {
            queue.frames.push_back(frame.clone());
        }
        drop(queue);
        self.wake.notify_one();
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
    }

    fn join(self: &Arc<Self>, link: Arc<Link>) -> bool {
        {
            // Checked with the joining list locked: the task hands back every link that
            // joined before it saw the close.
            let mut joining = lock(&self.joining);
            if lock(&self.queue).closed {
                return false;
            }
            self.linked.fetch_add(1, Ordering::AcqRel);
            joining.push(link);
        }
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run());
        } else {
            self.wake.notify_one();
        }
        true
    }

    /// The task: writes queued frames to every linked stream until none is left.
    ///
    /// Frames are taken before joining links are: a link that joined after a frame was
    /// queued is still offered it (its stream checked its own channel before it joined,
    /// and a frame it had is skipped by seq), so no frame falls between the two.
    async fn run(self: Arc<Self>) {
        let mut links: Vec<Arc<Link>> = Vec::new();
        loop {
            let (frames, overflowed, closed) = {
                let mut queue = lock(&self.queue);
                let taken = std::mem::take(&mut queue.frames);
                (taken, std::mem::take(&mut queue.overflowed), queue.closed)
            };
            {
                let mut joining = lock(&self.joining);
                links.append(&mut joining);
                if overflowed || closed {
                    // Fell behind, or the topic is gone: each stream goes on by itself
                    // (from its channel or the log, or to its end).
                    for link in &links {
                        link.unlink();
                    }
                    self.left(links.len());
                    links.clear();
                }
                if closed {
                    // No join gets past the close, which it checks with `joining` locked.
                    self.running.store(false, Ordering::Release);
                    return;
                }
            }
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    tokio::task::yield_now().await;
                }
                let bytes = frame.whole();
                let before = links.len();
                let mut written = 0u64;
                links.retain(|link| {
                    let offer = link.offer(frame.seq, &bytes);
                    if offer.delivered() {
                        written += 1;
                    }
                    offer.keeps_link()
                });
                self.left(before - links.len());
                metrics::delivered_many(written);
            }
            if frames.is_empty() && !overflowed {
                if links.is_empty() && self.stop_if_idle() {
                    return;
                }
                self.wake.notified().await;
            }
        }
    }

    /// Counts `n` links the task no longer holds.
    fn left(&self, n: usize) {
        if n > 0 {
            self.linked.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Ends the task if no link is joining; a join racing this starts a new one.
    fn stop_if_idle(&self) -> bool {
        let joining = lock(&self.joining);
        if !joining.is_empty() {
            return false;
        }
        self.running.store(false, Ordering::Release);
        true
    }
}

/// A stream's side of its link: its socket's write half while linked, and what the
/// fan-out left it when it handed the stream back.
pub(crate) struct Link {
    state: Mutex<LinkState>,
    /// Tells the stream's task it was handed back.
    unlinked: Notify,
}

struct LinkState {
    /// The socket's write half, while linked.
    writer: Option<OwnedWriteHalf>,
    /// The seq of the last event written.
    pos: i64,
    /// The unsent end of the last frame, when a send was short.
    rest: Option<Bytes>,
}

/// What became of one frame offered to a link.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    Written,
    /// Part of it written; the stream is handed back with the rest to send.
    WrittenInPart,
    /// Already written (the stream was ahead of the fan-out).
    Skipped,
    /// Handed back to the stream's task (or the stream had left).
    Unlinked,
}

impl Offer {
    /// Whether the frame went to the stream, whole or begun (its task sends the rest and
    /// skips the frame when its channel yields it): one delivery either way.
    fn delivered(&self) -> bool {
        matches!(self, Offer::Written | Offer::WrittenInPart)
    }

    /// Whether the fan-out keeps writing to the stream.
    fn keeps_link(&self) -> bool {
        matches!(self, Offer::Written | Offer::Skipped)
    }
}

/// What the stream's task gets back from its link.
pub(crate) struct Returned {
    /// The socket's write half.
    pub(crate) writer: OwnedWriteHalf,
    /// The seq of the last event written while linked.
    pub(crate) pos: i64,
    /// The unsent end of the last event, to write before anything else.
    pub(crate) rest: Option<Bytes>,
}

impl Link {
    /// A link holding `writer`, whose stream has written up to seq `pos`.
    pub(crate) fn new(writer: OwnedWriteHalf, pos: i64) -> Arc<Link> {
        Arc::new(Link {
            state: Mutex::new(LinkState {
                writer: Some(writer),
                pos,
                rest: None,
            }),
            unlinked: Notify::new(),
        })
    }

    /// Writes `bytes`, the event `seq`, if it is the next one and the socket takes it
    /// now; otherwise hands the stream back.
    fn offer(&self, seq: i64, bytes: &Bytes) -> Offer {
        let mut state = lock(&self.state);
        let Some(writer) = state.writer.as_ref() else {
            return Offer::Unlinked; // the stream took its socket back
        };
        if state.rest.is_some() {
            // A short write of the stream's own waits for its task: nothing may come
            // between its parts.
            return Offer::Unlinked;
        }
        if seq <= state.pos {
            return Offer::Skipped;
        }
        if seq == state.pos + 1 {
            match writer.try_write(bytes) {
                Ok(n) if n == bytes.len() => {
                    state.pos = seq;
                    return Offer::Written;
                }
                Ok(n) => {
                    state.pos = seq;
                    state.rest = Some(bytes.slice(n..));
                    drop(state);
                    self.unlinked.notify_one();
                    return Offer::WrittenInPart;
                }
                // Would block, or failed: the stream's task finds out which.
                Err(_) => {}
            }
        }
        drop(state);
        self.unlinked.notify_one();
        Offer::Unlinked
    }

    /// Hands the stream back (the fan-out fell behind or the topic closed).
    fn unlink(&self) {
        self.unlinked.notify_one();
    }

    /// Waits until the fan-out hands the stream back. Cancel-safe.
    pub(crate) async fn handed_back(&self) {
        self.unlinked.notified().await;
    }

    /// Writes `chunk` (a heartbeat or token notice) while linked, if the socket takes
    /// it whole now; false once the stream should take its socket back (`chunk`'s
    /// unsent end is then its [`Returned::rest`]).
    pub(crate) fn write_now(&self, chunk: &Bytes) -> bool {
        let mut state = lock(&self.state);
        let Some(writer) = state.writer.as_ref() else {
            return false;
        };
        match writer.try_write(chunk) {
            Ok(n) if n == chunk.len() => true,
            Ok(n) => {
                state.rest = Some(chunk.slice(n..));
                false
            }
            Err(_) => {
                state.rest = Some(chunk.clone());
                false
            }
        }
    }

    /// Takes the socket back: from now on the fan-out skips this stream.
    pub(crate) fn take_back(&self) -> Option<Returned> {
        let mut state = lock(&self.state);
        let writer = state.writer.take()?;
        Some(Returned {
            writer,
            pos: state.pos,
            rest: state.rest.take(),
        })
    }
}

/// Locks `mutex`, whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use picloud_shared::events::CommittedEvent;
    use picloud_shared::{AppId, TopicName};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair on loopback: the server side's write half and the client side.
    async fn pair() -> (OwnedWriteHalf, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_reader, writer) = server.into_split();
        // The read half is dropped: only writes matter here.
        (writer, client)
    }

    fn frame(seq: i64, data_len: usize) -> Frame {
        Frame::render(&CommittedEvent {
            app: AppId::parse("shop").unwrap(),
            topic: TopicName::parse("orders").unwrap(),
            seq,
            id: format!("evt_{seq}"),
            event_type: "message".into(),
            data: Bytes::from(format!("\"{}\"", "x".repeat(data_len))),
            published_at: 0,
        })
    }

    async fn handed_back(link: &Link) {
        tokio::time::timeout(Duration::from_secs(10), link.handed_back())
            .await
            .expect("the fan-out hands the stream back");
    }

    async fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn linked_streams_get_each_next_event_and_skip_what_they_had() {
        let fanout = Arc::new(Fanout::new(64, 1));
        let (writer, mut client) = pair().await;
        let link = Link::new(writer, 1);
        assert!(fanout.join(link.clone()));
        let (one, two, three) = (frame(1, 10), frame(2, 10), frame(3, 10));
        for f in [&one, &two, &three] {
            fanout.push(f);
        }
        let expected = [two.whole(), three.whole()].concat();
        assert_eq!(read_exactly(&mut client, expected.len()).await, expected);
        let back = link.take_back().unwrap();
        assert_eq!(back.pos, 3);
        assert!(back.rest.is_none());
    }

    #[tokio::test]
    async fn a_socket_that_takes_no_more_is_handed_back_with_the_rest_of_its_frame() {
        let fanout = Arc::new(Fanout::new(1_000_000, 1));
        let (writer, mut client) = pair().await;
        let link = Link::new(writer, 0);
        assert!(fanout.join(link.clone()));
        // The client reads nothing until the socket's buffers are full.
        let mut frames = Vec::new();
        let handed = loop {
            let next = frame(frames.len() as i64 + 1, 64 * 1024);
            fanout.push(&next);
            frames.push(next);
            tokio::select! {
                () = link.handed_back() => break true,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            if frames.len() > 2_000 {
                break false;
            }
        };
        assert!(handed, "a full socket hands the stream back");
        let back = link.take_back().unwrap();
        let sent: Vec<u8> = frames[..back.pos as usize]
            .iter()
            .flat_map(|f| f.whole().to_vec())
            .collect();
        let rest = back.rest.map_or(0, |r| r.len());
        let got = read_exactly(&mut client, sent.len() - rest).await;
        assert_eq!(
            got,
            sent[..sent.len() - rest],
            "whole frames, in order, then part of one"
        );
        // Taken back, the stream is skipped: nothing more arrives from the fan-out.
        fanout.push(&frame(back.pos + 1, 10));
        drop(back.writer);
        let mut more = Vec::new();
        client.read_to_end(&mut more).await.unwrap();
        assert!(
            more.is_empty(),
            "{} more bytes after the hand-back",
            more.len()
        );
    }

    #[tokio::test]
    async fn no_event_is_written_into_a_heartbeat_the_socket_took_only_part_of() {
        let fanout = Arc::new(Fanout::new(64, 1));
        let (writer, mut client) = pair().await;
        let link = Link::new(writer, 0);
        assert!(fanout.join(link.clone()));
        // Far more than the socket's buffers hold: only part of it is taken.
        let chunk = Bytes::from(vec![b':'; 64 * 1024 * 1024]);
        assert!(!link.write_now(&chunk), "the socket took all of it");
        // The client makes room, then an event comes before the stream's task takes its
        // socket back.
        let taken_before = read_exactly(&mut client, 1024 * 1024).await.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
        fanout.push(&frame(1, 10));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let back = link.take_back().unwrap();
        let rest = back.rest.expect("the unsent end of the chunk").len();
        drop(back.writer);
        let mut after = Vec::new();
        client.read_to_end(&mut after).await.unwrap();
        assert_eq!(taken_before + after.len(), chunk.len() - rest);
        assert!(
            after.iter().all(|&b| b == b':'),
            "an event inside the chunk"
        );
    }

    #[tokio::test]
    async fn a_frame_the_socket_takes_only_part_of_counts_as_delivered() {
        let (writer, mut client) = pair().await;
        let link = Link::new(writer, 0);
        let big = frame(1, 64 * 1024 * 1024);
        let offer = link.offer(1, &big.whole());
        assert_eq!(offer, Offer::WrittenInPart);
        assert!(offer.delivered() && !offer.keeps_link());
        let back = link.take_back().unwrap();
        let rest = back.rest.expect("the unsent end").len();
        assert_eq!(
            back.pos, 1,
            "the stream's task sends the rest, then skips seq 1"
        );
        let got = read_exactly(&mut client, big.whole().len() - rest).await;
        assert_eq!(got, big.whole()[..got.len()]);
    }

    #[tokio::test]
    async fn an_event_that_is_not_the_next_hands_the_stream_back() {
        let fanout = Arc::new(Fanout::new(64, 1));
        let (writer, _client) = pair().await;
        let link = Link::new(writer, 5);
        assert!(fanout.join(link.clone()));
        fanout.push(&frame(7, 10));
        handed_back(&link).await;
        let back = link.take_back().unwrap();
        assert_eq!((back.pos, back.rest.is_none()), (5, true));
    }

    #[tokio::test]
    async fn a_fanout_that_falls_behind_or_closes_hands_every_stream_back() {
        for overflow in [true, false] {
            let fanout = Arc::new(Fanout::new(2, 1));
            let (writer, _client) = pair().await;
            let link = Link::new(writer, 0);
            assert!(fanout.join(link.clone()));
            if overflow {
                // Queued before the task runs: more than the capacity.
                for seq in 1..=3 {
                    fanout.push(&frame(seq, 10));
                }
            } else {
                fanout.close();
            }
            handed_back(&link).await;
            assert!(link.take_back().is_some());
        }
        let fanout = Arc::new(Fanout::new(2, 1));
        fanout.close();
        let (writer, _client) = pair().await;
        assert!(
            !fanout.join(Link::new(writer, 0)),
            "no join after the close"
        );
    }
}
