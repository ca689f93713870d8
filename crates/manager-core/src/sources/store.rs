//! Sources in PiCloud's own database: their settings (the app database's URL sealed
//! under the master key), the relay lease that keeps one relay per source across nodes,
//! the relay's status reports, and the dead letters of rows that cannot be published.

use picloud_shared::time::now_ms;
use zeroize::Zeroizing;

use super::{redacted_url, Source, SourceKind, SourceStatus};
use crate::db::{begin_write, Db};
use crate::dispatcher::outbox::FAN_OUT_DEAD_LETTER;
use crate::error::{Error, Result};
use crate::on_db;
use crate::secret_box::Aad;

/// The columns read for a [`Source`], in [`SourceRow`]'s order.
const SOURCE_COLUMNS: &str = "id, kind, database_url, schema_name, enabled, connected,
    lease_owner, lease_until, rows_waiting, oldest_waiting_ms, relayed_total, last_error,
    last_error_at, status_at, created_at, updated_at";

type SourceRow = (
    String,
    String,
    String,
    String,
    bool,
    bool,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

/// An enabled source, as the relays' supervisor looks at it each second. The database
/// URL is left sealed here: a relay opens it ([`Db::source_database_url`]) only when it
/// connects.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// The source's id.
    pub id: String,
    /// The app it publishes for.
    pub app: String,
    /// The outbox schema.
    pub schema: String,
    /// Who holds the relay lease, and until when (ms since the epoch).
    pub lease: Option<(String, i64)>,
}

/// What a relay reports after a pass.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    /// Connected to the app's database.
    pub connected: bool,
    /// Rows waiting, if counted.
    pub rows_waiting: Option<i64>,
    /// Age of the oldest, ms.
    pub oldest_waiting_ms: Option<i64>,
    /// Rows relayed since the last report.
    pub relayed: i64,
    /// An error of this pass.
    pub error: Option<String>,
}

/// A row of an app's outbox that cannot be published, and why.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    /// Its id in the app's outbox.
    pub row_id: i64,
    /// The topic it named.
    pub topic: String,
    /// The row as JSON, kept in the dead letter.
    pub payload: String,
    /// Why it was rejected.
    pub reason: String,
}

fn source_from_row(row: SourceRow, now: i64) -> Result<Source> {
    let (id, kind, _url, schema, enabled, connected, owner, until, waiting, oldest) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    );
    let leased = until.is_some_and(|until| until > now);
    Ok(Source {
        database_url: String::new(),
        kind: SourceKind::from_db(&kind)?,
        schema,
        enabled,
        status: SourceStatus {
            connected: connected && leased,
            relay_node: owner.filter(|_| leased),
            rows_waiting: waiting,
            oldest_waiting_ms: oldest,
            relayed_total: row.10,
            last_error: row.11,
            last_error_at: row.12,
            reported_at: row.13,
        },
        created_at: row.14,
        updated_at: row.15,
        id,
    })
}

impl Db {
    /// Adds a source to `app`, its URL sealed.
    pub async fn create_source(
        &self,
        app: &str,
        kind: SourceKind,
        database_url: &str,
        schema: &str,
    ) -> Result<Source> {
        let id = picloud_shared::ids::random_id("src");
        let sealed = self
            .master_key()?
            .seal(&Aad::source_url(&id), database_url.as_bytes());
        let now = now_ms();
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1")
                .bind(app)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            sqlx::query(
                "INSERT INTO sources (id, app_id, kind, database_url, schema_name, created_at,
                     updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&id)
            .bind(app)
            .bind(kind.as_str())
            .bind(&sealed)
            .bind(schema)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_source(app, &id).await
    }

