//! Realtime: a backend consumer of a subscription, as a resumable [`Stream`], following
//! `docs/realtime-protocol.md` (version 1) as the TypeScript client does.
//!
//! A [`Subscription`] connects to `GET /v1/apps/{app}/realtime`, reads SSE frames, and
//! hands over [`StreamItem`]s: every event exactly once per (topic, seq), in seq order
//! per topic, with the stream's cursor after it. On a dropped connection, a server
//! restart or silence past twice the heartbeat interval it reconnects with jittered
//! exponential backoff from the cursor (`Last-Event-ID`), so nothing is missed and
//! nothing repeats. Tokens come from an async provider, asked again before the token
//! expires (`token_expiring`), when it has (`token_expired`), or on a `401`. A `reset`
//! (events pruned before the consumer got them, or a cursor the server could not use) is
//! handed over as [`StreamItem::Reset`], never hidden.
//!
//! Persist the cursor of what you processed ([`RealtimeEvent::cursor`], or
//! [`Subscription::cursor`]) and pass it to [`SubscribeBuilder::cursor`] to resume after
//! a restart of your worker.
//!
//! ```no_run
//! use futures::StreamExt;
//! use picloud_client::realtime::StreamItem;
//! use std::time::Duration;
//!
//! # async fn run(client: picloud_client::Client, saved_cursor: Option<String>) -> Result<(), picloud_client::Error> {
//! let mut subscription = client
//!     .realtime()
//!     .subscribe(["orders", "payments"])
//!     .cursor(saved_cursor)
//!     // Mint tokens with the client's own key (it needs `pubsub:token`).
//!     .mint_tokens(Some(Duration::from_secs(3600)), Some("billing-worker"))
//!     .build()?;
//! while let Some(item) = subscription.next().await {
//!     match item? {
//!         StreamItem::Event(event) => {
//!             println!("{} #{}: {}", event.topic, event.seq, event.data);
//!             // store(event.cursor) once the event is processed
//!         }
//!         StreamItem::Reset(reset) => eprintln!("lost events: {:?}", reset.lost),
//!         StreamItem::Reconnecting { error, delay } => eprintln!("{error}; again in {delay:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BoxError;
use crate::http::{api_error, retry_after, Backoff, Call, Route};
use crate::sse::{SseItem, SseMessage, SseParser};
use crate::{Client, Error, Result};

const SUBSCRIBE: Route = Route::get("/v1/apps/{app}/realtime");
const ROTATE_KEYS: Route = Route::post("/v1/apps/{app}/realtime/keys/rotate");
const LIVE_SUBSCRIBERS: Route = Route::get("/v1/apps/{app}/realtime/subscribers");

pub(crate) const ROUTES: &[Route] = &[SUBSCRIBE, ROTATE_KEYS, LIVE_SUBSCRIBERS];

/// The protocol major version this SDK speaks.
pub const PROTOCOL_VERSION: u64 = 1;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// A `token_expiring` this soon after `hello` means tokens live no longer than the
/// server's notice: switching early would only reconnect in a loop, so such a
/// connection waits for `token_expired` instead.
const MIN_AGE_FOR_EARLY_SWITCH: Duration = Duration::from_secs(1);

/// The result of a rotation of the app's subscriber-token signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RotatedKey {
    /// The new signing key's id.
    pub kid: String,
    /// Until when tokens signed with earlier keys verify, ms since the epoch.
    pub previous_valid_until: i64,
}

/// One topic's live subscriber count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicSubscribers {
    /// The topic.
    pub topic: String,
    /// Streams listening to it.
    pub subscribers: u64,
}

/// Live subscribers of an app on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LiveSubscribers {
    /// Open streams of the app.
    pub streams: u64,
    /// Per topic with at least one listener.
    pub topics: Vec<TopicSubscribers>,
}

/// Realtime routes; from [`Client::realtime`].
#[derive(Debug, Clone, Copy)]
pub struct Realtime<'a> {
    client: &'a Client,
}

impl Client {
    /// Realtime streams, token keys and live subscribers of the client's app.
    pub fn realtime(&self) -> Realtime<'_> {
        Realtime { client: self }
    }
}

