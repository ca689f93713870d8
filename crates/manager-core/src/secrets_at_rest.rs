//! The database's secrets at rest: unlocking a [`Db`] with the master key at start, and
//! rotating to a new master key.
//!
//! Unlocking checks the key against a check value in `settings` (a known plaintext
//! sealed under the key in use), so a node started with another key fails at once
//! instead of minting new secrets or failing every delivery, and seals in place any
//! secret an earlier version stored in plaintext. Storage code then seals on write and
//! opens on read through [`Db::master_key`]; everything above it sees plaintext.

use std::sync::{Arc, RwLock};

use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::secret_box::{is_sealed, sealed_key_id, Aad, MasterKey};

/// The `settings` row holding the key check value.
pub const KEY_CHECK_SETTING: &str = "secrets.master_key_check";
/// What the check value seals.
const KEY_CHECK_PLAINTEXT: &[u8] = b"picloud master key check";

/// The master key a [`Db`] seals and opens secrets with, once unlocked. Clones of a
/// `Db` share it.
#[derive(Clone, Default)]
pub struct Vault(Arc<RwLock<Option<Arc<MasterKey>>>>);

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0.read().expect("vault lock") {
            Some(key) => write!(f, "Vault({})", key.id()),
            None => f.write_str("Vault(locked)"),
        }
    }
}

/// What a reseal pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Secrets found in plaintext and sealed.
    pub plaintext: usize,
    /// Sealed secrets sealed again under another key.
    pub rekeyed: usize,
}

impl Db {
    fn vault(&self) -> &Vault {
        &self.state().vault
    }

    /// The master key secrets are sealed under; [`Error::SecretsLocked`] before
    /// [`Db::unlock_secrets`].
    pub fn master_key(&self) -> Result<Arc<MasterKey>> {
        self.vault()
            .0
            .read()
            .expect("vault lock")
            .clone()
            .ok_or(Error::SecretsLocked)
    }

    /// Unlocks this database's secrets with `key`: fails with
    /// [`Error::MasterKeyMismatch`] if its secrets are sealed under another key,
    /// records the key's check value on first use, and seals any secret stored in
    /// plaintext (by a version before sealing). Idempotent; run at every start.
    pub async fn unlock_secrets(&self, key: MasterKey) -> Result<Resealed> {
        let resealed = self.reseal(&key, &key).await?;
        if resealed.plaintext > 0 {
            tracing::info!(
                count = resealed.plaintext,
                key_id = key.id(),
                "sealed secrets an earlier version stored in plaintext"
            );
        }
        *self.vault().0.write().expect("vault lock") = Some(Arc::new(key));
        Ok(resealed)
    }

    /// Seals every secret again under `new`, in one transaction, and records `new`'s
    /// check value; from then on only `new` unlocks the database. The database must be
    /// unlocked with the current key first.
    pub async fn rotate_master_key(&self, new: MasterKey) -> Result<Resealed> {
        let old = self.master_key()?;
        let resealed = self.reseal(&old, &new).await?;
        tracing::info!(from = old.id(), to = new.id(), "master key rotated");
        *self.vault().0.write().expect("vault lock") = Some(Arc::new(new));
        Ok(resealed)
    }

    /// In one write transaction: checks `from` against the check value (writing one for
    /// `to` if there is none, or if `to` is another key), then seals every plaintext
    /// secret under `to` and, when `to` is not `from`, every sealed one too.
    async fn reseal(&self, from: &MasterKey, to: &MasterKey) -> Result<Resealed> {
        let rekey = from.id() != to.id();
        let check_aad = Aad::key_check();
        let verify = |stored: &str| match from.open(&check_aad, stored.as_bytes()) {
            Ok(opened) if opened.as_slice() == KEY_CHECK_PLAINTEXT => Ok(()),
            _ => Err(Error::MasterKeyMismatch {
                stored: sealed_key_id(stored.as_bytes())
                    .unwrap_or("unknown")
                    .to_owned(),
                given: from.id().to_owned(),
            }),
        };
        let reseal_one = |aad: &Aad, stored: &[u8]| -> Result<Option<String>> {
            if !is_sealed(stored) {
                return Ok(Some(to.seal(aad, stored)));
            }
            let opened = from.open(aad, stored)?;
            Ok(rekey.then(|| to.seal(aad, &opened)))
        };
        let now = picloud_shared::time::now_ms();
        let mut resealed = Resealed::default();
        let _gate = self.write_gate().await;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let select_check = "SELECT value FROM settings WHERE name = $1";
            let check: Option<String> = sqlx::query_scalar(select_check)
                .bind(KEY_CHECK_SETTING)
                .fetch_optional(&mut *tx)
                .await?;
            let check = match check {
                Some(check) => check,
                None => {
                    // Nodes starting together with different keys: one insert wins and
                    // the others are measured against it.
                    sqlx::query(
                        "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(KEY_CHECK_SETTING)
                    .bind(from.seal(&check_aad, KEY_CHECK_PLAINTEXT))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query_scalar(select_check)
                        .bind(KEY_CHECK_SETTING)
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            verify(&check)?;
            if rekey {
                sqlx::query("UPDATE settings SET value = $2, updated_at = $3 WHERE name = $1")
                    .bind(KEY_CHECK_SETTING)
                    .bind(to.seal(&check_aad, KEY_CHECK_PLAINTEXT))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }

            let triggers: Vec<(String, String, Option<String>)> =
                sqlx::query_as("SELECT id, secret, previous_secret FROM triggers")
                    .fetch_all(&mut *tx)
                    .await?;
            for (id, secret, previous) in triggers {
                let aad = Aad::trigger_secret(&id);
                let new_secret = reseal_one(&aad, secret.as_bytes())?;
                let new_previous = match &previous {
                    Some(previous) => reseal_one(&aad, previous.as_bytes())?,
                    None => None,
                };
                if new_secret.is_none() && new_previous.is_none() {
                    continue;
                }
                for (old, new) in [
                    (Some(&secret), &new_secret),
                    (previous.as_ref(), &new_previous),
                ] {
                    match (old, new) {
                        (Some(old), Some(_)) if is_sealed(old.as_bytes()) => resealed.rekeyed += 1,
                        (Some(_), Some(_)) => resealed.plaintext += 1,
                        _ => {}
                    }
                }
                sqlx::query(
                    "UPDATE triggers SET secret = COALESCE($2, secret),
                         previous_secret = COALESCE($3, previous_secret)
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(new_secret)
                .bind(new_previous)
                .execute(&mut *tx)
                .await?;
            }

            let keys: Vec<(String, String, String, Vec<u8>)> =
                sqlx::query_as("SELECT app_id, purpose, kid, secret FROM app_secrets")
                    .fetch_all(&mut *tx)
                    .await?;
            for (app, purpose, kid, secret) in keys {
                let Some(new_secret) = reseal_one(&Aad::app_secret(&app, &purpose, &kid), &secret)?
                else {
                    continue;
                };
                if is_sealed(&secret) {
                    resealed.rekeyed += 1;
                } else {
                    resealed.plaintext += 1;
                }
                sqlx::query(
                    "UPDATE app_secrets SET secret = $4
                     WHERE app_id = $1 AND purpose = $2 AND kid = $3",
                )
                .bind(&app)
                .bind(&purpose)
                .bind(&kid)
                .bind(new_secret.into_bytes())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(resealed)
    }
}
