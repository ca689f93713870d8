//! API keys: generation, hashing and storage.
//!
//! A key is `pk_` followed by 43 base64url characters (32 random bytes). Only its
//! SHA-256 digest is stored; the secret is returned once, at creation. A short display
//! prefix (`pk_` and 8 characters) lets people tell keys apart in lists.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use picloud_shared::ids::{random_bytes, random_id};
use picloud_shared::names::check_printable;
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, Scope, ScopeSet};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, Row};

use crate::cluster_feed::FeedNotify;
use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::settings::BOOTSTRAP_MARKER;
use picloud_shared::cluster::key_revoked_payload;

/// Every key secret starts with this.
pub const KEY_PREFIX: &str = "pk_";
/// Length of a key secret: the prefix and 43 base64url characters.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 43;
const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;
/// Longest accepted key name.
pub const MAX_KEY_NAME_LEN: usize = 100;

/// SHA-256 of a key secret, the form keys are stored and looked up in.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `candidate` has the shape of a key secret; anything else is rejected
/// without touching the database.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == KEY_LEN
        && candidate.starts_with(KEY_PREFIX)
        && candidate[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Stable id, used to revoke the key.
    pub id: String,
    /// The owning app; `null` for instance keys.
    #[schema(value_type = Option<String>)]
    pub app: Option<AppId>,
    /// What the key is for.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last successful use, ms since the epoch, updated at most every few seconds.
    pub last_used_at: Option<i64>,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A freshly created key and its secret, which is never available again.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret to hand to the caller, once.
    pub secret: String,
}

crate::db::row_struct! {
    struct KeyRow {
        id: String,
        app_id: Option<String>,
        name: String,
        prefix: String,
        scopes: String,
        created_at: i64,
        last_used_at: Option<i64>,
        revoked_at: Option<i64>,
    }
}

