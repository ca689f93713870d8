//! Scripts: an app's Rhai source under a name, with every saved version kept. The
//! current version is what runs; saving adds a version, restoring an old one adds a copy
//! of it, so history only grows and a run never sees a half-saved script.

use picloud_shared::time::now_ms;
use picloud_shared::TopicName;
use serde::{Deserialize, Serialize};

use crate::cluster_feed::FeedNotify;
use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use picloud_shared::cluster::script_changed_payload;

/// Who may call a script as an HTTP function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionAccess {
    /// Callers with an API key holding `functions:invoke`.
    #[default]
    Key,
    /// Anyone: the script checks the caller itself (e.g. the app's own session).
    Public,
}

impl FunctionAccess {
    fn as_str(self) -> &'static str {
        match self {
            FunctionAccess::Key => "key",
            FunctionAccess::Public => "public",
        }
    }

    fn from_db(value: &str) -> Result<FunctionAccess> {
        match value {
            "key" => Ok(FunctionAccess::Key),
            "public" => Ok(FunctionAccess::Public),
            other => Err(Error::Corrupt(format!("script access '{other}'"))),
        }
    }
}

/// A script as listed: its current version and settings, without the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScriptSummary {
    /// The script's name.
    pub name: String,
    /// The current version (1 for the first save).
    pub version: i64,
    /// Who may call it as an HTTP function.
    pub access: FunctionAccess,
    /// First save, ms since the epoch.
    pub created_at: i64,
    /// Last save or restore, ms since the epoch.
    pub updated_at: i64,
}

/// A script with the source of its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Script {
    /// Name, version and settings.
    #[serde(flatten)]
    pub summary: ScriptSummary,
    /// The source of the current version.
    pub source: String,
}

/// One saved version of a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScriptVersion {
    /// The version number.
    pub version: i64,
    /// When it was saved, ms since the epoch.
    pub created_at: i64,
    /// Its source.
    pub source: String,
}

/// Checks a script name: the rules of topic names.
pub fn script_name(name: &str) -> Result<TopicName> {
    TopicName::parse(name).map_err(|e| Error::Invalid(format!("script name: {}", e.0)))
}

crate::db::row_struct! {
    struct SummaryRow {
        name: String,
        version: i64,
        access: String,
        created_at: i64,
        updated_at: i64,
    }
}

impl SummaryRow {
    fn into_summary(self) -> Result<ScriptSummary> {
        Ok(ScriptSummary {
            access: FunctionAccess::from_db(&self.access)?,
            name: self.name,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const SUMMARY_SELECT: &str = "SELECT name, version, access, created_at, updated_at FROM scripts";

impl Db {
    /// Saves `source` as the next version of script `name` of `app` (creating the script
    /// at version 1), in one transaction; `access` changes the script's access when
    /// given. The caller has compiled the source. Concurrent saves each get their own
    /// version; the last to commit is current. A missing app is
    /// [`Error::AppNotFound`] (from the foreign key, without a lookup first).
    pub async fn save_script(
        &self,
        app: &str,
        name: &TopicName,
        source: &str,
        access: Option<FunctionAccess>,
    ) -> Result<Script> {
        let now = now_ms();
        let summary: SummaryRow = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let row: SummaryRow = sqlx::query_as(
                "INSERT INTO scripts (app_id, name, version, access, created_at, updated_at)
                 VALUES ($1, $2, 1, $3, $4, $4)
                 ON CONFLICT (app_id, name) DO UPDATE
                     SET version = scripts.version + 1, updated_at = $4,
                         access = COALESCE($5, scripts.access)
                 RETURNING name, version, access, created_at, updated_at",
            )
            .bind(app)
            .bind(name.as_str())
            .bind(access.unwrap_or_default().as_str())
            .bind(now)
            .bind(access.map(FunctionAccess::as_str))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref d) if d.is_foreign_key_violation() => {
                    Error::AppNotFound(app.to_owned())
                }
                other => other.into(),
            })?;
            sqlx::query(
                "INSERT INTO script_versions (app_id, name, version, source, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(app)
            .bind(name.as_str())
            .bind(row.version)
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.notify_feed(script_changed_payload(app, name.as_str()))
                .await?;
            tx.commit().await?;
            row
        });
        Ok(Script {
            summary: summary.into_summary()?,
            source: source.to_owned(),
        })
    }

    /// The app's scripts, by name.
    pub async fn list_scripts(&self, app: &str) -> Result<Vec<ScriptSummary>> {
        let rows: Vec<SummaryRow> = on_db!(self, pool, {
            sqlx::query_as(&format!("{SUMMARY_SELECT} WHERE app_id = $1 ORDER BY name"))
                .bind(app)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(SummaryRow::into_summary).collect()
    }

    /// Script `name` of `app` with its current source.
    pub async fn get_script(&self, app: &str, name: &str) -> Result<Script> {
        let row: Option<(String, i64, String, i64, i64, String)> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT s.name, s.version, s.access, s.created_at, s.updated_at, v.source
                 FROM scripts s JOIN script_versions v
                     ON v.app_id = s.app_id AND v.name = s.name AND v.version = s.version
                 WHERE s.app_id = $1 AND s.name = $2",
            )
            .bind(app)
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        let (name, version, access, created_at, updated_at, source) =
            row.ok_or_else(|| Error::ScriptNotFound(name.to_owned()))?;
        let summary = SummaryRow {
            name,
            version,
            access,
            created_at,
            updated_at,
        };
        Ok(Script {
            summary: summary.into_summary()?,
            source,
        })
    }

    /// Every saved version of script `name`, newest first.
    pub async fn list_script_versions(&self, app: &str, name: &str) -> Result<Vec<ScriptVersion>> {
        let rows: Vec<(i64, i64, String)> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT version, created_at, source FROM script_versions
                 WHERE app_id = $1 AND name = $2 ORDER BY version DESC",
            )
            .bind(app)
            .bind(name)
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            return Err(Error::ScriptNotFound(name.to_owned()));
        }
        Ok(rows
            .into_iter()
            .map(|(version, created_at, source)| ScriptVersion {
                version,
                created_at,
                source,
            })
            .collect())
    }

    /// Version `version` of script `name`.
    pub async fn get_script_version(
        &self,
        app: &str,
        name: &str,
        version: i64,
    ) -> Result<ScriptVersion> {
        let row: Option<(i64, String)> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT created_at, source FROM script_versions
                 WHERE app_id = $1 AND name = $2 AND version = $3",
            )
            .bind(app)
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?
        });
        let (created_at, source) =
            row.ok_or_else(|| Error::ScriptNotFound(format!("{name}@{version}")))?;
        Ok(ScriptVersion {
            version,
            created_at,
            source,
        })
    }

    /// Deletes script `name` with all its versions and its run log.
    pub async fn delete_script(&self, app: &str, name: &str) -> Result<()> {
        let deleted = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let deleted = sqlx::query("DELETE FROM scripts WHERE app_id = $1 AND name = $2")
                .bind(app)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM script_runs WHERE app_id = $1 AND script = $2")
                .bind(app)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if deleted > 0 {
                tx.notify_feed(script_changed_payload(app, name)).await?;
            }
            tx.commit().await?;
            deleted
        });
        if deleted == 0 {
            return Err(Error::ScriptNotFound(name.to_owned()));
        }
        Ok(())
    }
}
