//! One subscriber's SSE stream: replay from the log after its cursor, then live frames
//! from the broadcaster, falling back to the log whenever it lags or sees a gap, so that
//! every event of its topics arrives once, in seq order per topic.
//!
//! The stream is pull-based: nothing is read from the live channel or the log until the
//! client has taken the previous chunk. A reader that stops reading holds no more than
//! one page of log events; the shared ring it fell behind on is bounded.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use picloud_shared::events::CommittedEvent;
use picloud_shared::realtime::{RealtimeStore, TopicAccess};
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, TopicName};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamMap;

use crate::connection_limits::StreamSlot;
use crate::cursor::{write_cursor, Cursor};
use crate::error::Result;
use crate::metrics;
use crate::sse::{self, Frame, HEARTBEAT, PROTOCOL_VERSION};

/// Events read from the log per query while replaying or catching up.
const PAGE: usize = 128;

/// Everything a stream needs to start.
pub struct StreamRequest {
    /// The app.
    pub app: AppId,
    /// The topics, sorted and distinct, with their access facts (heads).
    pub topics: Vec<(TopicName, TopicAccess)>,
    /// Live receivers for the same topics, taken before the heads were read.
    pub receivers: Vec<broadcast::Receiver<Frame>>,
    /// The client's `Last-Event-ID`, if any.
    pub last_event_id: Option<String>,
    /// The token's expiry (ms since the epoch) when the stream needed one.
    pub token_expires_at: Option<i64>,
    /// The slot this stream holds against the connection limits.
    pub slot: StreamSlot,
}

/// Timing knobs of every stream.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    /// Heartbeat comment period.
    pub heartbeat: Duration,
    /// How long before a token's expiry the `token_expiring` frame goes out.
    pub token_notice: Duration,
    /// How often a stream opened with a dashboard session checks that the session is
    /// still signed in (see [`Subscription::end_with_session`]).
    pub session_check: Duration,
}

/// The dashboard session a stream lives no longer than.
struct SessionWatch {
    /// The session cookie's secret. Never logged.
    secret: String,
    every: Interval,
}

struct TopicState {
    name: TopicName,
    /// The last seq this stream has sent (or the client had, when resuming).
    pos: i64,
    /// The log, not the live channel, is the source until this topic has caught up.
    catching_up: bool,
    /// The highest seq known to exist (from the head or the live channel).
    known_head: i64,
}

struct TokenClock {
    expires_at: i64,
    notice_at: Instant,
    expire_at: Instant,
    notice_sent: bool,
}

/// A running stream; turn it into a body with [`Subscription::into_stream`].
pub struct Subscription {
    app: AppId,
    topics: Vec<TopicState>,
    live: LiveInput,
    pending: VecDeque<Bytes>,
    store: Arc<dyn RealtimeStore>,
    heartbeat: Interval,
    token: Option<TokenClock>,
    in_catch_up: bool,
    done: bool,
    session: Option<SessionWatch>,
    _slot: StreamSlot,
}

#[derive(Serialize)]
struct Hello<'a> {
    protocol: u32,
    heartbeat_secs: u64,
    topics: Vec<&'a str>,
    cursor: &'a str,
}

#[derive(Serialize)]
struct Reset<'a> {
    reason: &'static str,
    cursor: &'a str,
    lost: &'a [Lost],
}

#[derive(Serialize)]
struct Lost {
    topic: String,
    from_seq: i64,
    to_seq: i64,
}

#[derive(Serialize)]
struct TokenNotice {
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_at: Option<i64>,
}

