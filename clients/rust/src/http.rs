//! The HTTP layer: one request per call, JSON in and out, errors as [`Error`], retries
//! with jittered exponential backoff where a retry cannot do a thing twice.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Inner;
use crate::error::{ApiError, Error, ErrorBody, ErrorCode, Result};

/// One route of the API: a method and a path template such as
/// `/v1/apps/{app}/topics/{topic}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template, as the API document writes it.
    pub path: &'static str,
}

impl Route {
    pub(crate) const fn get(path: &'static str) -> Route {
        Route {
            method: "GET",
            path,
        }
    }
    pub(crate) const fn post(path: &'static str) -> Route {
        Route {
            method: "POST",
            path,
        }
    }
    pub(crate) const fn put(path: &'static str) -> Route {
        Route {
            method: "PUT",
            path,
        }
    }
    pub(crate) const fn patch(path: &'static str) -> Route {
        Route {
            method: "PATCH",
            path,
        }
    }
    pub(crate) const fn delete(path: &'static str) -> Route {
        Route {
            method: "DELETE",
            path,
        }
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).expect("route methods are valid")
    }

    /// The path with `{name}` placeholders filled in order from `params`, each
    /// percent-encoded as one path segment.
    pub(crate) fn fill(&self, params: &[&str]) -> String {
        let mut out = String::with_capacity(self.path.len() + 16);
        let mut rest = self.path;
        let mut params = params.iter();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').expect("balanced route template") + open;
            let value = params.next().expect("a value for every route parameter");
            out.push_str(&encode_segment(value));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Percent-encodes `value` as one path segment: everything but RFC 3986's unreserved
/// characters, so a topic `chat/lobby:1` stays one segment.
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// When a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent writes (GET, PUT, PATCH, DELETE), and publishes that carry an
    /// idempotency key: on connection errors and timeouts, 429 and 5xx.
    Idempotent,
    /// Other writes: only when the server cannot have acted (the connection was never
    /// made, or it answered 429 or 503).
    Unsafe,
    /// Never: the caller wants this very answer (a readiness probe).
    Never,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// The client's API key, if it has one.
    ApiKey,
    /// A dashboard session: its cookie, and its CSRF token for writes.
    Session { cookie: String, csrf: String },
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Bytes {
        content_type: Option<String>,
        bytes: Bytes,
    },
}

impl Body {
    pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<Body> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::config(format!("the request body cannot be serialized: {e}")))?;
        Ok(Body::Bytes {
            content_type: Some("application/json".into()),
            bytes: bytes.into(),
        })
    }
}

/// One call of a route.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub route: &'static Route,
    pub params: Vec<&'a str>,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Body,
    pub auth: Auth,
    pub retry: Retry,
}

impl<'a> Call<'a> {
    pub(crate) fn new(route: &'static Route, params: &[&'a str]) -> Self {
        let retry = if route.method == "POST" {
            Retry::Unsafe
        } else {
            Retry::Idempotent
        };
        Call {
            route,
            params: params.to_vec(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::None,
            auth: Auth::ApiKey,
            retry,
        }
    }

    pub(crate) fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self> {
        self.body = Body::json(body)?;
        Ok(self)
    }

    pub(crate) fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A successful answer, before it is decoded.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            status: self.status.as_u16(),
            message: format!("unexpected JSON: {e}"),
            request_id: request_id(&self.headers),
        })
    }
}

/// Retry delays: exponential with jitter, capped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: f64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.current.min(self.max);
        self.current = (self.current * 2).min(self.max);
        delay.mul_f64(1.0 - self.jitter * rand::random::<f64>())
    }

    /// Starts over from the first delay.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Uses `delay` as the first delay from now on (an SSE `retry:` field).
    pub(crate) fn set_initial(&mut self, delay: Duration) {
        self.initial = delay.min(self.max);
        self.current = self.initial;
    }
}

