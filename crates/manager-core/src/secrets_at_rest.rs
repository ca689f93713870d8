//! The database's secrets at rest: unlocking a [`Db`] with the master key at start, and
//! rotating to a new master key.
//!
//! Unlocking checks the key against a check value in `settings` (a known plaintext
//! sealed under the key in use), so a node started with another key fails at once
//! instead of minting new secrets or failing every delivery, and seals in place any
//! secret an earlier version stored in plaintext. Storage code then seals on write and
//! opens on read through [`Db::master_key`]; everything above it sees plaintext.

use std::sync::{Arc, RwLock};

use crate::db::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::on_tx;
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
        let pass = Reseal {
            from,
            to,
            rekey: from.id() != to.id(),
            done: Resealed::default(),
        };
        let _gate = self.write_gate().await;
        let mut tx = self.begin_write_tx().await?;
        let resealed = pass.run(&mut tx).await?;
        tx.commit().await?;
        Ok(resealed)
    }
}

/// One reseal pass from one master key to another (possibly the same), counting what it
/// changed.
struct Reseal<'k> {
    from: &'k MasterKey,
    to: &'k MasterKey,
    /// Whether `to` is another key, so sealed secrets are sealed again.
    rekey: bool,
    done: Resealed,
}

impl Reseal<'_> {
    async fn run(mut self, tx: &mut WriteTx) -> Result<Resealed> {
        self.check_key(tx).await?;
        self.triggers(tx).await?;
        self.app_secrets(tx).await?;
        self.source_urls(tx).await?;
        Ok(self.done)
    }

    /// Checks `from` against the stored check value (recording one if there is none),
    /// and records `to`'s when rekeying.
    async fn check_key(&self, tx: &mut WriteTx) -> Result<()> {
        let check_aad = Aad::key_check();
        let now = picloud_shared::time::now_ms();
        let select_check = "SELECT value FROM settings WHERE name = $1";
        let check: String = on_tx!(tx, conn, {
            // Nodes starting together with different keys: one insert wins and the
            // others are measured against it.
            sqlx::query(
                "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(KEY_CHECK_SETTING)
            .bind(self.from.seal(&check_aad, KEY_CHECK_PLAINTEXT))
            .bind(now)
            .execute(&mut **conn)
            .await?;
            sqlx::query_scalar(select_check)
                .bind(KEY_CHECK_SETTING)
                .fetch_one(&mut **conn)
                .await?
        });
        match self.from.open(&check_aad, check.as_bytes()) {
            Ok(opened) if opened.as_slice() == KEY_CHECK_PLAINTEXT => {}
            _ => {
                return Err(Error::MasterKeyMismatch {
                    stored: sealed_key_id(check.as_bytes())
                        .unwrap_or("unknown")
                        .to_owned(),
                    given: self.from.id().to_owned(),
                })
            }
        }
        if self.rekey {
            on_tx!(tx, conn, {
                sqlx::query("UPDATE settings SET value = $2, updated_at = $3 WHERE name = $1")
                    .bind(KEY_CHECK_SETTING)
                    .bind(self.to.seal(&check_aad, KEY_CHECK_PLAINTEXT))
                    .bind(now)
                    .execute(&mut **conn)
                    .await?;
            });
        }
        Ok(())
    }

    /// `stored` sealed under `to`, counted; `None` when it needs no change.
    fn reseal_one(&mut self, aad: &Aad, stored: &[u8]) -> Result<Option<String>> {
        if !is_sealed(stored) {
            self.done.plaintext += 1;
            return Ok(Some(self.to.seal(aad, stored)));
        }
        let opened = self.from.open(aad, stored)?;
        if !self.rekey {
            return Ok(None);
        }
        self.done.rekeyed += 1;
        Ok(Some(self.to.seal(aad, &opened)))
    }

    /// Webhook signing secrets, current and previous.
    async fn triggers(&mut self, tx: &mut WriteTx) -> Result<()> {
        let triggers: Vec<(String, String, Option<String>)> = on_tx!(tx, conn, {
            sqlx::query_as("SELECT id, secret, previous_secret FROM triggers")
                .fetch_all(&mut **conn)
                .await?
        });
        for (id, secret, previous) in triggers {
            let aad = Aad::trigger_secret(&id);
            let new_secret = self.reseal_one(&aad, secret.as_bytes())?;
            let new_previous = match &previous {
                Some(previous) => self.reseal_one(&aad, previous.as_bytes())?,
                None => None,
            };
            if new_secret.is_none() && new_previous.is_none() {
                continue;
            }
            on_tx!(tx, conn, {
                sqlx::query(
                    "UPDATE triggers SET secret = COALESCE($2, secret),
                         previous_secret = COALESCE($3, previous_secret)
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(new_secret)
                .bind(new_previous)
                .execute(&mut **conn)
                .await?;
            });
        }
        Ok(())
    }

    /// Realtime signing keys.
    async fn app_secrets(&mut self, tx: &mut WriteTx) -> Result<()> {
        let keys: Vec<(String, String, String, Vec<u8>)> = on_tx!(tx, conn, {
            sqlx::query_as("SELECT app_id, purpose, kid, secret FROM app_secrets")
                .fetch_all(&mut **conn)
                .await?
        });
        for (app, purpose, kid, secret) in keys {
            let aad = Aad::app_secret(&app, &purpose, &kid);
            let Some(new_secret) = self.reseal_one(&aad, &secret)? else {
                continue;
            };
            on_tx!(tx, conn, {
                sqlx::query(
                    "UPDATE app_secrets SET secret = $4
                     WHERE app_id = $1 AND purpose = $2 AND kid = $3",
                )
                .bind(&app)
                .bind(&purpose)
                .bind(&kid)
                .bind(new_secret.as_bytes())
                .execute(&mut **conn)
                .await?;
            });
        }
        Ok(())
    }

    /// Outbox sources' database URLs. The table arrived with migration 8: a database
    /// unlocked at an older schema (a test of the migrations) has none to reseal.
    async fn source_urls(&mut self, tx: &mut WriteTx) -> Result<()> {
        let present: bool = match &mut *tx {
            WriteTx::Sqlite(conn) => sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'sources'",
            )
            .fetch_one(&mut **conn)
            .await?,
            WriteTx::Postgres(conn) => {
                sqlx::query_scalar("SELECT to_regclass('sources') IS NOT NULL")
                    .fetch_one(&mut **conn)
                    .await?
            }
        };
        if !present {
            return Ok(());
        }
        let sources: Vec<(String, String)> = on_tx!(tx, conn, {
            sqlx::query_as("SELECT id, database_url FROM sources")
                .fetch_all(&mut **conn)
                .await?
        });
        for (id, url) in sources {
            let Some(new_url) = self.reseal_one(&Aad::source_url(&id), url.as_bytes())? else {
                continue;
            };
            on_tx!(tx, conn, {
                sqlx::query("UPDATE sources SET database_url = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(new_url)
                    .execute(&mut **conn)
                    .await?;
            });
        }
        Ok(())
    }
}
