//! Instance-wide settings and one-time markers, such as "the first instance key was
//! created", kept in the `settings` table.

use crate::db::Db;
use crate::error::Result;
use crate::on_db;

/// The marker claimed by the node that creates the first instance key.
pub const BOOTSTRAP_MARKER: &str = "bootstrap.instance_key";

impl Db {
    /// The value of setting `name`, if set.
    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let value = on_db!(self, pool => {
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(value)
    }
}
