//! Outbox sources: an app's own PostgreSQL database, where the app publishes inside its
//! own transactions (`picloud.publish(...)`), and PiCloud relays what committed through
//! the normal publish path. This closes the dual write an app has when it commits its
//! data and then calls the HTTP API: a crash between the two can no longer lose an
//! event or publish one whose write rolled back.
//!
//! - `app_schema` — the schema installed in the app's database;
//! - `address` — which database hosts a source may name;
//! - `store` — sources in PiCloud's database: settings, the relay lease, status;
//! - `relay` — the relay: one per source across the cluster, under the lease.

use picloud_shared::AppId;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::http::event_input::{validate_idempotency_key, PublishLimits};
use crate::publish::PublishRequest;

pub mod address;
pub mod app_schema;
pub mod relay;
mod store;

pub use store::RelayTarget;

/// What kind of database a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A PostgreSQL database with PiCloud's outbox schema (`picloud sources install`).
    PostgresOutbox,
}

impl SourceKind {
    fn as_str(self) -> &'static str {
        match self {
            SourceKind::PostgresOutbox => "postgres_outbox",
        }
    }

    fn from_db(value: &str) -> Result<SourceKind> {
        match value {
            "postgres_outbox" => Ok(SourceKind::PostgresOutbox),
            other => Err(Error::Corrupt(format!("source kind '{other}'"))),
        }
    }
}

/// A source as the API shows it: never with the database password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Source {
    /// Id (`src_…`).
    pub id: String,
    /// What it reads.
    pub kind: SourceKind,
    /// The app database's URL without its password.
    pub database_url: String,
    /// The outbox schema in the app's database.
    pub schema: String,
    /// Whether a relay runs for it.
    pub enabled: bool,
    /// The relay's last report.
    pub status: SourceStatus,
    /// Created at, ms since the epoch.
    pub created_at: i64,
    /// Last changed at, ms since the epoch.
    pub updated_at: i64,
}

/// How a source's relay is doing, as it last reported (every node answers the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// Whether the relay is connected to the app's database.
    pub connected: bool,
    /// The node running the relay, while its lease lasts.
    pub relay_node: Option<String>,
    /// Rows waiting in the app's outbox at the last report.
    pub rows_waiting: Option<i64>,
    /// Age of the oldest waiting row at the last report, ms.
    pub oldest_waiting_ms: Option<i64>,
    /// Rows relayed since the source was created (published, replayed or dead-lettered).
    pub relayed_total: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When it happened, ms since the epoch.
    pub last_error_at: Option<i64>,
    /// When the relay last reported, ms since the epoch.
    pub reported_at: Option<i64>,
}

crate::db::row_struct! {
    /// A row of an app's outbox, as the relay reads it and a dead letter keeps it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OutboxRow {
        /// Its id in the app's outbox.
        pub id: i64,
        /// The topic it names.
        pub topic: String,
        /// The event type (the column `type`).
        pub event_type: String,
        /// The data, as JSON text.
        pub data: String,
        /// The app's own idempotency key, if it gave one.
        pub idempotency_key: Option<String>,
    }
}

/// What a dead letter keeps of a row (its `payload`).
#[derive(Serialize, Deserialize)]
struct Payload {
    topic: String,
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
    idempotency_key: Option<String>,
}

impl OutboxRow {
    /// The request that publishes this row of source `source_id`, or why PiCloud cannot
    /// publish it. The request carries the app's own idempotency key, or else one made of
    /// the source and the row id, so publishing the row again is answered as a repeat.
    pub fn publish_request(
        &self,
        limits: &PublishLimits,
        app: &AppId,
        source_id: &str,
    ) -> std::result::Result<PublishRequest, String> {
        let data = RawValue::from_string(self.data.clone()).map_err(|e| format!("data: {e}"))?;
        let event = limits
            .new_event(&self.topic, Some(self.event_type.clone()), data)
            .map_err(|e| e.to_string())?;
        let idempotency_key = match &self.idempotency_key {
            Some(key) => validate_idempotency_key(key).map_err(|e| e.to_string())?,
            // A space can be in no key an app sends, so this never meets one of theirs.
            None => format!("source {source_id} {}", self.id),
        };
        Ok(PublishRequest {
            app: app.clone(),
            events: vec![event],
            idempotency_key: Some(idempotency_key),
        })
    }

    /// The row as a dead letter's `payload`: `{topic, type, data, idempotency_key}`.
    pub fn to_payload(&self) -> String {
        let data = RawValue::from_string(self.data.clone())
            .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"));
        serde_json::to_string(&Payload {
            topic: self.topic.clone(),
            event_type: self.event_type.clone(),
            data,
            idempotency_key: self.idempotency_key.clone(),
        })
        .expect("a payload serializes")
    }

    /// Row `id` back from a dead letter's `payload`.
    pub fn from_payload(id: i64, payload: &str) -> Result<OutboxRow> {
        let payload: Payload = serde_json::from_str(payload)
            .map_err(|e| Error::Corrupt(format!("a source dead letter's payload: {e}")))?;
        Ok(OutboxRow {
            id,
            topic: payload.topic,
            event_type: payload.event_type,
            data: payload.data.get().to_owned(),
            idempotency_key: payload.idempotency_key,
        })
    }
}

/// The URL as it may be shown: password and `password=` parameters left out. A URL
/// that does not parse is shown as its scheme only.
pub fn redacted_url(database_url: &str) -> String {
    let Ok(mut url) = url::Url::parse(database_url) else {
        return "postgres://…".to_owned();
    };
    let _ = url.set_password(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("password"))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    url.to_string()
}

/// Checks a source's database URL: a PostgreSQL URL that names a database.
pub fn check_database_url(database_url: &str) -> Result<()> {
    let url = url::Url::parse(database_url)
        .map_err(|_| Error::Invalid("database_url is not a URL".into()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(Error::Invalid(
            "database_url must be a postgres:// URL".into(),
        ));
    }
    database_url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|_| Error::Invalid("database_url is not a PostgreSQL URL".into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_carry_no_password() {
        assert_eq!(
            redacted_url(
                "postgres://relay:s3cret@db.internal:5432/shop?sslmode=require&password=x"
            ),
            "postgres://relay@db.internal:5432/shop?sslmode=require"
        );
        assert_eq!(redacted_url("not a url s3cret"), "postgres://…");
    }

    #[test]
    fn only_postgres_urls_are_sources() {
        assert!(check_database_url("postgres://u:p@127.0.0.1/app").is_ok());
        assert!(check_database_url("mysql://u@h/app").is_err());
        assert!(check_database_url("nonsense").is_err());
    }
}
