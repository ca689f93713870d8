//! Reading request heads off a fresh connection and recognising the ones the direct
//! path serves: a plain subscription, or a CORS preflight for one.

use std::time::Duration;

use axum::http::header::{
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, ORIGIN, TRANSFER_ENCODING,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use picloud_shared::extract::session_cookie;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest request head read while deciding; longer heads take the routed path.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most headers a direct subscription may carry.
const MAX_HEADERS: usize = 64;

/// A subscription request recognised from its head.
#[derive(Debug)]
pub struct SubscribeHead {
    /// The `{app}` path segment.
    pub app: String,
    /// The query string (without `?`).
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
}

/// Outcome of looking at the bytes read so far.
#[derive(Debug)]
pub enum Recognised {
    /// The head is not complete yet.
    Partial,
    /// A subscription this module serves.
    Subscribe(SubscribeHead),
    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, no
    /// body) for the subscription route: the first `len` bytes.
    Preflight {
        /// The request headers.
        headers: HeaderMap,
        /// Length of the request head.
        len: usize,
    },
    /// A subscription or preflight whose body framing is not plainly "no body": any
    /// `Transfer-Encoding`, more than one `Content-Length`, or one that is not zero.
    /// Answered with a 400 and the connection closed (`reject_framing`): its body bytes
    /// must never be read as the next request.
    BadFraming,
    /// Anything else: hand the connection to the HTTP stack.
    Other,
}

/// Decides from the next bytes of a connection whether they are a direct subscription
/// or a preflight for one.
pub fn recognise(bytes: &[u8]) -> Recognised {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => return Recognised::Partial,
        _ => return Recognised::Other,
    };
    let preflight = match (request.method, request.version) {
        (Some("GET"), Some(1)) => false,
        (Some("OPTIONS"), Some(1)) => true,
        _ => return Recognised::Other,
    };
    let Some(target) = request.path else {
        return Recognised::Other;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(app) = path
        .strip_prefix("/v1/apps/")
        .and_then(|rest| rest.strip_suffix("/realtime"))
        .filter(|app| !app.is_empty() && !app.contains(['/', '%']))
    else {
        return Recognised::Other;
    };
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Recognised::Other;
        };
        map.append(name, value);
    }
    // A dashboard session makes the subscriber a superuser: the auth middleware decides.
    // The embedding site's own cookies do not matter here.
    if session_cookie(&map).is_some() {
        return Recognised::Other;
    }
    if !bodyless(&map) {
        return Recognised::BadFraming;
    }
    if preflight {
        return if map.contains_key(ORIGIN) && map.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            Recognised::Preflight { headers: map, len }
        } else {
            Recognised::Other
        };
    }
    Recognised::Subscribe(SubscribeHead {
        app: app.to_owned(),
        query: query.to_owned(),
        headers: map,
    })
}

/// Whether a request's headers say plainly that it has no body: no `Transfer-Encoding`
/// and at most one `Content-Length` field, whose value is digits only and zero. Anything
/// else (`0, 5`, `+0`, a second field) could be read differently by another parser, so
/// the direct path refuses it instead of guessing where the request ends.
fn bodyless(headers: &HeaderMap) -> bool {
    if headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => true,
        (Some(only), None) => {
            let digits = only.as_bytes();
            !digits.is_empty() && digits.iter().all(|&b| b == b'0')
        }
        (Some(_), Some(_)) => false,
    }
}

/// How long a request head may take to arrive, and how large it may be.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Time allowed for one whole head, from when reading it starts.
    pub timeout: Duration,
    /// Largest head, in bytes.
    pub max_bytes: usize,
}

/// Why no request head could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The head grew past [`HeadLimits::max_bytes`]: answer 431.
    TooLarge,
    /// The head did not arrive within [`HeadLimits::timeout`]: close.
    Timeout,
    /// The client closed (or reset) the connection first.
    Closed,
}

/// Reads from `socket` into `read` (which may already hold bytes) until they show what
/// the next request is: [`Recognised::Partial`] is never returned. A head longer than
/// the direct path looks at is read on to its end (up to the limit) before it is called
/// [`Recognised::Other`], so the HTTP stack gets it whole or the 431 is ours.
pub async fn read_head(
    socket: &mut TcpStream,
    read: &mut Vec<u8>,
    limits: HeadLimits,
) -> Result<Recognised, HeadError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    loop {
        match recognise(read) {
            Recognised::Partial => {}
            Recognised::Other if read.len() >= MAX_HEAD && !head_ends(read) => {}
            known => return Ok(known),
        }
        if read.len() >= limits.max_bytes {
            return Err(HeadError::TooLarge);
        }
        if read.len() == read.capacity() {
            read.reserve(read.len().clamp(1024, MAX_HEAD));
        }
        match tokio::time::timeout_at(deadline, socket.read_buf(read)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(HeadError::Closed),
            Ok(Ok(_)) => {}
            Err(_) => return Err(HeadError::Timeout),
        }
    }
}