impl KeyRow {
    fn into_key(self) -> Result<ApiKey> {
        let app = self
            .app_id
            .as_deref()
            .map(AppId::parse)
            .transpose()
            .map_err(|e| Error::Corrupt(format!("key {}: app id: {}", self.id, e.0)))?;
        Ok(ApiKey {
            id: self.id,
            app,
            name: self.name,
            prefix: self.prefix,
            scopes: ScopeSet::from_db_string(&self.scopes).iter().collect(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

const KEY_COLUMNS: &str = "id, app_id, name, prefix, scopes, created_at, last_used_at, revoked_at";

/// Checks a requested key's name and scopes: app keys hold app scopes only, instance
/// keys hold exactly `instance:admin`.
fn validate_new_key(app: Option<&AppId>, name: &str, scopes: ScopeSet) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(Error::Invalid(format!(
            "key name must be 1 to {MAX_KEY_NAME_LEN} characters"
        )));
    }
    check_printable("key name", name).map_err(|e| Error::Invalid(e.0))?;
    match app {
        None if scopes != [Scope::InstanceAdmin].into_iter().collect() => Err(Error::Invalid(
            "instance keys have exactly the scope 'instance:admin'".into(),
        )),
        Some(_) if scopes.is_empty() => Err(Error::Invalid("scopes must not be empty".into())),
        Some(_) if scopes.contains(Scope::InstanceAdmin) => Err(Error::Invalid(
            "app keys cannot hold 'instance:admin'; create an instance key instead".into(),
        )),
        _ => Ok(()),
    }
}

/// The INSERT for a new key, to run on a pool or inside a transaction.
macro_rules! insert_key {
    ($key:expr, $hash:expr, $scopes:expr) => {
        sqlx::query(
            "INSERT INTO api_keys (id, app_id, name, prefix, secret_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&$key.id)
        .bind($key.app.as_ref().map(AppId::as_str))
        .bind(&$key.name)
        .bind(&$key.prefix)
        .bind(&$hash[..])
        .bind($scopes.to_db_string())
        .bind($key.created_at)
    };
}

/// A new key record and its secret, not yet stored.
fn new_key(app: Option<&AppId>, name: &str, scopes: ScopeSet) -> (ApiKey, String) {
    let secret = format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let key = ApiKey {
        id: random_id("key"),
        app: app.cloned(),
        name: name.trim().to_owned(),
        prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
        scopes: scopes.iter().collect(),
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    (key, secret)
}

impl Db {
    /// On the very first start of an instance (no instance key was ever bootstrapped and
    /// none exists), creates its first instance key and returns it; `None` otherwise. The marker and the key commit together, so of
    /// several nodes starting at once exactly one creates it, and a crash leaves neither.
    pub async fn bootstrap_instance_key(&self) -> Result<Option<CreatedKey>> {
        let scopes: ScopeSet = [Scope::InstanceAdmin].into_iter().collect();
        let (key, secret) = new_key(None, "bootstrap", scopes);
        let hash = hash_secret(&secret);
        let created = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let claimed = sqlx::query(
                "INSERT INTO settings (name, value, updated_at)
                 SELECT $1, $2, $3
                 WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE app_id IS NULL)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(BOOTSTRAP_MARKER)
            .bind(&key.id)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                insert_key!(&key, &hash, scopes).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            claimed
        });
        Ok(created.then_some(CreatedKey { key, secret }))
    }

    /// Creates a key for `app` (or an instance key for `None`) and returns its secret.
    pub async fn create_key(
        &self,
        app: Option<&AppId>,
        name: &str,
        scopes: ScopeSet,
    ) -> Result<CreatedKey> {
        validate_new_key(app, name, scopes)?;
        if let Some(app) = app {
            self.get_app(app.as_str()).await?;
        }
        let (key, secret) = new_key(app, name, scopes);
        let hash = hash_secret(&secret);
        let inserted = on_db!(self, pool, {
            insert_key!(&key, &hash, scopes)
                .execute(pool)
                .await
                .map(drop)
        });
        match inserted {
            Ok(_) => Ok(CreatedKey { key, secret }),
            // The app was deleted between the check and the insert.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(
                Error::AppNotFound(app.map(|a| a.to_string()).unwrap_or_default()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// The keys of `app` (instance keys for `None`), revoked ones included, newest first.
    pub async fn list_keys(&self, app: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = on_db!(self, pool, {
            match app {
                Some(app) => sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE app_id = $1 ORDER BY created_at DESC, id"
                ))
                .bind(app)
                .fetch_all(pool)
                .await?,
                None => sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE app_id IS NULL ORDER BY created_at DESC, id"
                ))
                .fetch_all(pool)
                .await?,
            }
        });
        rows.into_iter().map(KeyRow::into_key).collect()
    }

    /// Revokes key `id` of `app` (an instance key for `None`). Revoking twice keeps the
    /// first revocation time. [`Error::KeyNotFound`] if the key is not in that scope.
    /// The same transaction tells every node (cluster feed) to forget the key.
    pub async fn revoke_key(&self, app: Option<&str>, id: &str) -> Result<ApiKey> {
        let now = now_ms();
        let row: Option<KeyRow> = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let row: Option<KeyRow> = sqlx::query_as(&format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
                 WHERE id = $2 AND ((app_id IS NULL AND $3 IS NULL) OR app_id = $3)
                 RETURNING {KEY_COLUMNS}"
            ))
            .bind(now)
            .bind(id)
            .bind(app)
            .fetch_optional(&mut *tx)
            .await?;
            if row.is_some() {
                tx.notify_feed(key_revoked_payload(id)).await?;
            }
            tx.commit().await?;
            row
        });
        row.ok_or_else(|| Error::KeyNotFound(id.to_owned()))?
            .into_key()
    }

    /// The unrevoked key whose secret hashes to `hash`, if any, with its stored digest
    /// and its app's creation time (which tells an app from a later one with its id).
    pub async fn find_active_key(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(ApiKey, Vec<u8>, Option<i64>)>> {
        let found = on_db!(self, pool, {
            let row = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS}, secret_hash,
                    (SELECT created_at FROM apps WHERE apps.id = api_keys.app_id) AS app_created_at
                 FROM api_keys
                 WHERE secret_hash = $1 AND revoked_at IS NULL"
            ))
            .bind(&hash[..])
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Some((
                    KeyRow::from_row(&row)?,
                    row.try_get("secret_hash")?,
                    row.try_get("app_created_at")?,
                )),
                None => None,
            }
        });
        found
            .map(|(key, secret_hash, app_created_at)| {
                Ok((key.into_key()?, secret_hash, app_created_at))
            })
            .transpose()
    }

    /// Stores last-use times gathered in memory, one statement per key, never moving a
    /// time backwards.
    pub async fn record_key_use(&self, uses: &[(String, i64)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            for (id, at) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                )
                .bind(*at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape() {
        let (_, secret) = new_key(None, "k", ScopeSet::EMPTY);
        assert_eq!(secret.len(), KEY_LEN);
        assert!(looks_like_key(&secret));
        assert!(!looks_like_key("pk_short"));
        assert!(!looks_like_key(&secret.replace("pk_", "xx_")));
        assert!(!looks_like_key(&format!("{}!", &secret[..KEY_LEN - 1])));
    }

    #[test]
    fn new_key_rules() {
        let app = AppId::parse("shop").unwrap();
        let instance: ScopeSet = [Scope::InstanceAdmin].into_iter().collect();
        let read: ScopeSet = [Scope::AppRead].into_iter().collect();
        assert!(validate_new_key(None, "ops", instance).is_ok());
        assert!(validate_new_key(None, "ops", read).is_err());
        assert!(validate_new_key(Some(&app), "web", read).is_ok());
        assert!(validate_new_key(Some(&app), "web", instance).is_err());
        assert!(validate_new_key(Some(&app), "web", ScopeSet::EMPTY).is_err());
        assert!(validate_new_key(Some(&app), " ", read).is_err());
    }
}
