//! Where `picloud` gets the master key that stored secrets are sealed under:
//! `PICLOUD_MASTER_KEY` (`--master-key`), or else the `master.key` file in the data dir,
//! created 0600 on first start. Only the key's id is ever logged or printed.

use std::path::PathBuf;

use picloud_manager_core::secret_box::{MasterKey, KEY_FILE_NAME};
use picloud_manager_core::{Db, Error};

use crate::config::DatabaseArgs;

/// Where a master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `PICLOUD_MASTER_KEY` or `--master-key`.
    Setting,
    /// The key file at this path.
    File(PathBuf),
}

/// The data dir's key file.
pub fn key_file(args: &DatabaseArgs) -> PathBuf {
    args.data_dir.join(KEY_FILE_NAME)
}

/// The configured master key and its source. Without a configured key, reads the key
/// file, creating it first if `create` is set (what a first start does).
pub fn resolve(args: &DatabaseArgs, create: bool) -> Result<(MasterKey, KeySource), Error> {
    if let Some(key) = &args.master_key {
        return Ok((key.clone(), KeySource::Setting));
    }
    let path = key_file(args);
    let key = if create {
        let (key, created) = MasterKey::load_or_create(&path)?;
        if created {
            tracing::warn!(
                key_id = key.id(),
                file = %path.display(),
                "created a new master key file: back it up apart from the database (a backup \
                 without it cannot sign webhooks or verify tokens); nodes sharing a database \
                 need the same key (PICLOUD_MASTER_KEY)"
            );
        }
        key
    } else {
        MasterKey::read_file(&path)?
    };
    Ok((key, KeySource::File(path)))
}

/// Unlocks `db`'s secrets at start: resolves the key (creating the key file on first
/// start), checks it against the database and seals any secret still in plaintext. A key
/// the database's secrets are not sealed under is an error, never a reason to mint new
/// secrets.
pub async fn unlock(db: &Db, args: &DatabaseArgs) -> Result<(), Error> {
    let (key, source) = resolve(args, true)?;
    let key_id = key.id().to_owned();
    db.unlock_secrets(key).await?;
    match source {
        KeySource::Setting => {
            tracing::info!(key_id, source = "PICLOUD_MASTER_KEY", "secrets unlocked")
        }
        KeySource::File(path) => {
            tracing::info!(key_id, source = %path.display(), "secrets unlocked")
        }
    }
    Ok(())
}
