//! The administrative CLI commands. They work on the database directly (like
//! PocketBase's `superuser` command), so they also work before any key or admin exists.
//! With `--json`, the last line printed is one JSON object.

use std::net::SocketAddr;

use picloud_manager_core::admins::{hash_password, normalize_email, validate_password};
use picloud_manager_core::api_keys::{ApiKey, CreatedKey};
use picloud_manager_core::db::redact_url;
use picloud_manager_core::password_gate::PasswordGate;
use picloud_manager_core::secret_box::MasterKey;
use picloud_manager_core::Db;
use picloud_shared::{AppId, Scope, ScopeSet};
use serde_json::json;

use crate::config::{
    AdminsCommand, AppsCommand, DatabaseArgs, KeyOwner, KeysCommand, SecretsCommand,
    SourcesCommand, DEFAULT_BIND,
};
use crate::master_key::{self, KeySource};

/// The database `args` names, for telling the user which one a command used: the
/// absolute path of a SQLite file, or the URL without its password.
pub fn describe_database(args: &DatabaseArgs) -> String {
    match args.sqlite_file() {
        Some(file) => format!("sqlite://{}", file.display()),
        None => redact_url(&args.url()),
    }
}

/// Fails when `args` names a SQLite file that does not exist: only `serve` and `migrate`
/// create a database. (A PostgreSQL database is never created by connecting.)
pub fn require_existing_database(args: &DatabaseArgs) -> anyhow::Result<()> {
    let Some(file) = args.sqlite_file() else {
        return Ok(());
    };
    if file.exists() {
        return Ok(());
    }
    let source = match &args.database_url {
        Some(_) => "from --database-url".to_owned(),
        None => format!(
            "in the data dir {}",
            std::path::absolute(&args.data_dir)
                .unwrap_or_else(|_| args.data_dir.clone())
                .display()
        ),
    };
    anyhow::bail!(
        "no PiCloud database at {} ({source}). Run this command where `picloud serve` \
         runs, or point it at the server's database with --data-dir / --database-url \
         (PICLOUD_DATA_DIR / PICLOUD_DATABASE_URL); `picloud migrate` creates a new one",
        file.display(),
    )
}

/// Runs `picloud apps …`.
pub async fn apps(db: &Db, command: AppsCommand) -> anyhow::Result<()> {
    match command {
        AppsCommand::Create { id, name, json } => {
            let name = name.unwrap_or_else(|| id.to_string());
            let app = db.create_app(&id, &name).await?;
            if json {
                println!("{}", serde_json::to_string(&app)?);
            } else {
                println!("created app {} ({})", app.id, app.name);
            }
        }
        AppsCommand::List { json } => {
            let apps = db.list_apps().await?;
            if json {
                println!("{}", json!({ "apps": apps }));
            } else if apps.is_empty() {
                println!("no apps yet: picloud apps create ID");
            } else {
                let rows = apps
                    .into_iter()
                    .map(|app| vec![app.id.to_string(), app.name])
                    .collect();
                print_table(&["ID", "NAME"], rows);
            }
        }
        AppsCommand::Delete { id, json } => {
            db.delete_app(id.as_str()).await?;
            if json {
                println!("{}", json!({ "deleted": id }));
            } else {
                println!("deleted app {id} and everything it owned");
            }
        }
    }
    Ok(())
}

/// Runs `picloud keys …`.
pub async fn keys(db: &Db, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            owner,
            name,
            scopes,
            json,
        } => {
            let app = owner_app(&owner);
            let scopes: ScopeSet = if app.is_none() && scopes.is_empty() {
                [Scope::InstanceAdmin].into_iter().collect()
            } else {
                scopes.into_iter().collect()
            };
            let created = db.create_key(app, &name, scopes).await?;
            print_created_key(&created, json)?;
        }
        KeysCommand::List { owner, json } => {
            let keys = db.list_keys(owner_app(&owner).map(AppId::as_str)).await?;
            if json {
                println!("{}", json!({ "keys": keys }));
            } else {
                print_key_table(&keys);
            }
        }
        KeysCommand::Revoke { id, owner, json } => {
            let key = db
                .revoke_key(owner_app(&owner).map(AppId::as_str), &id)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&key)?);
            } else {
                println!("revoked key {} ({})", key.id, key.name);
            }
        }
    }
    Ok(())
}