/// Whether `bytes` hold a whole request head (they reach its empty line).
fn head_ends(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(head: &str) -> &'static str {
        match recognise(head.as_bytes()) {
            Recognised::Partial => "partial",
            Recognised::Subscribe(_) => "subscribe",
            Recognised::Preflight { .. } => "preflight",
            Recognised::BadFraming => "bad framing",
            Recognised::Other => "other",
        }
    }

    #[test]
    fn only_plain_subscriptions_are_taken() {
        let ok =
            "GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\nhost: x\r\nlast-event-id: a:1\r\n\r\n";
        assert_eq!(kind(ok), "subscribe");
        let Recognised::Subscribe(head) = recognise(ok.as_bytes()) else {
            unreachable!()
        };
        assert_eq!(
            (head.app.as_str(), head.query.as_str()),
            ("shop", "topic=a")
        );
        assert_eq!(head.headers["last-event-id"], "a:1");
        assert_eq!(
            kind("GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\nhost: x\r\n"),
            "partial"
        );
        for other in [
            "POST /v1/apps/shop/realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/realtime HTTP/1.0\r\n\r\n",
            "GET /v1/apps/shop/realtime/subscribers HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/topics HTTP/1.1\r\n\r\n",
            "GET /v1/apps//realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/%73hop/realtime HTTP/1.1\r\n\r\n",
            "GET /v1/apps/shop/realtime HTTP/1.1\r\ncookie: picloud_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n",
            "OPTIONS /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\n\r\n",
            "OPTIONS /v1/apps/shop/topics HTTP/1.1\r\norigin: http://x\r\naccess-control-request-method: GET\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert_eq!(kind(other), "other", "{other:?}");
        }
        let huge = format!(
            "GET /v1/apps/shop/realtime?{} HTTP/1.1\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(kind(&huge), "other");
    }

    #[test]
    fn cross_origin_subscriptions_and_their_preflights_are_taken() {
        // The embedding site's cookies and Origin do not send a subscriber elsewhere.
        assert_eq!(
            kind("GET /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\ncookie: theme=dark\r\n\r\n"),
            "subscribe"
        );
        let preflight = "OPTIONS /v1/apps/shop/realtime?topic=a HTTP/1.1\r\norigin: http://x\r\n\
                         access-control-request-method: GET\r\n\r\n";
        let next = format!("{preflight}GET /v1/apps/shop/realtime HTTP/1.1\r\n");
        let Recognised::Preflight { headers, len } = recognise(next.as_bytes()) else {
            panic!("not a preflight")
        };
        assert_eq!(
            (len, headers["origin"].to_str().unwrap()),
            (preflight.len(), "http://x")
        );
        assert_eq!(kind(&next[len..]), "partial");
    }

    #[test]
    fn requests_on_the_direct_path_with_a_body_are_refused() {
        let preflight = "OPTIONS /v1/apps/shop/realtime HTTP/1.1\r\norigin: http://x\r\n\
                         access-control-request-method: GET\r\n";
        let get = "GET /v1/apps/shop/realtime?topic=a HTTP/1.1\r\n";
        for start in [preflight, get] {
            for framing in [
                "content-length: 3\r\n",
                "content-length: 0\r\ncontent-length: 3\r\n",
                "content-length: 0\r\ncontent-length: 0\r\n",
                "content-length: 0, 3\r\n",
                "content-length: +0\r\n",
                "content-length: -0\r\n",
                "content-length: \r\n",
                "transfer-encoding: chunked\r\n",
                "content-length: 0\r\ntransfer-encoding: chunked\r\n",
                "transfer-encoding: identity\r\n",
            ] {
                let head = format!("{start}{framing}\r\n");
                assert_eq!(kind(&head), "bad framing", "{head:?}");
            }
            for framing in ["", "content-length: 0\r\n", "content-length: 00\r\n"] {
                let head = format!("{start}{framing}\r\n");
                assert_ne!(kind(&head), "bad framing", "{head:?}");
                assert_ne!(kind(&head), "other", "{head:?}");
            }
        }
    }
}