impl Realtime<'_> {
    /// Starts configuring a subscription to `topics` (`GET /v1/apps/{app}/realtime`).
    pub fn subscribe<I, S>(&self, topics: I) -> SubscribeBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SubscribeBuilder {
            client: self.client.clone(),
            topics: topics.into_iter().map(Into::into).collect(),
            cursor: None,
            token: None,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: 0.2,
        }
    }

    /// Rotates the app's subscriber-token signing key; tokens signed with the previous
    /// key stay valid for `grace` (the server's default when `None`; zero ends them at
    /// once) (`POST /v1/apps/{app}/realtime/keys/rotate`).
    pub async fn rotate_keys(&self, grace: Option<Duration>) -> Result<RotatedKey> {
        let app = self.client.app()?;
        let call = Call::new(&ROTATE_KEYS, &[app]).query("grace_secs", grace.map(|g| g.as_secs()));
        self.client.json(call).await
    }

    /// Who is listening now, on the node that answers
    /// (`GET /v1/apps/{app}/realtime/subscribers`).
    pub async fn live_subscribers(&self) -> Result<LiveSubscribers> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIVE_SUBSCRIBERS, &[app])).await
    }
}

/// The future a [`TokenProvider`] returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = std::result::Result<String, BoxError>> + Send>>;

/// Supplies subscriber tokens: called before the first connection, before the token
/// expires, and whenever the server refuses it. Any
/// `Fn() -> impl Future<Output = Result<String, E>>` is one.
pub trait TokenProvider: Send + Sync {
    /// A fresh token.
    fn token(&self) -> TokenFuture;
}

impl<F, Fut, E> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = std::result::Result<String, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn token(&self) -> TokenFuture {
        let future = self();
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// Configures a [`Subscription`]; from [`Realtime::subscribe`].
#[must_use = "a subscription does nothing until built and polled"]
pub struct SubscribeBuilder {
    client: Client,
    topics: Vec<String>,
    cursor: Option<String>,
    token: Option<Arc<dyn TokenProvider>>,
    initial_delay: Duration,
    max_delay: Duration,
    jitter: f64,
}

impl fmt::Debug for SubscribeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeBuilder")
            .field("topics", &self.topics)
            .field("cursor", &self.cursor)
            .field("token_provider", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl SubscribeBuilder {
    /// Resumes from `cursor` (an event's [`RealtimeEvent::cursor`]); without one, every
    /// topic starts live. Topics missing from it start live; others in it are ignored.
    pub fn cursor(mut self, cursor: impl Into<Option<String>>) -> Self {
        self.cursor = cursor.into().filter(|c| !c.is_empty());
        self
    }

    /// Where subscriber tokens come from (needed for topics with `auth_mode: "token"`).
    pub fn token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.token = Some(Arc::new(provider));
        self
    }

    /// Mints tokens with the client's own API key (which needs `pubsub:token`), for the
    /// subscription's topics, each living `ttl` and carrying `sub`.
    pub fn mint_tokens(self, ttl: Option<Duration>, sub: Option<&str>) -> Self {
        let client = self.client.clone();
        let topics = self.topics.clone();
        let sub = sub.map(str::to_owned);
        self.token_provider(move || {
            let (client, topics, sub) = (client.clone(), topics.clone(), sub.clone());
            async move {
                let minted = client
                    .pubsub()
                    .subscriber_token(topics, ttl, sub.as_deref())
                    .await?;
                Ok::<_, Error>(minted.token)
            }
        })
    }

    /// Reconnection delays: `initial` doubling to `max`, each with up to `jitter` (0..1)
    /// of it taken off at random (default 1 s to 30 s, 0.2). A server's `retry:` field
    /// replaces `initial`.
    pub fn backoff(mut self, initial: Duration, max: Duration, jitter: f64) -> Self {
        self.initial_delay = initial;
        self.max_delay = max;
        self.jitter = jitter;
        self
    }

    /// Builds the subscription; it connects when first polled.
    pub fn build(self) -> Result<Subscription> {
        let app = self.client.app()?.to_owned();
        let topics: Vec<String> = self
            .topics
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if topics.is_empty() {
            return Err(Error::config("a subscription needs at least one topic"));
        }
        let mut url = self.client.inner.url(&SUBSCRIBE.fill(&[&app]));
        for (i, topic) in topics.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str("topic=");
            url.push_str(&crate::http::encode_segment(topic));
        }
        let tracker = CursorTracker::new(&topics, self.cursor.as_deref());
        let cursor = tracker.cursor();
        let state = State {
            client: self.client,
            url,
            tracker,
            backoff: Backoff::new(self.initial_delay, self.max_delay, self.jitter),
            provider: self.token,
            token: None,
            token_stale: true,
            token_tried: false,
            heartbeat: DEFAULT_HEARTBEAT,
            conn: None,
            wait: None,
            queue: VecDeque::new(),
            fatal: None,
            finished: false,
        };
        Ok(Subscription {
            state: Some(Box::new(state)),
            pending: None,
            cursor,
            topics,
        })
    }
}