/// `picloud admins create`: the password from stdin or a prompt, hashed off the runtime.
async fn create_admin(
    db: &Db,
    email: &str,
    password_stdin: bool,
    json: bool,
) -> anyhow::Result<()> {
    let email = normalize_email(email)?;
    let password = if password_stdin {
        read_password_line()?
    } else {
        prompt_new_password()?
    };
    validate_password(&password)?;
    let hash = PasswordGate::per_core()
        .run(move || hash_password(&password))
        .await??;
    let admin = db.create_admin(&email, &hash).await?;
    if json {
        println!("{}", serde_json::to_string(&admin)?);
    } else {
        println!(
            "created admin {}; sign in to the dashboard at {} (the address \
             `picloud serve` listens on: --bind / PICLOUD_BIND, default {DEFAULT_BIND})",
            admin.admin.email,
            dashboard_url(std::env::var("PICLOUD_BIND").ok().as_deref())
        );
    }
    Ok(())
}

/// `picloud admins list`.
async fn list_admins(db: &Db, json: bool) -> anyhow::Result<()> {
    let admins = db.list_admins().await?;
    if json {
        println!("{}", json!({ "admins": admins }));
    } else if admins.is_empty() {
        println!("no admins yet: picloud admins create --email EMAIL");
    } else {
        let now = picloud_shared::time::now_ms();
        let rows = admins
            .into_iter()
            .map(|admin| {
                let state = match admin.locked_until {
                    Some(until) if until > now => "locked",
                    _ => "active",
                };
                vec![admin.admin.id, admin.admin.email, state.to_owned()]
            })
            .collect();
        print_table(&["ID", "EMAIL", "STATE"], rows);
    }
    Ok(())
}

/// Runs `picloud admins …`.
pub async fn admins(db: &Db, command: AdminsCommand) -> anyhow::Result<()> {
    match command {
        AdminsCommand::Create {
            email,
            password_stdin,
            json,
        } => create_admin(db, &email, password_stdin, json).await?,
        AdminsCommand::List { json } => list_admins(db, json).await?,
        AdminsCommand::Delete { email, json } => {
            let admin = db.delete_admin(&email).await?;
            if json {
                println!("{}", json!({ "deleted": admin.email }));
            } else {
                println!("deleted admin {} and ended their sessions", admin.email);
            }
        }
        AdminsCommand::Unlock { email, json } => {
            let before = db.unlock_admin(&email).await?;
            let now = picloud_shared::time::now_ms();
            let was_locked_until = before.locked_until.filter(|until| *until > now);
            if json {
                println!(
                    "{}",
                    json!({
                        "unlocked": before.admin.email,
                        "cleared_failed_attempts": before.failed_attempts,
                        "was_locked_until": was_locked_until,
                    })
                );
            } else {
                let lock = match was_locked_until {
                    Some(until) => format!(
                        "; it was locked for {} more s",
                        (until.saturating_sub(now) as u64).div_ceil(1000)
                    ),
                    None => String::new(),
                };
                println!(
                    "unlocked admin {}: cleared {} failed sign-ins{lock}",
                    before.admin.email, before.failed_attempts
                );
            }
        }
    }
    Ok(())
}

/// Runs `picloud secrets …`.
pub async fn secrets(
    db: &Db,
    database: &DatabaseArgs,
    command: SecretsCommand,
) -> anyhow::Result<()> {
    match command {
        SecretsCommand::RotateMasterKey { new_key_file, json } => {
            let (current, source) = master_key::resolve(database, false)?;
            db.unlock_secrets(current.clone()).await?;
            let new = match &new_key_file {
                Some(path) => MasterKey::read_file(path)?,
                None => MasterKey::generate(),
            };
            anyhow::ensure!(
                new.id() != current.id(),
                "the new key is the key in use ({})",
                current.id()
            );
            // A generated key, or a key file in use, is replaced by the new key. It is
            // written before the database depends on it, so a failure leaves no
            // database sealed under a key that exists nowhere.
            let key_file = master_key::key_file(database);
            let write_file = new_key_file.is_none() || matches!(source, KeySource::File(_));
            let staged = key_file.with_extension("key.new");
            if write_file {
                let _ = std::fs::remove_file(&staged);
                new.write_new_file(&staged)?;
            }
            let resealed = match db.rotate_master_key(new.clone()).await {
                Ok(resealed) => resealed,
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    return Err(e.into());
                }
            };
            if write_file {
                std::fs::rename(&staged, &key_file).map_err(|e| {
                    anyhow::anyhow!(
                        "the database is now sealed under the new key, which is in {}; \
                         moving it to {} failed: {e}",
                        staged.display(),
                        key_file.display()
                    )
                })?;
            }
            let count = resealed.rekeyed + resealed.plaintext;
            if json {
                println!(
                    "{}",
                    json!({
                        "old_key_id": current.id(),
                        "new_key_id": new.id(),
                        "resealed": count,
                        "key_file": write_file.then(|| key_file.display().to_string()),
                    })
                );
            } else {
                println!(
                    "rotated the master key {} -> {}: {count} secrets sealed under the new key",
                    current.id(),
                    new.id()
                );
                if write_file {
                    println!("the new key is in {}", key_file.display());
                }
            }
            if source == KeySource::Setting {
                eprintln!(
                    "PICLOUD_MASTER_KEY still holds the old key: set it to the new key on every \
                     node before starting them"
                );
            }
        }
    }
    Ok(())
}