impl Subscription {
    /// Resolves the client's cursor against the log and queues the opening frames:
    /// `hello`, then `reset` if the cursor could not be honoured.
    pub async fn open(
        request: StreamRequest,
        store: Arc<dyn RealtimeStore>,
        timing: &StreamTiming,
    ) -> Result<Subscription> {
        let StreamRequest {
            app,
            topics,
            receivers,
            last_event_id,
            token_expires_at,
            slot,
        } = request;
        let resume = Resume::start(&app, topics, last_event_id.as_deref(), &*store).await?;
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + timing.heartbeat, timing.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut subscription = Subscription {
            app,
            topics: resume.topics,
            live: LiveInput::new(receivers),
            pending: VecDeque::new(),
            store,
            heartbeat,
            token: token_expires_at.map(|expires_at| TokenClock::new(expires_at, timing)),
            in_catch_up: false,
            done: false,
            session: None,
            _slot: slot,
        };
        let cursor_text = subscription.cursor();
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            heartbeat_secs: timing.heartbeat.as_secs(),
            topics: subscription
                .topics
                .iter()
                .map(|t| t.name.as_str())
                .collect(),
            cursor: &cursor_text,
        };
        subscription
            .pending
            .push_back(sse::control("hello", Some(&cursor_text), &hello));
        if last_event_id.is_some() {
            if resume.invalid {
                subscription.push_reset("cursor_invalid", &cursor_text, &resume.lost);
            } else if !resume.lost.is_empty() {
                subscription.push_reset("cursor_expired", &cursor_text, &resume.lost);
            } else {
                metrics::resumed();
            }
        }
        if subscription.topics.iter().any(|t| t.catching_up) {
            subscription.enter_catch_up();
        }
        Ok(subscription)
    }

    /// Ends the stream once the dashboard session with cookie secret `secret` is no
    /// longer signed in (signed out or expired), checked every `every`; a check that
    /// fails ends it too. For streams a session opened (a superuser's), which would
    /// otherwise outlive the sign-out.
    pub fn end_with_session(&mut self, secret: String, every: Duration) {
        let mut every = tokio::time::interval_at(Instant::now() + every, every);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.session = Some(SessionWatch { secret, every });
    }

    /// The stream of SSE chunks; it ends on token expiry, server shutdown or a storage
    /// failure (the client resumes from its cursor).
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
        futures::stream::unfold(self, |mut s| async move {
            s.next_chunk().await.map(|chunk| (Ok(chunk), s))
        })
    }

    /// Whether [`Subscription::next_chunk`] has something to return without waiting
    /// (it may say yes for a stream of several topics and then wait). Never yes while
    /// catching up from the log, so callers gathering a batch do not start a read.
    pub(crate) fn has_ready(&self) -> bool {
        !self.pending.is_empty()
            || (!self.done && !self.topics.iter().any(|t| t.catching_up) && self.live.has_waiting())
    }

    /// Where a stream that has sent everything stands: its app, its one topic and the
    /// seq it sent last, to link it to the topic's fan-out ([`crate::fanout`]). `None`
    /// while it has anything to send or to read, covers several topics (each event then
    /// needs the stream's own cursor), watches a session, or is over.
    pub(crate) fn caught_up(&self) -> Option<(&AppId, &TopicName, i64)> {
        let [topic] = self.topics.as_slice() else {
            return None;
        };
        let idle = self.pending.is_empty() && !self.done && self.session.is_none();
        (idle && !topic.catching_up && !self.live.has_waiting()).then_some((
            &self.app,
            &topic.name,
            topic.pos,
        ))
    }

    /// Waits, while the fan-out writes the events, for what the stream sends itself: a
    /// heartbeat or a token notice (then [`Subscription::pop_pending`] has it, and the
    /// stream may be over). Cancel-safe.
    pub(crate) async fn wait_linked(&mut self) {
        let token_deadline = self.token_deadline();
        tokio::select! {
            biased;
            _ = sleep_until(token_deadline) => self.on_token_clock(),
            _ = self.heartbeat.tick() => self.pending.push_back(HEARTBEAT),
        }
    }

    /// The next chunk already queued, without waiting or reading anything.
    pub(crate) fn pop_pending(&mut self) -> Option<Bytes> {
        self.pending.pop_front()
    }

    /// Whether the stream is over once its queued chunks are sent.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Back from the topic's fan-out, which sent the events up to seq `pos`.
    pub(crate) fn unlinked_at(&mut self, pos: i64) {
        let topic = &mut self.topics[0];
        topic.pos = topic.pos.max(pos);
        topic.known_head = topic.known_head.max(pos);
    }

    /// The next bytes to send; `None` when the stream is over.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            if let Some(i) = self.topics.iter().position(|t| t.catching_up) {
                if let Err(error) = self.catch_up(i).await {
                    tracing::warn!(app = %self.app, topic = %self.topics[i].name, %error, "log read failed; ending the stream so the client resumes");
                    self.done = true;
                }
                continue;
            }
            self.wait().await;
        }
    }

    /// Waits for the next thing to send: a live frame, a heartbeat, a token notice, or
    /// the end.
    async fn wait(&mut self) {
        let token_deadline = self.token_deadline();
        tokio::select! {
            biased;
            _ = sleep_until(token_deadline) => self.on_token_clock(),
            (i, item) = self.live.next() => match item {
                Live::Frame(frame) => self.on_frame(i, frame),
                Live::Lagged(missed) => {
                    metrics::lag(missed as i64);
                    self.topics[i].catching_up = true;
                    self.enter_catch_up();
                }
                // The topic was deleted or made internal: the client must ask again.
                Live::Closed => self.done = true,
            },
            _ = self.heartbeat.tick() => self.pending.push_back(HEARTBEAT),
            () = session_tick(&mut self.session) => self.check_session().await,
        }
    }

    /// When the token clock next sends something: the notice, then the expiry.
    fn token_deadline(&self) -> Option<Instant> {
        self.token.as_ref().map(|t| {
            if t.notice_sent {
                t.expire_at
            } else {
                t.notice_at
            }
        })
    }

    async fn check_session(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        match self.store.session_active(&session.secret).await {
            Ok(true) => {}
            Ok(false) => self.done = true,
            Err(error) => {
                tracing::warn!(app = %self.app, %error, "session check failed; ending the stream");
                self.done = true;
            }
        }
    }

    fn on_frame(&mut self, i: usize, frame: Frame) {
        let topic = &mut self.topics[i];
        topic.known_head = topic.known_head.max(frame.seq);
        if frame.seq <= topic.pos {
            return; // already sent: the seam between replay and live
        }
        if frame.seq > topic.pos + 1 {
            // Something in between never reached this channel: read it from the log.
            metrics::lag(frame.seq - topic.pos - 1);
            topic.catching_up = true;
            self.enter_catch_up();
            return;
        }
        topic.pos = frame.seq;
        self.push_event(frame);
    }

    /// Sends the next page of the log for topic `i`.
    async fn catch_up(&mut self, i: usize) -> Result<()> {
        let (name, pos, known_head) = {
            let t = &self.topics[i];
            (t.name.clone(), t.pos, t.known_head)
        };
        let events = self.store.read_log(&self.app, &name, pos, PAGE).await?;
        let first_missing = match events.first() {
            Some(first) if first.seq > pos + 1 => Some(first.seq - 1),
            None if known_head > pos => Some(known_head),
            _ => None,
        };
        if let Some(to) = first_missing {
            // Pruned by retention while this stream was behind.
            self.topics[i].pos = to;
            let cursor = self.cursor();
            self.push_reset("cursor_expired", &cursor, &[lost_range(&name, pos + 1, to)]);
        }
        let full_page = events.len() == PAGE;
        self.send_logged(i, &events);
        if !full_page {
            self.topics[i].catching_up = false;
            if !self.topics.iter().any(|t| t.catching_up) {
                self.leave_catch_up();
            }
        }
        Ok(())
    }

    fn send_logged(&mut self, i: usize, events: &[CommittedEvent]) {
        for event in events {
            let topic = &mut self.topics[i];
            if event.seq <= topic.pos {
                continue;
            }
            topic.pos = event.seq;
            topic.known_head = topic.known_head.max(event.seq);
            self.push_event(Frame::render(event));
        }
    }

    fn push_event(&mut self, frame: Frame) {
        if self.topics.len() == 1 {
            self.pending.push_back(frame.whole());
        } else {
            let cursor = self.cursor();
            self.pending.push_back(sse::id_line(&cursor));
            self.pending.push_back(frame.body());
        }
        metrics::delivered();
    }

    fn push_reset(&mut self, reason: &'static str, cursor: &str, lost: &[Lost]) {
        let reset = Reset {
            reason,
            cursor,
            lost,
        };
        self.pending
            .push_back(sse::control("reset", Some(cursor), &reset));
        metrics::reset(reason);
    }

    fn on_token_clock(&mut self) {
        let Some(clock) = self.token.as_mut() else {
            return;
        };
        if clock.notice_sent {
            let notice = TokenNotice {
                expires_at: None,
                expired_at: Some(clock.expires_at),
            };
            self.pending
                .push_back(sse::control("token_expired", None, &notice));
            self.done = true;
        } else {
            clock.notice_sent = true;
            let notice = TokenNotice {
                expires_at: Some(clock.expires_at),
                expired_at: None,
            };
            self.pending
                .push_back(sse::control("token_expiring", None, &notice));
        }
    }

    fn enter_catch_up(&mut self) {
        if !self.in_catch_up {
            self.in_catch_up = true;
            metrics::catch_up_started();
        }
    }

    fn leave_catch_up(&mut self) {
        if self.in_catch_up {
            self.in_catch_up = false;
            metrics::catch_up_ended();
        }
    }

    fn cursor(&self) -> String {
        let mut text = String::with_capacity(self.topics.len() * 24);
        write_cursor(&mut text, self.topics.iter().map(|t| (&t.name, t.pos)));
        text
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.leave_catch_up();
    }
}