/// The first frame of every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hello {
    /// The protocol version, e.g. 1.
    pub protocol: Value,
    /// Seconds between heartbeat comments.
    pub heartbeat_secs: u64,
    /// The stream's topics.
    pub topics: Vec<String>,
    /// Where the stream starts.
    pub cursor: String,
}

/// An event received from a subscription.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RealtimeEvent {
    /// The topic it was published to.
    pub topic: String,
    /// Its position in the topic's log (gap-free, increasing).
    pub seq: i64,
    /// The event type (`message` unless the publisher named one).
    pub event_type: String,
    /// The published JSON value.
    pub data: Value,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
    /// The stream's resume cursor after this event (`topic:seq,…`, not an event id).
    pub cursor: String,
}

/// A range of events the server could no longer replay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostRange {
    /// The topic.
    pub topic: String,
    /// The first lost seq.
    pub from_seq: i64,
    /// The last lost seq.
    pub to_seq: i64,
}

/// Continuity was lost: the cursor could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reset {
    /// `cursor_expired` (events were pruned by retention) or `cursor_invalid`.
    pub reason: String,
    /// Where the stream continues from.
    pub cursor: String,
    /// The events that will never arrive (empty for `cursor_invalid`).
    pub lost: Vec<LostRange>,
}

/// What a [`Subscription`] hands over.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamItem {
    /// A connection opened: the server's `hello`.
    Open(Hello),
    /// An event, exactly once per (topic, seq).
    Event(RealtimeEvent),
    /// The server could not resume from the cursor; the events in `lost` will never
    /// arrive. The subscription carries on.
    Reset(Reset),
    /// The connection failed or ended; the subscription reconnects from the cursor after
    /// `delay`.
    Reconnecting {
        /// What went wrong.
        error: Error,
        /// How long it waits before connecting again.
        delay: Duration,
    },
    /// Something went wrong that does not end the connection (an unreadable frame, a
    /// failed early token refresh).
    Warning(Error),
}

impl StreamItem {
    fn cursor(&self) -> Option<&str> {
        match self {
            StreamItem::Open(hello) => Some(&hello.cursor),
            StreamItem::Event(event) => Some(&event.cursor),
            StreamItem::Reset(reset) => Some(&reset.cursor),
            _ => None,
        }
    }
}

type Pending = Pin<Box<dyn Future<Output = (Box<State>, Option<Result<StreamItem>>)> + Send>>;

/// A realtime subscription: a [`Stream`] of [`StreamItem`]s that reconnects by itself.
/// It ends only after a permanent failure (an unknown topic, a refused token with no
/// provider, an incompatible server), which it yields as its last item, an `Err`.
/// Dropping it closes the connection.
pub struct Subscription {
    state: Option<Box<State>>,
    pending: Option<Pending>,
    cursor: Option<String>,
    topics: Vec<String>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.topics)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The cursor after the last item handed over: store it to resume from there. `None`
    /// until a position is known.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The subscription's topics, sorted.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }
}

impl Stream for Subscription {
    type Item = Result<StreamItem>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            let Some(state) = this.state.take() else {
                return Poll::Ready(None);
            };
            this.pending = Some(Box::pin(state.next_item()));
        }
        let pending = this.pending.as_mut().expect("set above");
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((state, item)) => {
                this.pending = None;
                match &item {
                    Some(Ok(item)) => {
                        if let Some(cursor) = item.cursor() {
                            this.cursor = Some(cursor.to_owned());
                        }
                        this.state = Some(state);
                    }
                    Some(Err(_)) => this.state = Some(state),
                    None => {}
                }
                Poll::Ready(item)
            }
        }
    }
}

