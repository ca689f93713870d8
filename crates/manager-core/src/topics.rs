//! Topics: named, per-app event logs. A topic records whether outsiders may subscribe
//! to it (`external_subscribable`, off unless an admin flips it), how they authenticate
//! (`auth_mode`), how long its events are kept (`retention`) and the last seq it issued.

use picloud_shared::time::now_ms;
use picloud_shared::TopicName;
use serde::{Deserialize, Serialize};

use crate::cluster_feed::FeedNotify;
use crate::db::{begin_write, is_unique_violation, Db};
use crate::error::{Error, Result};
use crate::on_db;
use picloud_shared::cluster::topic_closed_payload;

/// How browsers authenticate to subscribe to an external topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone may subscribe, no token.
    Public,
    /// A subscriber token minted by the app's backend is required.
    #[default]
    Token,
}

impl AuthMode {
    fn as_str(self) -> &'static str {
        match self {
            AuthMode::Public => "public",
            AuthMode::Token => "token",
        }
    }

    fn from_db(value: &str) -> AuthMode {
        if value == "public" {
            AuthMode::Public
        } else {
            AuthMode::Token
        }
    }
}

/// How much of a topic's log is kept. An event is pruned once it is beyond either limit,
/// unless an undelivered outbox row or a dead letter still needs it. `null` means no
/// limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at most this many latest events.
    pub max_events: Option<i64>,
    /// Keep events at most this many seconds.
    pub max_age_secs: Option<i64>,
}

impl Default for Retention {
    /// 100,000 events or 7 days, whichever is reached first.
    fn default() -> Self {
        Retention {
            max_events: Some(100_000),
            max_age_secs: Some(7 * 24 * 3600),
        }
    }
}