/// The first line of stdin, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks for a new password twice on the terminal, without echo.
fn prompt_new_password() -> anyhow::Result<String> {
    let password =
        rpassword::prompt_password("Password (at least 10 characters): ").map_err(|e| {
            anyhow::anyhow!(
                "could not read a password from the terminal ({e}); use --password-stdin"
            )
        })?;
    let again = rpassword::prompt_password("Repeat it: ")?;
    anyhow::ensure!(password == again, "the passwords differ");
    Ok(password)
}

fn owner_app(owner: &KeyOwner) -> Option<&AppId> {
    if owner.instance {
        None
    } else {
        owner.app.as_ref()
    }
}

fn print_created_key(created: &CreatedKey, json: bool) -> anyhow::Result<()> {
    let key = &created.key;
    if json {
        println!(
            "{}",
            json!({
                "id": key.id, "key": created.secret, "prefix": key.prefix,
                "scopes": key.scopes, "name": key.name, "app": key.app,
            })
        );
    } else {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "created key {} ({}) with scopes: {}",
            key.id,
            key.name,
            scopes.join(" ")
        );
        println!("secret (shown only now, store it safely):");
        println!("{}", created.secret);
    }
    Ok(())
}

fn print_key_table(keys: &[ApiKey]) {
    if keys.is_empty() {
        println!("no keys");
        return;
    }
    let rows = keys
        .iter()
        .map(|key| {
            let state = if key.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            };
            let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
            vec![
                key.id.clone(),
                key.prefix.clone(),
                key.name.clone(),
                state.to_owned(),
                scopes.join(" "),
            ]
        })
        .collect();
    print_table(&["ID", "PREFIX", "NAME", "STATE", "SCOPES"], rows);
}

/// Prints `rows` under `headers`, each column as wide as its widest cell (counted in
/// characters), so long names never push a row out of line.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == last {
                    (*cell).to_owned()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        println!("{}", padded.join("  "));
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The dashboard's address for a server bound to `bind` (`PICLOUD_BIND`, else the
/// default): a wildcard bind is reached on loopback from this machine.
fn dashboard_url(bind: Option<&str>) -> String {
    let bind = bind.unwrap_or(DEFAULT_BIND);
    match bind.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            format!("http://127.0.0.1:{}{}", addr.port(), crate::dashboard::BASE)
        }
        Ok(addr) => format!("http://{addr}{}", crate::dashboard::BASE),
        Err(_) => format!("http://{bind}{}", crate::dashboard::BASE),
    }
}

/// `picloud sources …`: works on the app's database only, never PiCloud's.
pub async fn sources(command: SourcesCommand) -> anyhow::Result<()> {
    use picloud_manager_core::sources::app_schema;
    match command {
        SourcesCommand::Sql { schema } => print!("{}", app_schema::sql(&schema)?),
        SourcesCommand::Install {
            database_url,
            schema,
        } => {
            let installed = app_schema::install(&database_url, &schema).await?;
            if installed.from == installed.to {
                println!("schema {schema} is up to date (version {})", installed.to);
            } else {
                println!(
                    "schema {schema} installed: version {} -> {}",
                    installed.from, installed.to
                );
            }
        }
    }
    Ok(())
}