/// A stream's live channels: one receiver polled directly (the common case, and the
/// cheapest), or several merged.
enum LiveInput {
    One(broadcast::Receiver<Frame>),
    Many(StreamMap<usize, LiveFeed>),
}

impl LiveInput {
    fn new(mut receivers: Vec<broadcast::Receiver<Frame>>) -> Self {
        if receivers.len() == 1 {
            return LiveInput::One(receivers.remove(0));
        }
        LiveInput::Many(
            receivers
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i, live_feed(r)))
                .collect(),
        )
    }

    /// The next item of any topic, with the topic's index. Cancel-safe.
    async fn next(&mut self) -> (usize, Live) {
        match self {
            LiveInput::One(receiver) => (
                0,
                match receiver.recv().await {
                    Ok(frame) => Live::Frame(frame),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Live::Lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => Live::Closed,
                },
            ),
            LiveInput::Many(feeds) => feeds.next().await.unwrap_or((0, Live::Closed)),
        }
    }

    /// Whether a frame is waiting; always yes for several topics (not known cheaply).
    fn has_waiting(&self) -> bool {
        match self {
            LiveInput::One(receiver) => !receiver.is_empty(),
            LiveInput::Many(_) => true,
        }
    }
}

/// What a topic's live channel yields.
enum Live {
    Frame(Frame),
    /// The receiver fell this many frames behind; they are in the log.
    Lagged(u64),
    /// The channel was closed (its topic deleted or made internal).
    Closed,
}

