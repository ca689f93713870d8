//! A test subscriber: opens the SSE endpoint over HTTP and parses the stream with
//! `eventsource-stream`, an independent implementation of the WHATWG parser.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::TestApp;

/// How long a test waits for the next frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);

type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// An open SSE stream.
pub struct Subscriber {
    events: Events,
    /// The `id` of the last frame that carried one: the cursor to resume from.
    pub cursor: String,
}

/// One parsed frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines joined, parsed as JSON.
    pub data: Value,
    /// The last `id:` seen (sticky, as in the spec).
    pub id: String,
}

impl Frame {
    /// `(topic, seq)` of an event frame.
    pub fn position(&self) -> (String, i64) {
        (
            self.data["topic"].as_str().expect("topic").to_owned(),
            self.data["seq"].as_i64().expect("seq"),
        )
    }
}

/// Options of a subscription request.
#[derive(Default, Clone)]
pub struct Subscribe<'a> {
    /// Bearer subscriber token.
    pub token: Option<&'a str>,
    /// `?token=` instead of the header.
    pub token_in_query: bool,
    /// `Last-Event-ID`.
    pub last_event_id: Option<&'a str>,
    /// A `Cookie` header (a signed-in dashboard admin's session).
    pub cookie: Option<&'a str>,
    /// Send [`UNKNOWN_SESSION`] along: the front door leaves dashboard sessions to the
    /// HTTP stack, so the routed path serves the request instead of the direct one (both
    /// must behave the same).
    pub routed: bool,
    /// An `Origin` header, as browsers send cross-origin.
    pub origin: Option<&'a str>,
}

impl TestApp {
    /// Opens `GET /v1/apps/{app}/realtime?topic=…`; the error status and JSON body when
    /// it is refused.
    pub async fn subscribe(
        &self,
        app: &str,
        topics: &[&str],
        options: Subscribe<'_>,
    ) -> Result<Subscriber, (u16, Value)> {
        let mut url = reqwest::Url::parse(&self.url(&format!("/v1/apps/{app}/realtime"))).unwrap();
        for topic in topics {
            url.query_pairs_mut().append_pair("topic", topic);
        }
        // A client of its own, so the subscription gets a connection of its own.
        let client = reqwest::Client::new();
        let mut request = client.get(url.clone());
        if let Some(token) = options.token {
            if options.token_in_query {
                url.query_pairs_mut().append_pair("token", token);
                request = client.get(url);
            } else {
                request = request.bearer_auth(token);
            }
        }
        if let Some(id) = options.last_event_id {
            request = request.header("last-event-id", id);
        }
        if let Some(cookie) = options.cookie {
            request = request.header("cookie", cookie);
        }
        if options.routed {
            request = request.header("cookie", UNKNOWN_SESSION);
        }
        if let Some(origin) = options.origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("request sent");
        // A dashboard session is the HTTP stack's to check.
        let session = options.routed
            || options
                .cookie
                .is_some_and(|c| c.contains("picloud_session="));
        assert_eq!(
            served_directly(&response),
            !session,
            "served by the expected path"
        );
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.json().await.unwrap_or(Value::Null);
            return Err((status, body));
        }
        Ok(Subscriber::from_response(response))
    }
}

/// A well-formed dashboard session cookie that signs no one in: a request carrying it is
/// anonymous, but only the HTTP stack can tell, so the front door routes it there.
pub const UNKNOWN_SESSION: &str = "picloud_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Whether the front door served `response` on the socket rather than the HTTP stack:
/// the direct path closes the connection with the stream, the routed one keeps it.
pub fn served_directly(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("connection")
        .is_some_and(|v| v == "close")
}

impl Subscriber {
    /// The stream of a `200` subscription response, after checking its headers.
    pub fn from_response(response: reqwest::Response) -> Subscriber {
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|e| e.map_err(|e| e.to_string()));
        Subscriber {
            events: Box::pin(events),
            cursor: String::new(),
        }
    }

    /// The next frame; `None` when the stream ended. Fails the test after
    /// [`FRAME_TIMEOUT`].
    pub async fn next(&mut self) -> Option<Frame> {
        let item = tokio::time::timeout(FRAME_TIMEOUT, self.events.next())
            .await
            .expect("a frame within the timeout")?;
        let event = item.expect("well-formed SSE");
        if !event.id.is_empty() {
            self.cursor = event.id.clone();
        }
        Some(Frame {
            event: event.event,
            data: serde_json::from_str(&event.data).expect("data is JSON"),
            id: event.id,
        })
    }

    /// The next frame, which must be a `kind` frame.
    pub async fn expect(&mut self, kind: &str) -> Frame {
        let frame = self.next().await.expect("stream open");
        assert_eq!(frame.event, kind, "{frame:?}");
        frame
    }

    /// Reads event frames (skipping nothing) until `count` have arrived; control frames
    /// other than events fail the test.
    pub async fn events(&mut self, count: usize) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(count);
        while frames.len() < count {
            let frame = self.next().await.expect("stream open");
            assert!(
                !["hello", "reset", "token_expiring", "token_expired"]
                    .contains(&frame.event.as_str()),
                "unexpected {frame:?}"
            );
            frames.push(frame);
        }
        frames
    }
}
