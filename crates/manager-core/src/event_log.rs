//! Reading a topic's durable log in seq order.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::on_db;

/// Most events one read returns.
pub const MAX_READ_LIMIT: i64 = 1000;

/// An event as read back from the log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoggedEvent {
    /// The topic.
    pub topic: String,
    /// Position in the topic's log.
    pub seq: i64,
    /// Globally unique id.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The published `data`, exactly as sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
}

crate::db::row_struct! {
    struct EventRow {
        topic: String,
        seq: i64,
        id: String,
        event_type: String,
        payload: Vec<u8>,
        published_at: i64,
    }
}

impl EventRow {
    fn into_event(self) -> Result<LoggedEvent> {
        let text = String::from_utf8(self.payload)
            .map_err(|_| Error::Corrupt(format!("event {} is not UTF-8", self.id)))?;
        let data = RawValue::from_string(text)
            .map_err(|_| Error::Corrupt(format!("event {} is not JSON", self.id)))?;
        Ok(LoggedEvent {
            topic: self.topic,
            seq: self.seq,
            id: self.id,
            event_type: self.event_type,
            data,
            published_at: self.published_at,
        })
    }
}

impl Db {
    /// Up to `limit` events of a topic with seq greater than `after`, in seq order.
    pub async fn read_events(
        &self,
        app: &str,
        topic: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let rows: Vec<EventRow> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT topic, seq, id, event_type, payload, published_at FROM topic_events
                 WHERE app_id = $1 AND topic = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )
            .bind(app)
            .bind(topic)
            .bind(after)
            .bind(limit.clamp(1, MAX_READ_LIMIT))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(EventRow::into_event).collect()
    }
}