/// The `x-request-id` of an answer.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Retry-After` of an answer: seconds, or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Builds the error for a non-2xx answer from its `{"error":{"code","message"}}` body.
pub(crate) fn api_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let request_id = request_id(headers);
    let retry_after = retry_after(headers);
    let (code, message, line, column) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => (error.code, error.message, error.line, error.column),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut message = format!("HTTP {}", status.as_u16());
            if !text.trim().is_empty() {
                message.push_str(": ");
                message.extend(text.chars().take(200));
            }
            (
                ErrorCode::Unknown(format!("http_{}", status.as_u16())),
                message,
                None,
                None,
            )
        }
    };
    Error::Api(Box::new(ApiError {
        status: status.as_u16(),
        code,
        message,
        request_id,
        line,
        column,
        retry_after,
    }))
}

impl Inner {
    /// Sends `call`, retrying as its [`Retry`] allows; returns the 2xx answer.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Answer> {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max_delay, 0.5);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.send_once(&call).await;
            let retries_left = attempt <= self.max_retries;
            let wait = match &outcome {
                Ok(_) => return outcome,
                Err(_) if !retries_left => return outcome,
                Err(Error::Network(e)) => {
                    let safe = match call.retry {
                        Retry::Idempotent => true,
                        Retry::Unsafe => e.is_connect(),
                        Retry::Never => false,
                    };
                    if !safe {
                        return outcome;
                    }
                    backoff.next_delay()
                }
                Err(Error::Api(api)) => {
                    let status = api.status;
                    let retryable = match call.retry {
                        Retry::Idempotent => status == 429 || status >= 500,
                        Retry::Unsafe => status == 429 || status == 503,
                        Retry::Never => false,
                    };
                    if !retryable {
                        return outcome;
                    }
                    let delay = backoff.next_delay();
                    // The server knows best how long it needs; past our cap, give up
                    // waiting for it and try at the cap.
                    api.retry_after
                        .map_or(delay, |asked| asked.min(self.max_retry_after))
                }
                Err(_) => return outcome,
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Answer> {
        let url = self.url(&call.route.fill(&call.params));
        let mut request = self
            .http
            .request(call.route.method(), url)
            .timeout(self.timeout);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        match &call.auth {
            Auth::ApiKey => {
                if let Some(key) = &self.api_key {
                    request = request.header(AUTHORIZATION, key.header_value());
                }
            }
            Auth::Session { cookie, csrf } => {
                request = request.header(reqwest::header::COOKIE, cookie.as_str());
                if call.route.method != "GET" {
                    request = request.header("x-csrf-token", csrf.as_str());
                }
            }
        }
        for (name, value) in &call.headers {
            request = request.header(name, value.as_str());
        }
        if let Body::Bytes {
            content_type,
            bytes,
        } = &call.body
        {
            if let Some(content_type) = content_type {
                request = request.header(CONTENT_TYPE, content_type.as_str());
            }
            request = request.body(bytes.clone());
        }
        let response = request.send().await.map_err(Error::Network)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(Error::Network)?;
        if !status.is_success() {
            return Err(api_error(status, &headers, &body));
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// The API key, kept out of `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(HeaderValue);

impl Secret {
    pub(crate) fn new(key: &str) -> Result<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::config("the API key must be visible ASCII"))?;
        value.set_sensitive(true);
        Ok(Secret(value))
    }

    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_encodes_path_segments() {
        let route = Route::get("/v1/apps/{app}/topics/{topic}/events");
        assert_eq!(
            route.fill(&["shop", "chat/lobby:1 ü"]),
            "/v1/apps/shop/topics/chat%2Flobby%3A1%20%C3%BC/events"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_below() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400), 0.5);
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
        for (delay, base) in delays.iter().zip([100u64, 200, 400, 400]) {
            assert!(*delay <= Duration::from_millis(base), "{delay:?} > {base}");
            assert!(
                *delay >= Duration::from_millis(base / 2),
                "{delay:?} < {base}/2"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn reads_retry_after_as_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }
}