    /// The sources of `app`, oldest first.
    pub async fn list_sources(&self, app: &str) -> Result<Vec<Source>> {
        let rows: Vec<SourceRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {SOURCE_COLUMNS} FROM sources WHERE app_id = $1 ORDER BY created_at, id"
            ))
            .bind(app)
            .fetch_all(pool)
            .await?
        });
        self.shown(rows)
    }

    /// Source `id` of `app`.
    pub async fn get_source(&self, app: &str, id: &str) -> Result<Source> {
        let row: Option<SourceRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {SOURCE_COLUMNS} FROM sources WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let row = row.ok_or_else(|| Error::SourceNotFound(id.to_owned()))?;
        Ok(self.shown(vec![row])?.remove(0))
    }

    /// Rows as shown: the URL opened only to be redacted.
    fn shown(&self, rows: Vec<SourceRow>) -> Result<Vec<Source>> {
        let now = now_ms();
        let key = self.master_key()?;
        rows.into_iter()
            .map(|row| {
                let url = Zeroizing::new(key.open_text(&Aad::source_url(&row.0), &row.2)?);
                let mut source = source_from_row(row, now)?;
                source.database_url = redacted_url(&url);
                Ok(source)
            })
            .collect()
    }

    /// Turns source `id`'s relay on or off. Turning it off ends the lease, so a relay
    /// that is running stops at its next renewal.
    pub async fn set_source_enabled(&self, app: &str, id: &str, enabled: bool) -> Result<Source> {
        let now = now_ms();
        let changed = on_db!(self, pool, {
            sqlx::query(
                "UPDATE sources SET enabled = $3, updated_at = $4,
                     lease_owner = CASE WHEN $3 THEN lease_owner ELSE NULL END,
                     lease_until = CASE WHEN $3 THEN lease_until ELSE NULL END
                 WHERE app_id = $1 AND id = $2",
            )
            .bind(app)
            .bind(id)
            .bind(enabled)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Err(Error::SourceNotFound(id.to_owned()));
        }
        self.get_source(app, id).await
    }

    /// Deletes source `id`. Rows still in the app's outbox stay there.
    pub async fn delete_source(&self, app: &str, id: &str) -> Result<()> {
        let deleted = on_db!(self, pool, {
            sqlx::query("DELETE FROM sources WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted == 0 {
            return Err(Error::SourceNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Every enabled source, for the relays.
    pub async fn relay_targets(&self) -> Result<Vec<RelayTarget>> {
        type Row = (String, String, String, Option<String>, Option<i64>);
        let rows: Vec<Row> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT id, app_id, schema_name, lease_owner, lease_until
                 FROM sources WHERE enabled ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, app, schema, owner, until)| RelayTarget {
                id,
                app,
                schema,
                lease: owner.zip(until),
            })
            .collect())
    }

    /// Source `id`'s database URL in the clear, password included: for its relay only.
    pub async fn source_database_url(&self, id: &str) -> Result<Zeroizing<String>> {
        let sealed: Option<String> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT database_url FROM sources WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let sealed = sealed.ok_or_else(|| Error::SourceNotFound(id.to_owned()))?;
        Ok(Zeroizing::new(
            self.master_key()?
                .open_text(&Aad::source_url(id), &sealed)?,
        ))
    }

    /// Takes or renews the relay lease of source `id` for `node` until `until`: true if
    /// `node` holds it now. Another node's lease is taken only once it has expired.
    pub async fn take_source_lease(&self, id: &str, node: &str, until: i64) -> Result<bool> {
        let now = now_ms();
        let taken = on_db!(self, pool, {
            sqlx::query(
                "UPDATE sources SET lease_owner = $2, lease_until = $3
                 WHERE id = $1 AND enabled
                   AND (lease_owner = $2 OR lease_owner IS NULL OR lease_until IS NULL
                        OR lease_until < $4)",
            )
            .bind(id)
            .bind(node)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }

    /// Whether `node` still holds a live lease on source `id`, which is still enabled: a
    /// relay asks before each pass, so disabling or deleting a source stops it at once.
    pub async fn holds_source_lease(&self, id: &str, node: &str) -> Result<bool> {
        let held: Option<String> = on_db!(self, pool, {
            sqlx::query_scalar(
                "SELECT id FROM sources
                 WHERE id = $1 AND enabled AND lease_owner = $2 AND lease_until > $3",
            )
            .bind(id)
            .bind(node)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?
        });
        Ok(held.is_some())
    }

    /// Gives up `node`'s lease on source `id` (at shutdown), so another node takes over
    /// at once.
    pub async fn release_source_lease(&self, id: &str, node: &str) -> Result<()> {
        on_db!(self, pool, {
            sqlx::query(
                "UPDATE sources SET lease_owner = NULL, lease_until = NULL, connected = FALSE
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(node)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records a relay's report on source `id` (only while `node` holds the lease).
    pub async fn report_source_status(
        &self,
        id: &str,
        node: &str,
        report: &StatusReport,
    ) -> Result<()> {
        let now = now_ms();
        on_db!(self, pool, {
            sqlx::query(
                "UPDATE sources SET connected = $3,
                     rows_waiting = COALESCE($4, rows_waiting),
                     oldest_waiting_ms = CASE WHEN $4 IS NULL THEN oldest_waiting_ms ELSE $5 END,
                     relayed_total = relayed_total + $6,
                     last_error = COALESCE($7, last_error),
                     last_error_at = CASE WHEN $7 IS NULL THEN last_error_at ELSE $8 END,
                     status_at = $8
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(node)
            .bind(report.connected)
            .bind(report.rows_waiting)
            .bind(report.oldest_waiting_ms)
            .bind(report.relayed)
            .bind(report.error.as_deref())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Writes `rows` of source `id` as dead letters of `app`, each with its reason and one
    /// delivery per enabled `dead_letter` trigger; a row dead-lettered before (a relay
    /// that stopped before deleting it) is not repeated.
    pub async fn dead_letter_source_rows(
        &self,
        app: &str,
        id: &str,
        rows: &[RejectedRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            for row in rows {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO dead_letters (app_id, outbox_id, trigger_id, topic, seq,
                         attempts, last_error, created_at, payload)
                     VALUES ($1, $2, $3, $4, 0, 1, $5, $6, $7)
                     ON CONFLICT (trigger_id, outbox_id) WHERE payload IS NOT NULL DO NOTHING
                     RETURNING id",
                )
                .bind(app)
                .bind(row.row_id)
                .bind(id)
                .bind(&row.topic)
                .bind(&row.reason)
                .bind(now)
                .bind(&row.payload)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(dead_letter) = id else { continue }; // written before
                                                              // Like a delivery's dead letter, it goes to the app's dead_letter triggers.
                sqlx::query(FAN_OUT_DEAD_LETTER)
                    .bind(app)
                    .bind(&row.topic)
                    .bind(0i64) // a refused row has no seq
                    .bind(dead_letter)
                    .bind(now)
                    .bind(true)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        crate::metrics::source_dead_letters(rows.len());
        Ok(())
    }
}
