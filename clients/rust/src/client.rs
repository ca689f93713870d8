//! The [`Client`] and its [`ClientBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::Secret;

/// The `User-Agent` every request sends.
pub const USER_AGENT: &str = concat!("picloud-rust/", env!("CARGO_PKG_VERSION"));

/// A PiCloud API client: cheap to clone (clones share one connection pool).
///
/// Each group of routes has its handle: [`Client::pubsub`], [`Client::topics`],
/// [`Client::events`], [`Client::triggers`], [`Client::deliveries`],
/// [`Client::dead_letters`], [`Client::keys`], [`Client::functions`],
/// [`Client::scripts`], [`Client::sources`], [`Client::apps`], [`Client::realtime`],
/// [`Client::admin`] and [`Client::system`].
///
/// ```no_run
/// use std::time::Duration;
/// use picloud_client::Client;
///
/// # fn run() -> Result<(), picloud_client::Error> {
/// let client = Client::builder()
///     .base_url("http://127.0.0.1:8080")
///     .app("shop")
///     .api_key(std::env::var("PICLOUD_API_KEY").unwrap_or_default())
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: String,
    pub(crate) app: Option<String>,
    pub(crate) api_key: Option<Secret>,
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max_delay: Duration,
    pub(crate) max_retry_after: Duration,
}

impl Inner {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Client")
            .field("base_url", &inner.base_url)
            .field("app", &inner.app)
            .field("api_key", &inner.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &inner.timeout)
            .field("max_retries", &inner.max_retries)
            .finish()
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The same client (same connections and key) acting for another app.
    pub fn with_app(&self, app: impl Into<String>) -> Client {
        let inner = &self.inner;
        Client {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base_url: inner.base_url.clone(),
                app: Some(app.into()),
                api_key: inner.api_key.clone(),
                timeout: inner.timeout,
                max_retries: inner.max_retries,
                retry_initial: inner.retry_initial,
                retry_max_delay: inner.retry_max_delay,
                max_retry_after: inner.max_retry_after,
            }),
        }
    }

    /// The app this client acts for, if one was set.
    pub fn app_id(&self) -> Option<&str> {
        self.inner.app.as_deref()
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The app, or a configuration error for a route under `/v1/apps/{app}`.
    pub(crate) fn app(&self) -> Result<&str> {
        self.inner.app.as_deref().ok_or_else(|| {
            Error::config(
                "this call needs an app: set one with ClientBuilder::app or Client::with_app",
            )
        })
    }
}

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: Option<String>,
    app: Option<String>,
    api_key: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    retry_initial: Duration,
    retry_max_delay: Duration,
    max_retry_after: Duration,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("app", &self.app)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: None,
            app: None,
            api_key: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            retry_initial: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            http: None,
        }
    }
}

impl ClientBuilder {
    /// The server's base URL, e.g. `https://picloud.example.com` (required).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The app routes under `/v1/apps/{app}` act for.
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    /// The API key sent as `Authorization: Bearer`. It never shows in `Debug` output.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// How long one attempt of a request may take, answer included (default 30 s).
    /// Realtime streams are not bound by it: they watch the server's heartbeats.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a failed request is retried at most (default 3; 0 turns retries off).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first retry delay (default 200 ms), doubled per retry up to
    /// [`ClientBuilder::retry_max_delay`], each with up to half taken off at random.
    pub fn retry_initial_delay(mut self, delay: Duration) -> Self {
        self.retry_initial = delay;
        self
    }

    /// The largest retry delay of the backoff (default 5 s).
    pub fn retry_max_delay(mut self, delay: Duration) -> Self {
        self.retry_max_delay = delay;
        self
    }

    /// The longest `Retry-After` honoured (default 60 s); longer asks wait this long.
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// Uses this `reqwest` client (its pool, proxies, TLS settings) instead of building
    /// one. Its own timeouts apply on top of the SDK's; set none that would cut streams.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let base_url = self
            .base_url
            .ok_or_else(|| Error::config("a base URL is required (ClientBuilder::base_url)"))?;
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| Error::config(format!("invalid base URL {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(Error::config(format!(
                "the base URL must be http(s): {base_url:?}"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::config(
                "the base URL must not have a query or fragment",
            ));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();
        let api_key = self.api_key.as_deref().map(Secret::new).transpose()?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                app: self.app,
                api_key,
                timeout: self.timeout,
                max_retries: self.max_retries,
                retry_initial: self.retry_initial,
                retry_max_delay: self.retry_max_delay,
                max_retry_after: self.max_retry_after,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let builder = Client::builder()
            .base_url("http://127.0.0.1:1/")
            .app("shop")
            .api_key("pk_supersecret");
        assert!(!format!("{builder:?}").contains("supersecret"));
        let client = builder.build().unwrap();
        let shown = format!("{client:?} {client:#?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
    }

    #[test]
    fn rejects_a_malformed_base_url() {
        for url in ["not a url", "ftp://example.com", "http://127.0.0.1:1/?x=1"] {
            let err = Client::builder().base_url(url).build().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err}");
        }
        assert!(matches!(
            Client::builder().build().unwrap_err(),
            Error::Config(_)
        ));
    }

    #[test]
    fn user_agent_names_the_sdk_and_its_version() {
        assert_eq!(
            USER_AGENT,
            format!("picloud-rust/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
