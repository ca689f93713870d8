//! Apps: the tenants of a PiCloud instance. Everything else belongs to one.

use picloud_shared::names::check_printable;
use picloud_shared::time::now_ms;
use picloud_shared::AppId;
use serde::Serialize;

use crate::cluster_feed::FeedNotify;
use crate::db::{begin_write, is_unique_violation, Db};
use crate::error::{Error, Result};
use crate::on_db;
use picloud_shared::cluster::app_deleted_payload;

/// An app as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct App {
    /// The app's slug, used in every URL under `/v1/apps/{app}`.
    pub id: AppId,
    /// A display name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
}

crate::db::row_struct! {
    struct AppRow {
        id: String,
        name: String,
        created_at: i64,
    }
}

impl TryFrom<AppRow> for App {
    type Error = Error;
    fn try_from(row: AppRow) -> Result<App> {
        Ok(App {
            id: AppId::parse(&row.id).map_err(|e| Error::Corrupt(format!("app id: {}", e.0)))?,
            name: row.name,
            created_at: row.created_at,
        })
    }
}

/// Longest accepted display name.
pub const MAX_APP_NAME_LEN: usize = 200;

impl Db {
    /// Creates an app; [`Error::AppExists`] if the id is taken.
    pub async fn create_app(&self, id: &AppId, name: &str) -> Result<App> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_APP_NAME_LEN {
            return Err(Error::Invalid(format!(
                "app name must be 1 to {MAX_APP_NAME_LEN} characters"
            )));
        }
        check_printable("app name", name).map_err(|e| Error::Invalid(e.0))?;
        let created_at = now_ms();
        let result = on_db!(self, pool, {
            sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(id.as_str())
                .bind(name)
                .bind(created_at)
                .execute(pool)
                .await
                .map(drop)
        });
        match result {
            Ok(_) => Ok(App {
                id: id.clone(),
                name: name.to_owned(),
                created_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(Error::AppExists(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Every app, by id.
    pub async fn list_apps(&self) -> Result<Vec<App>> {
        let rows: Vec<AppRow> = on_db!(self, pool, {
            sqlx::query_as("SELECT id, name, created_at FROM apps ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(App::try_from).collect()
    }

    /// One app, or [`Error::AppNotFound`].
    pub async fn get_app(&self, id: &str) -> Result<App> {
        let row: Option<AppRow> = on_db!(self, pool, {
            sqlx::query_as("SELECT id, name, created_at FROM apps WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| Error::AppNotFound(id.to_owned()))?
            .try_into()
    }

    /// Deletes an app and, through foreign-key cascades, everything it owns: keys,
    /// topics, events, triggers, outbox rows, dead letters and secrets. The same
    /// transaction tells every node (cluster feed) to forget the app's keys and end its
    /// streams.
    pub async fn delete_app(&self, id: &str) -> Result<()> {
        let deleted = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted > 0 {
                tx.notify_feed(app_deleted_payload(id)).await?;
            }
            tx.commit().await?;
            deleted
        });
        if deleted == 0 {
            return Err(Error::AppNotFound(id.to_owned()));
        }
        Ok(())
    }
}
