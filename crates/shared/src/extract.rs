//! Request extractors whose rejections are PiCloud JSON errors, so malformed input gets
//! the same `{"error": …}` body as every other failure.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorCode};

/// A JSON request body, which must be a JSON object. Rejections: no JSON content type
/// is 415, a body over the limit is 413, malformed JSON is `invalid_json`, any other
/// JSON value than an object is `invalid_request` ("body must be a JSON object"), and an
/// object of the wrong shape is `invalid_request` naming the field and what it must be.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // axum checks the content type, the size and the syntax; the raw text is then
        // read into `T` here, so the shape errors can be worded for people.
        let axum::Json(raw) = axum::Json::<Box<RawValue>>::from_request(request, state)
            .await
            .map_err(json_rejection)?;
        from_object(raw.get()).map(ApiJson)
    }
}

/// Reads `text`, well-formed JSON, into `T` if it is an object of the right shape.
fn from_object<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::invalid("body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_json appends where the error is; the field's name says it better.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        ApiError::invalid(shape_message(&path, message))
    })
}

/// Rewords serde's message about the value at `path` (`.` for the body itself) as one
/// naming the field and what it must be.
fn shape_message(path: &str, message: &str) -> String {
    let field = |name: &str| match path {
        "." => name.to_owned(),
        _ if path.ends_with(name) => path.to_owned(),
        _ => format!("{path}.{name}"),
    };
    let here = if path == "." { "body" } else { path };
    if let Some(name) = quoted_after(message, "missing field ") {
        return format!("{} is required", field(name));
    }
    if let Some(name) = quoted_after(message, "unknown field ") {
        let allowed = allowed_names(message);
        let unknown = field(name);
        return if allowed.is_empty() {
            format!("unknown field {unknown}")
        } else {
            format!("unknown field {unknown}; expected one of: {allowed}")
        };
    }
    if let Some(value) = quoted_after(message, "unknown variant ") {
        return format!(
            "{here} must be one of: {}; got \"{value}\"",
            allowed_names(message)
        );
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "{here} must be {}, got {}",
                    plain_expected(expected),
                    plain_unexpected(got)
                );
            }
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        // A struct given as an array of the wrong length.
        return match rest.split_once(", expected ") {
            Some((_, expected)) if expected.starts_with("struct ") => {
                format!("{here} must be a JSON object, got an array")
            }
            _ => format!("{here} has the wrong number of items"),
        };
    }
    // A message of PiCloud's own validation (a bad app id, say): already worded.
    if path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// The name in backquotes right after `prefix` at the start of `message`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// The backquoted names after "expected" in an unknown field or variant message.
fn allowed_names(message: &str) -> String {
    let Some((_, expected)) = message.split_once(", expected ") else {
        return String::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What serde expected, in JSON's words.
fn plain_expected(expected: &str) -> String {
    let expected = expected.trim();
    let integer = |t: &str| t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit());
    if expected.starts_with("struct ") || expected == "a map" || expected.contains("enum ") {
        "a JSON object".to_owned()
    } else if expected == "a sequence" {
        "an array".to_owned()
    } else if expected.starts_with('u') && (integer(expected) || expected == "usize") {
        "a non-negative integer".to_owned()
    } else if expected.starts_with('i') && (integer(expected) || expected == "isize") {
        "an integer".to_owned()
    } else if expected.starts_with('f') && integer(expected) {
        "a number".to_owned()
    } else {
        expected.to_owned()
    }
}

/// What serde found, in JSON's words.
fn plain_unexpected(got: &str) -> String {
    match got {
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        "null" => "null".to_owned(),
        other => other.replace('`', ""),
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        }
        other => ApiError::invalid(other.body_text()),
    }
}

/// The bearer credential of a request (an API key or a subscriber token), if it sent one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer_credential(headers.get(AUTHORIZATION)?)
}

/// The credential of one `Authorization` value if its scheme is `Bearer` (any case).
pub fn bearer_credential(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "picloud_session";

/// Length of a session secret: 43 base64url characters (32 bytes).
const SESSION_SECRET_LEN: usize = 43;

/// The dashboard session secret in a request's `Cookie` headers, if it has a
/// well-formed one. Other cookies (the embedding site's own) are ignored.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| {
            value.len() == SESSION_SECRET_LEN
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Path parameters. A path that cannot be decoded (bad percent-encoding) is a 400.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::invalid(e.body_text()))
            }
            Err(other) => Err(ApiError::invalid(other.body_text())),
        }
    }
}

/// Query-string parameters. A malformed or mistyped parameter is a 400 naming it.
#[derive(Debug, Clone, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid(e.body_text()))
            }
            Err(other) => Err(ApiError::invalid(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: Option<u32>,
        inner: Option<Inner>,
        mode: Option<Mode>,
        app: Option<crate::AppId>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_events: Option<i64>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Public,
        Token,
    }

    fn message(text: &str) -> String {
        let error = from_object::<Body>(text).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{text}");
        error.message
    }

    #[test]
    fn only_an_object_is_a_body() {
        assert!(from_object::<Body>(r#" {"name": "a"}"#).is_ok());
        for text in [
            r#"["a", 1]"#,
            "[null, null]",
            "null",
            "1",
            r#""name""#,
            "true",
        ] {
            assert_eq!(message(text), "body must be a JSON object", "{text}");
        }
    }

    #[test]
    fn shape_errors_name_the_field_and_what_it_must_be() {
        assert_eq!(message("{}"), "name is required");
        assert_eq!(
            message(r#"{"name": 5}"#),
            "name must be a string, got integer 5"
        );
        assert_eq!(
            message(r#"{"name": "a", "count": -1}"#),
            "count must be a non-negative integer, got integer -1"
        );
        assert_eq!(
            message(r#"{"name": "a", "count": "x"}"#),
            "count must be a non-negative integer, got string \"x\""
        );
        assert_eq!(
            message(r#"{"name": "a", "inner": []}"#),
            "inner must be a JSON object, got an array"
        );
        assert_eq!(
            message(r#"{"name": "a", "inner": {"max_events": true}}"#),
            "inner.max_events must be an integer, got boolean true"
        );
        assert_eq!(
            message(r#"{"name": "a", "mode": "open"}"#),
            "mode must be one of: public, token; got \"open\""
        );
        assert_eq!(
            message(r#"{"name": "a", "colour": 1}"#),
            "unknown field colour; expected one of: name, count, inner, mode, app"
        );
        assert_eq!(
            message(r#"{"name": "a", "inner": {"extra": 1}}"#),
            "unknown field inner.extra; expected one of: max_events"
        );
        assert!(
            message(r#"{"name": "a", "app": "Shop"}"#).starts_with("app: app id may contain only")
        );
        for text in ["{}", r#"{"name": 5}"#, r#"{"name": "a", "inner": []}"#] {
            let m = message(text);
            assert!(!m.contains("struct") && !m.contains("line"), "{m}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let secret = "A".repeat(SESSION_SECRET_LEN);
        let mut headers = HeaderMap::new();
        assert_eq!(session_cookie(&headers), None);
        headers.insert(
            COOKIE,
            format!("theme=dark; {SESSION_COOKIE}={secret}; x=y")
                .parse()
                .unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some(secret.as_str()));
        headers.insert(COOKIE, format!("{SESSION_COOKIE}=short").parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
        headers.insert(
            COOKIE,
            format!("{SESSION_COOKIE}={}!", &secret[1..])
                .parse()
                .unwrap(),
        );
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer pk_abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("pk_abc"));
        headers.insert(AUTHORIZATION, "bearer  pk_abc ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("pk_abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