type LiveFeed = futures::stream::Chain<
    futures::stream::Map<
        BroadcastStream<Frame>,
        fn(Result<Frame, BroadcastStreamRecvError>) -> Live,
    >,
    futures::stream::Once<std::future::Ready<Live>>,
>;

/// A receiver as a stream of [`Live`] items that ends with [`Live::Closed`].
fn live_feed(receiver: broadcast::Receiver<Frame>) -> LiveFeed {
    fn classify(item: Result<Frame, BroadcastStreamRecvError>) -> Live {
        match item {
            Ok(frame) => Live::Frame(frame),
            Err(BroadcastStreamRecvError::Lagged(missed)) => Live::Lagged(missed),
        }
    }
    BroadcastStream::new(receiver)
        .map(classify as fn(_) -> Live)
        .chain(futures::stream::once(std::future::ready(Live::Closed)))
}

/// Where each topic of a new stream starts, from the client's `Last-Event-ID`.
struct Resume {
    topics: Vec<TopicState>,
    /// The cursor did not parse, or is ahead of a topic's head.
    invalid: bool,
    /// Ranges the cursor asks for that the log no longer holds.
    lost: Vec<Lost>,
}

impl Resume {
    /// Positions for `topics` (each with its head): the cursor's position where the log
    /// still holds what follows it, else the log's start (recording what is lost), else
    /// the head.
    async fn start(
        app: &AppId,
        topics: Vec<(TopicName, TopicAccess)>,
        last_event_id: Option<&str>,
        store: &dyn RealtimeStore,
    ) -> Result<Resume> {
        let cursor = last_event_id.map(Cursor::parse);
        let mut resume = Resume {
            topics: Vec::with_capacity(topics.len()),
            invalid: matches!(cursor, Some(None)),
            lost: Vec::new(),
        };
        for (name, access) in topics {
            let head = access.last_seq;
            let asked = cursor.as_ref().and_then(|c| c.as_ref()?.position(&name));
            let mut pos = head;
            match asked {
                None => {}
                Some(p) if p > head => resume.invalid = true,
                Some(p) if p == head => {}
                Some(p) => {
                    metrics::lag(head - p);
                    pos = match store.log_start(app, &name).await? {
                        Some(start) if start <= p + 1 => p,
                        Some(start) => {
                            resume.lost.push(lost_range(&name, p + 1, start - 1));
                            start - 1
                        }
                        None => {
                            resume.lost.push(lost_range(&name, p + 1, head));
                            head
                        }
                    };
                }
            }
            resume.topics.push(TopicState {
                catching_up: pos < head,
                known_head: head,
                name,
                pos,
            });
        }
        Ok(resume)
    }
}

impl TokenClock {
    /// The clock of a token expiring at `expires_at` (Unix ms).
    fn new(expires_at: i64, timing: &StreamTiming) -> Self {
        let now = Instant::now();
        let left = Duration::from_millis((expires_at - now_ms()).max(0) as u64);
        let expire_at = now + left;
        // The notice period, but never before halfway through the token's remaining
        // life: a short-lived token must not be told to refresh the moment it connects.
        let notice = timing.token_notice.min(left / 2);
        TokenClock {
            expires_at,
            notice_at: expire_at - notice,
            expire_at,
            notice_sent: false,
        }
    }
}

fn lost_range(topic: &TopicName, from_seq: i64, to_seq: i64) -> Lost {
    Lost {
        topic: topic.to_string(),
        from_seq,
        to_seq,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next session check of a stream that has a session to watch; never otherwise.
async fn session_tick(session: &mut Option<SessionWatch>) {
    match session {
        Some(session) => {
            session.every.tick().await;
        }
        None => std::future::pending().await,
    }
}
