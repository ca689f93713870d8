//! The admin dashboard: `dashboard/dist` (the built Svelte app, committed to the
//! repository) embedded in the binary with `rust-embed` and served at `/_/`.
//!
//! - `/_/` and any path under it that is not a file serve `index.html` (the app routes
//!   in the browser), with `Cache-Control: no-cache` and a strict Content-Security-Policy.
//! - `/_/assets/…` are Vite's content-hashed files: cached for a year, `immutable`; a
//!   missing one is a JSON 404, never the HTML page.
//! - `/_` redirects to `/_/`.
//!
//! Debug builds embed the files too (`debug-embed`), so tests exercise what ships.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use picloud_shared::{ApiError, ErrorCode};
use rust_embed::{EmbeddedFile, RustEmbed};

/// The built dashboard.
#[derive(RustEmbed)]
#[folder = "../../dashboard/dist"]
struct Assets;

/// Where the dashboard is served.
pub const BASE: &str = "/_/";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes (all public: the app signs in through the API).
pub fn router() -> Router {
    Router::new()
        .route(
            "/_",
            get(|| async {
                (
                    StatusCode::PERMANENT_REDIRECT,
                    [(LOCATION, HeaderValue::from_static(BASE))],
                )
            }),
        )
        .route("/_/", get(serve))
        .route("/_/{*path}", get(serve))
}

async fn serve(request: Request) -> Response {
    let path = request
        .uri()
        .path()
        .strip_prefix(BASE)
        .unwrap_or_default()
        .to_owned();
    let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
    if !path.is_empty() && !path.ends_with(".html") {
        if let Some(file) = Assets::get(&path) {
            let cache = if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "public, max-age=3600"
            };
            return file_response(file, cache, if_none_match, false);
        }
        if path.starts_with("assets/") || path.contains('.') {
            return ApiError::new(
                ErrorCode::NotFound,
                format!("no dashboard file {BASE}{path}"),
            )
            .into_response();
        }
    }
    match Assets::get("index.html") {
        Some(index) => file_response(index, "no-cache", if_none_match, true),
        None => ApiError::new(
            ErrorCode::NotFound,
            "this binary was built without the dashboard",
        )
        .into_response(),
    }
}

fn file_response(
    file: EmbeddedFile,
    cache: &'static str,
    if_none_match: Option<HeaderValue>,
    html: bool,
) -> Response {
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let not_modified = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let headers = response.headers_mut();
    let content_type = if html {
        "text/html; charset=utf-8".to_owned()
    } else {
        file.metadata.mimetype().to_owned()
    };
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if html {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    response
}