impl Retention {
    /// Checks the limits are positive.
    pub fn validate(&self) -> Result<()> {
        if self.max_events.is_some_and(|n| n < 1) {
            return Err(Error::Invalid(
                "retention.max_events must be at least 1".into(),
            ));
        }
        if self.max_age_secs.is_some_and(|s| s < 1) {
            return Err(Error::Invalid(
                "retention.max_age_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn max_age_ms(&self) -> Option<i64> {
        self.max_age_secs.map(|s| s.saturating_mul(1000))
    }
}

/// A topic as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Topic {
    /// The topic's name.
    #[schema(value_type = String)]
    pub name: TopicName,
    /// Whether browsers may subscribe (with `auth_mode`).
    pub external_subscribable: bool,
    /// How subscribers authenticate.
    pub auth_mode: AuthMode,
    /// What is kept.
    pub retention: Retention,
    /// The seq of the latest event (0 before the first).
    pub last_seq: i64,
    /// Events currently retained in the log.
    pub event_count: i64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change (including the last publish), ms since the epoch.
    pub updated_at: i64,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Its name.
    pub name: TopicName,
    /// How subscribers authenticate.
    pub auth_mode: AuthMode,
    /// What is kept.
    pub retention: Retention,
}

crate::db::row_struct! {
    struct TopicRow {
        name: String,
        external_subscribable: bool,
        auth_mode: String,
        retention_max_events: Option<i64>,
        retention_max_age_ms: Option<i64>,
        last_seq: i64,
        event_count: i64,
        created_at: i64,
        updated_at: i64,
    }
}

impl TopicRow {
    fn into_topic(self) -> Result<Topic> {
        Ok(Topic {
            name: TopicName::parse(&self.name)
                .map_err(|e| Error::Corrupt(format!("topic name: {}", e.0)))?,
            external_subscribable: self.external_subscribable,
            auth_mode: AuthMode::from_db(&self.auth_mode),
            retention: Retention {
                max_events: self.retention_max_events,
                max_age_secs: self.retention_max_age_ms.map(|ms| ms / 1000),
            },
            last_seq: self.last_seq,
            event_count: self.event_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const TOPIC_SELECT: &str = "SELECT t.name, t.external_subscribable, t.auth_mode,
        t.retention_max_events, t.retention_max_age_ms, t.last_seq,
        (SELECT COUNT(*) FROM topic_events e WHERE e.app_id = t.app_id AND e.topic = t.name)
            AS event_count,
        t.created_at, t.updated_at
    FROM topics t";

/// The INSERT that registers a topic. Binds: app, name, external, auth mode, max events,
/// max age in ms, now. The publish path appends `ON CONFLICT DO NOTHING`.
pub(crate) const TOPIC_INSERT: &str = "INSERT INTO topics (app_id, name, external_subscribable,
        auth_mode, retention_max_events, retention_max_age_ms, last_seq, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)";

impl Db {
    /// Registers a topic explicitly. [`Error::TopicExists`] if it is registered already
    /// (also when a publish registered it first).
    pub async fn create_topic(&self, app: &str, topic: NewTopic) -> Result<Topic> {
        topic.retention.validate()?;
        self.get_app(app).await?;
        let now = now_ms();
        let inserted = on_db!(self, pool, {
            sqlx::query(TOPIC_INSERT)
                .bind(app)
                .bind(topic.name.as_str())
                .bind(false)
                .bind(topic.auth_mode.as_str())
                .bind(topic.retention.max_events)
                .bind(topic.retention.max_age_ms())
                .bind(now)
                .execute(pool)
                .await
                .map(drop)
        });
        match inserted {
            Ok(()) => self.get_topic(app, topic.name.as_str()).await,
            Err(e) if is_unique_violation(&e) => Err(Error::TopicExists(topic.name.to_string())),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(Error::AppNotFound(app.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The app's topics, by name.
    pub async fn list_topics(&self, app: &str) -> Result<Vec<Topic>> {
        let rows: Vec<TopicRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "{TOPIC_SELECT} WHERE t.app_id = $1 ORDER BY t.name"
            ))
            .bind(app)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TopicRow::into_topic).collect()
    }

    /// One topic, or [`Error::TopicNotFound`].
    pub async fn get_topic(&self, app: &str, name: &str) -> Result<Topic> {
        let row: Option<TopicRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "{TOPIC_SELECT} WHERE t.app_id = $1 AND t.name = $2"
            ))
            .bind(app)
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or_else(|| Error::TopicNotFound(name.to_owned()))?
            .into_topic()
    }

    /// Flips whether outsiders may subscribe to the topic. Making it internal tells
    /// every node (cluster feed, in the same transaction) to end its streams.
    pub async fn set_topic_external(&self, app: &str, name: &str, external: bool) -> Result<Topic> {
        let updated = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let updated = sqlx::query(
                "UPDATE topics SET external_subscribable = $3, updated_at = $4
                 WHERE app_id = $1 AND name = $2",
            )
            .bind(app)
            .bind(name)
            .bind(external)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 && !external {
                tx.notify_feed(topic_closed_payload(app, name)).await?;
            }
            tx.commit().await?;
            updated
        });
        if updated == 0 {
            return Err(Error::TopicNotFound(name.to_owned()));
        }
        self.get_topic(app, name).await
    }

    /// Deletes a topic with its whole log, and the outbox rows and dead letters that
    /// point into it, in one transaction, which also tells every node (cluster feed) to
    /// end the topic's streams.
    pub async fn delete_topic(&self, app: &str, name: &str) -> Result<()> {
        let deleted = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            for sql in [
                "DELETE FROM outbox WHERE app_id = $1 AND topic = $2",
                "DELETE FROM dead_letters WHERE app_id = $1 AND topic = $2",
                "DELETE FROM topic_events WHERE app_id = $1 AND topic = $2",
            ] {
                sqlx::query(sql)
                    .bind(app)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            let deleted = sqlx::query("DELETE FROM topics WHERE app_id = $1 AND name = $2")
                .bind(app)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted > 0 {
                tx.notify_feed(topic_closed_payload(app, name)).await?;
            }
            tx.commit().await?;
            deleted
        });
        if deleted == 0 {
            return Err(Error::TopicNotFound(name.to_owned()));
        }
        Ok(())
    }
}