/// What to do after a connection ended.
enum Outcome {
    /// Wait with backoff (at least `at_least`), then reconnect.
    Retry(Error, Option<Duration>),
    /// Reconnect at once (a planned token switch).
    Now,
    /// Stop for good.
    Stop(Error),
}

struct Conn {
    response: reqwest::Response,
    parser: SseParser,
    hello_seen: bool,
    opened_at: Instant,
    token_used: Option<String>,
    token_expired: bool,
}

struct State {
    client: Client,
    url: String,
    tracker: CursorTracker,
    backoff: Backoff,
    provider: Option<Arc<dyn TokenProvider>>,
    token: Option<String>,
    token_stale: bool,
    token_tried: bool,
    heartbeat: Duration,
    conn: Option<Conn>,
    wait: Option<Duration>,
    queue: VecDeque<StreamItem>,
    fatal: Option<Error>,
    finished: bool,
}

impl State {
    async fn next_item(mut self: Box<Self>) -> (Box<Self>, Option<Result<StreamItem>>) {
        let item = self.advance().await;
        (self, item)
    }

    async fn advance(&mut self) -> Option<Result<StreamItem>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if let Some(error) = self.fatal.take() {
                self.conn = None;
                self.wait = None;
                // Nothing follows a fatal error.
                self.provider = None;
                return Some(Err(error));
            }
            if self.finished {
                return None;
            }
            match self.conn.take() {
                None => {
                    if let Some(delay) = self.wait.take() {
                        tokio::time::sleep(delay).await;
                    }
                    match self.connect().await {
                        Ok(conn) => self.conn = Some(conn),
                        Err(outcome) => self.after(outcome),
                    }
                }
                Some(mut conn) => match self.read(&mut conn).await {
                    None => self.conn = Some(conn),
                    Some(outcome) => {
                        drop(conn);
                        self.after(outcome);
                    }
                },
            }
        }
    }

    /// Turns a connection's end into the next step.
    fn after(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Now => {}
            Outcome::Retry(error, at_least) => {
                let mut delay = self.backoff.next_delay();
                if let Some(asked) = at_least {
                    delay = delay.max(asked.min(Duration::from_secs(60)));
                }
                self.wait = Some(delay);
                self.queue
                    .push_back(StreamItem::Reconnecting { error, delay });
            }
            Outcome::Stop(error) => {
                self.fatal = Some(error);
                self.finished = true;
            }
        }
    }

    async fn refresh_token(&mut self) -> Result<()> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        let token = provider.token().await.map_err(Error::TokenProvider)?;
        if token.is_empty() {
            return Err(Error::TokenProvider(
                "the token provider returned an empty token".into(),
            ));
        }
        self.token = Some(token);
        self.token_stale = false;
        self.token_tried = false;
        Ok(())
    }

    /// Opens one connection: the token, the request, the answer's status.
    async fn connect(&mut self) -> std::result::Result<Conn, Outcome> {
        if self.provider.is_some() && (self.token.is_none() || self.token_stale) {
            if let Err(error) = self.refresh_token().await {
                return Err(Outcome::Retry(error, None));
            }
        }
        let inner = &self.client.inner;
        let mut request = inner
            .http
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        let token = self.token.clone();
        if let Some(token) = &token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(cursor) = self.tracker.cursor() {
            request = request.header("last-event-id", cursor);
        }
        let used_fresh_token = !self.token_tried;
        self.token_tried = true;

        let response = match tokio::time::timeout(inner.timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(Outcome::Retry(Error::Network(error), None)),
            Err(_) => {
                let error = Error::InvalidResponse {
                    status: 0,
                    message: format!("no answer to the stream request within {:?}", inner.timeout),
                    request_id: None,
                };
                return Err(Outcome::Retry(error, None));
            }
        };
        let status = response.status();
        if status.is_success() {
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !content_type.starts_with("text/event-stream") {
                let error = Error::InvalidResponse {
                    status: status.as_u16(),
                    message: format!("expected text/event-stream, got {content_type:?}"),
                    request_id: crate::http::request_id(response.headers()),
                };
                return Err(Outcome::Retry(error, None));
            }
            return Ok(Conn {
                response,
                parser: SseParser::default(),
                hello_seen: false,
                opened_at: Instant::now(),
                token_used: token,
                token_expired: false,
            });
        }
        let headers = response.headers().clone();
        let body = tokio::time::timeout(inner.timeout, response.bytes())
            .await
            .ok()
            .and_then(|b| b.ok());
        let error = api_error(status, &headers, body.as_deref().unwrap_or_default());
        if status.as_u16() == 401 && self.provider.is_some() {
            // A token that worked before has expired: fetch a new one and go again at
            // once. A token fresh from the provider that is refused: back off, then ask
            // again.
            if token.is_some() && self.token == token {
                self.token_stale = true;
            }
            return Err(if used_fresh_token {
                Outcome::Retry(error, None)
            } else {
                Outcome::Now
            });
        }
        if matches!(status.as_u16(), 400 | 401 | 403 | 404 | 405 | 410) {
            return Err(Outcome::Stop(error));
        }
        Err(Outcome::Retry(error, retry_after(&headers)))
    }

    /// Reads one chunk and handles its frames; `Some` when the connection is over.
    async fn read(&mut self, conn: &mut Conn) -> Option<Outcome> {
        let silence = self.heartbeat * 2;
        let chunk = match tokio::time::timeout(silence, conn.response.chunk()).await {
            Err(_) => return Some(Outcome::Retry(Error::HeartbeatTimeout(silence), None)),
            Ok(Err(error)) => return Some(Outcome::Retry(Error::Network(error), None)),
            Ok(Ok(None)) => {
                if conn.token_expired {
                    // A token refreshed after `token_expiring` is used as is; otherwise
                    // ask for one.
                    if self.token == conn.token_used {
                        self.token_stale = true;
                    }
                    return Some(Outcome::Now);
                }
                return Some(Outcome::Retry(Error::StreamEnded, None));
            }
            Ok(Ok(Some(chunk))) => chunk,
        };
        let mut items = Vec::new();
        conn.parser.push(&chunk, &mut items);
        for item in items {
            let message = match item {
                SseItem::Retry(ms) => {
                    self.backoff.set_initial(Duration::from_millis(ms));
                    continue;
                }
                SseItem::Comment(_) => continue,
                SseItem::Message(message) => message,
            };
            if !conn.hello_seen {
                match self.on_hello(&message) {
                    Ok(hello) => {
                        conn.hello_seen = true;
                        conn.opened_at = Instant::now();
                        self.queue.push_back(StreamItem::Open(hello));
                        continue;
                    }
                    Err(error) => return Some(Outcome::Stop(error)),
                }
            }
            if let Some(outcome) = self.on_frame(message, conn).await {
                return Some(outcome);
            }
        }
        None
    }

    /// Checks the first frame: a `hello` of a protocol version this SDK knows.
    fn on_hello(&mut self, message: &SseMessage) -> Result<Hello> {
        let hello = (message.event == "hello")
            .then(|| parse_hello(&message.data))
            .flatten();
        let major = hello.as_ref().and_then(|h| protocol_major(&h.protocol));
        match hello {
            Some(hello) if major == Some(PROTOCOL_VERSION) => {
                self.heartbeat = Duration::from_secs(hello.heartbeat_secs);
                self.tracker.adopt_start(&hello.cursor);
                self.backoff.reset();
                let cursor = self
                    .tracker
                    .cursor()
                    .unwrap_or_else(|| hello.cursor.clone());
                Ok(Hello { cursor, ..hello })
            }
            other => {
                let found = match other {
                    Some(hello) => format!("protocol {}", hello.protocol),
                    None => format!("a '{}' frame", message.event),
                };
                Err(Error::ProtocolIncompatible(format!(
                    "the server speaks {found} where this SDK expects protocol {PROTOCOL_VERSION}: update picloud-client"
                )))
            }
        }
    }

    async fn on_frame(&mut self, message: SseMessage, conn: &mut Conn) -> Option<Outcome> {
        match message.event.as_str() {
            "reset" => {
                if let Some(reset) = parse_reset(&message.data, &message.id) {
                    self.tracker.apply_reset(&reset);
                    let cursor = self
                        .tracker
                        .cursor()
                        .unwrap_or_else(|| reset.cursor.clone());
                    self.queue
                        .push_back(StreamItem::Reset(Reset { cursor, ..reset }));
                }
                None
            }
            "token_expiring" => {
                if self.provider.is_none() || conn.opened_at.elapsed() < MIN_AGE_FOR_EARLY_SWITCH {
                    return None;
                }
                // Fetch a fresh token before the cut, then switch to a new connection
                // from the cursor. On failure keep this stream until `token_expired`.
                match self.refresh_token().await {
                    Ok(()) => Some(Outcome::Now),
                    Err(error) => {
                        self.queue.push_back(StreamItem::Warning(error));
                        None
                    }
                }
            }
            "token_expired" => {
                // The stream is over; reconnect at once with a fresh token and the cursor.
                conn.token_expired = true;
                if self.token == conn.token_used {
                    self.token_stale = true;
                }
                Some(Outcome::Now)
            }
            "hello" => None,
            _ => {
                let Some(event) = parse_event(&message.data) else {
                    self.queue
                        .push_back(StreamItem::Warning(Error::InvalidResponse {
                            status: 200,
                            message: format!("unreadable '{}' frame", message.event),
                            request_id: None,
                        }));
                    return None;
                };
                if self.tracker.accept(&event.topic, event.seq) {
                    let cursor = self.tracker.cursor().unwrap_or(message.id);
                    self.queue
                        .push_back(StreamItem::Event(RealtimeEvent { cursor, ..event }));
                }
                None
            }
        }
    }
}

