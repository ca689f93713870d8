//! [`RealtimeStore`] over [`Db`]: what the realtime layer (orchestrator-core) reads and
//! writes here — topic access facts, the event log, subscriber-token signing keys.

use async_trait::async_trait;
use bytes::Bytes;
use picloud_shared::events::CommittedEvent;
use picloud_shared::realtime::{RealtimeStore, SigningKey, StoreError, StoreResult, TopicAccess};
use picloud_shared::{ApiError, AppId, ErrorCode, TopicName};

use crate::db::{begin_write, Db};
use crate::error::Error;
use crate::event_log::MAX_READ_LIMIT;
use crate::on_db;
use crate::secret_box::Aad;

crate::db::row_struct! {
    struct AccessRow {
        external_subscribable: bool,
        auth_mode: String,
        last_seq: i64,
    }
}

crate::db::row_struct! {
    struct LogRow {
        seq: i64,
        id: String,
        event_type: String,
        payload: Vec<u8>,
        published_at: i64,
    }
}

crate::db::row_struct! {
    struct KeyRow {
        kid: String,
        secret: Vec<u8>,
        created_at: i64,
        retired_at: Option<i64>,
    }
}

/// A storage failure as the realtime layer sees it. manager-core's one mapping decides
/// (and logs what is internal); only its verdict crosses the seam.
fn store_error(error: impl Into<Error>) -> StoreError {
    let api = ApiError::from(error.into());
    match api.code {
        ErrorCode::Unavailable => StoreError::Unavailable(api.message),
        ErrorCode::InvalidRequest => StoreError::Refused(api.message),
        _ => StoreError::Failed(api.message),
    }
}

impl Db {
    /// `key`'s secret sealed for its `app_secrets` row.
    fn sealed_signing_key(
        &self,
        app: &AppId,
        purpose: &str,
        key: &SigningKey,
    ) -> StoreResult<Vec<u8>> {
        let aad = Aad::app_secret(app.as_str(), purpose, &key.kid);
        Ok(self
            .master_key()
            .map_err(store_error)?
            .seal(&aad, &key.secret)
            .into_bytes())
    }
}

#[async_trait]
impl RealtimeStore for Db {
    async fn topic_access(
        &self,
        app: &AppId,
        topics: &[TopicName],
    ) -> StoreResult<Vec<Option<TopicAccess>>> {
        let mut found = Vec::with_capacity(topics.len());
        for topic in topics {
            let row: Option<AccessRow> = on_db!(self, pool, {
                sqlx::query_as(
                    "SELECT external_subscribable, auth_mode, last_seq FROM topics
                     WHERE app_id = $1 AND name = $2",
                )
                .bind(app.as_str())
                .bind(topic.as_str())
                .fetch_optional(pool)
                .await
                .map_err(store_error)?
            });
            found.push(row.map(|r| TopicAccess {
                external_subscribable: r.external_subscribable,
                requires_token: r.auth_mode != "public",
                last_seq: r.last_seq,
            }));
        }
        Ok(found)
    }

    async fn read_log(
        &self,
        app: &AppId,
        topic: &TopicName,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<CommittedEvent>> {
        let limit = (limit as i64).clamp(1, MAX_READ_LIMIT);
        let rows: Vec<LogRow> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT seq, id, event_type, payload, published_at FROM topic_events
                 WHERE app_id = $1 AND topic = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )
            .bind(app.as_str())
            .bind(topic.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(store_error)?
        });
        Ok(rows
            .into_iter()
            .map(|r| CommittedEvent {
                app: app.clone(),
                topic: topic.clone(),
                seq: r.seq,
                id: r.id,
                event_type: r.event_type,
                data: Bytes::from(r.payload),
                published_at: r.published_at,
            })
            .collect())
    }

    async fn log_start(&self, app: &AppId, topic: &TopicName) -> StoreResult<Option<i64>> {
        let start: Option<i64> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT MIN(seq) FROM topic_events WHERE app_id = $1 AND topic = $2")
                .bind(app.as_str())
                .bind(topic.as_str())
                .fetch_one(pool)
                .await
                .map_err(store_error)?
        });
        Ok(start)
    }

    async fn signing_keys(&self, app: &AppId, purpose: &str) -> StoreResult<Vec<SigningKey>> {
        let rows: Vec<KeyRow> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT kid, secret, created_at, retired_at FROM app_secrets
                 WHERE app_id = $1 AND purpose = $2 ORDER BY created_at, kid",
            )
            .bind(app.as_str())
            .bind(purpose)
            .fetch_all(pool)
            .await
            .map_err(store_error)?
        });
        let key = self.master_key().map_err(store_error)?;
        rows.into_iter()
            .map(|r| {
                let aad = Aad::app_secret(app.as_str(), purpose, &r.kid);
                Ok(SigningKey {
                    secret: key.open(&aad, &r.secret).map_err(store_error)?.to_vec(),
                    kid: r.kid,
                    created_at: r.created_at,
                    retired_at: r.retired_at,
                })
            })
            .collect()
    }

    async fn insert_signing_key(
        &self,
        app: &AppId,
        purpose: &str,
        key: &SigningKey,
    ) -> StoreResult<()> {
        let sealed = self.sealed_signing_key(app, purpose, key)?;
        let _gate = self.write_gate().await;
        let result = on_db!(self, pool, {
            sqlx::query(
                "INSERT INTO app_secrets (app_id, purpose, kid, secret, created_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (app_id, purpose, kid) DO NOTHING",
            )
            .bind(app.as_str())
            .bind(purpose)
            .bind(&key.kid)
            .bind(&sealed)
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(pool)
            .await
            .map(drop)
        });
        match result {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::AppNotFound(app.to_string()))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn rotate_signing_key(
        &self,
        app: &AppId,
        purpose: &str,
        key: &SigningKey,
        retire_at: i64,
    ) -> StoreResult<()> {
        let sealed = self.sealed_signing_key(app, purpose, key)?;
        let _gate = self.write_gate().await;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await.map_err(store_error)?;
            sqlx::query(
                "UPDATE app_secrets SET retired_at = $3
                 WHERE app_id = $1 AND purpose = $2 AND (retired_at IS NULL OR retired_at > $3)",
            )
            .bind(app.as_str())
            .bind(purpose)
            .bind(retire_at)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            sqlx::query(
                "INSERT INTO app_secrets (app_id, purpose, kid, secret, created_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(app.as_str())
            .bind(purpose)
            .bind(&key.kid)
            .bind(&sealed)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
        });
        Ok(())
    }

    async fn session_active(&self, secret: &str) -> StoreResult<bool> {
        Ok(self
            .find_admin_session(secret)
            .await
            .map_err(store_error)?
            .is_some())
    }
}