fn object(text: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The major version of a `protocol` field (`1`, `1.2` or `"1.2"`), if readable.
fn protocol_major(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.trunc() as u64)
        }),
        Value::String(s) => {
            let valid = !s.is_empty()
                && s.split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
            if valid {
                s.split('.').next()?.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

fn parse_hello(data: &str) -> Option<Hello> {
    let o = object(data)?;
    let heartbeat_secs = o
        .get("heartbeat_secs")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .unwrap_or(30);
    let topics = o
        .get("topics")
        .and_then(Value::as_array)
        .map(|topics| {
            topics
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(Hello {
        protocol: o.get("protocol").cloned().unwrap_or(Value::Null),
        heartbeat_secs,
        topics,
        cursor: o
            .get("cursor")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

fn parse_reset(data: &str, frame_id: &str) -> Option<Reset> {
    let o = object(data)?;
    let lost = o
        .get("lost")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(LostRange {
                        topic: item.get("topic")?.as_str()?.to_owned(),
                        from_seq: item.get("from_seq")?.as_i64()?,
                        to_seq: item.get("to_seq")?.as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Reset {
        reason: o
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        cursor: o
            .get("cursor")
            .and_then(Value::as_str)
            .unwrap_or(frame_id)
            .to_owned(),
        lost,
    })
}

fn parse_event(data: &str) -> Option<RealtimeEvent> {
    let mut o = object(data)?;
    Some(RealtimeEvent {
        topic: o.get("topic")?.as_str()?.to_owned(),
        seq: o.get("seq")?.as_i64()?,
        event_type: o
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned(),
        data: o.remove("data").unwrap_or(Value::Null),
        published_at: o.get("published_at").and_then(Value::as_i64).unwrap_or(0),
        cursor: String::new(),
    })
}

/// Reads a cursor (`topic:seq` pairs joined by `,`; a topic may contain `:`, the seq
/// follows the last one) into topic → seq. Malformed parts are skipped.
pub fn parse_cursor(cursor: &str) -> BTreeMap<String, i64> {
    let mut positions = BTreeMap::new();
    for part in cursor.split(',') {
        let Some(colon) = part.rfind(':') else {
            continue;
        };
        if colon == 0 {
            continue;
        }
        let seq = &part[colon + 1..];
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = seq.parse() {
            positions.insert(part[..colon].to_owned(), seq);
        }
    }
    positions
}

/// Writes topic → seq as a cursor, topics sorted.
pub fn format_cursor(positions: &BTreeMap<String, i64>) -> String {
    positions
        .iter()
        .map(|(topic, seq)| format!("{topic}:{seq}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a subscriber has seen, per topic: the cursor to resume from, and the guard that
/// never lets the same (topic, seq) through twice, whatever the connections did.
#[derive(Debug, Clone)]
struct CursorTracker {
    topics: BTreeSet<String>,
    positions: BTreeMap<String, i64>,
}

impl CursorTracker {
    fn new(topics: &[String], cursor: Option<&str>) -> Self {
        let topics: BTreeSet<String> = topics.iter().cloned().collect();
        let positions = cursor
            .map(parse_cursor)
            .unwrap_or_default()
            .into_iter()
            .filter(|(topic, _)| topics.contains(topic))
            .collect();
        CursorTracker { topics, positions }
    }

    fn cursor(&self) -> Option<String> {
        (!self.positions.is_empty()).then(|| format_cursor(&self.positions))
    }

    /// Records an event; false when it is one already seen (a duplicate to drop).
    fn accept(&mut self, topic: &str, seq: i64) -> bool {
        if !self.topics.contains(topic) {
            return false;
        }
        if let Some(last) = self.positions.get(topic) {
            if seq <= *last {
                return false;
            }
        }
        self.positions.insert(topic.to_owned(), seq);
        true
    }

    /// Takes a stream's starting cursor for topics that have no position yet.
    fn adopt_start(&mut self, cursor: &str) {
        for (topic, seq) in parse_cursor(cursor) {
            if self.topics.contains(&topic) && !self.positions.contains_key(&topic) {
                self.positions.insert(topic, seq);
            }
        }
    }

    /// Applies a `reset`: positions move to where the server continues, even backwards
    /// (a cursor past the head of a recreated topic). A lost range ends at `to_seq`, so
    /// the next event, `to_seq + 1`, counts.
    fn apply_reset(&mut self, reset: &Reset) {
        for (topic, seq) in parse_cursor(&reset.cursor) {
            if self.topics.contains(&topic) {
                self.positions.insert(topic, seq);
            }
        }
        for lost in &reset.lost {
            if self.topics.contains(&lost.topic) {
                self.positions.insert(lost.topic.clone(), lost.to_seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cursors_parse_and_format_with_colons_in_topic_names() {
        let parsed = parse_cursor("chat:lobby:7,orders:12,bad,:3,x:1a,y:");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["chat:lobby"], 7);
        assert_eq!(parsed["orders"], 12);
        assert_eq!(format_cursor(&parsed), "chat:lobby:7,orders:12");
    }

    #[test]
    fn the_tracker_drops_duplicates_and_other_topics() {
        let mut tracker = CursorTracker::new(&topics(&["a", "b"]), Some("a:3,zz:9"));
        assert_eq!(tracker.cursor().as_deref(), Some("a:3"));
        assert!(!tracker.accept("a", 3));
        assert!(tracker.accept("a", 4));
        assert!(!tracker.accept("zz", 10));
        tracker.adopt_start("a:1,b:5");
        assert_eq!(tracker.cursor().as_deref(), Some("a:4,b:5"));
        tracker.apply_reset(&Reset {
            reason: "cursor_expired".into(),
            cursor: "b:2".into(),
            lost: vec![LostRange {
                topic: "a".into(),
                from_seq: 5,
                to_seq: 9,
            }],
        });
        assert_eq!(tracker.cursor().as_deref(), Some("a:9,b:2"));
        assert!(tracker.accept("a", 10));
        assert!(tracker.accept("b", 3));
    }

    #[test]
    fn reads_protocol_versions_like_the_typescript_client() {
        assert_eq!(protocol_major(&serde_json::json!(1)), Some(1));
        assert_eq!(protocol_major(&serde_json::json!(1.7)), Some(1));
        assert_eq!(protocol_major(&serde_json::json!("2.1")), Some(2));
        assert_eq!(protocol_major(&serde_json::json!("v1")), None);
        assert_eq!(protocol_major(&Value::Null), None);
    }

    #[test]
    fn parses_frames_defensively() {
        let reset = parse_reset(
            r#"{"reason":"cursor_expired","lost":[{"topic":"o","from_seq":1,"to_seq":4},{"topic":2}]}"#,
            "o:4",
        )
        .unwrap();
        assert_eq!(reset.cursor, "o:4");
        assert_eq!(reset.lost.len(), 1);
        let event = parse_event(r#"{"topic":"o","seq":5,"data":{"x":1}}"#).unwrap();
        assert_eq!(
            (event.event_type.as_str(), event.published_at),
            ("message", 0)
        );
        assert!(parse_event(r#"{"topic":"o","seq":"5"}"#).is_none());
        assert_eq!(parse_hello("{}").unwrap().heartbeat_secs, 30);
    }
}
