//! The administrative CLI commands. They work on the database directly (like
//! PocketBase's `superuser` command), so they also work before any key exists.
//! With `--json`, the last line printed is one JSON object.

use picloud_manager_core::api_keys::{ApiKey, CreatedKey};
use picloud_manager_core::Db;
use picloud_shared::{AppId, Scope, ScopeSet};
use serde_json::json;

use crate::config::{AppsCommand, KeyOwner, KeysCommand};

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
                println!("{:<40} NAME", "ID");
                for app in apps {
                    println!("{:<40} {}", app.id, app.name);
                }
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
    println!(
        "{:<37} {:<12} {:<20} {:<8} SCOPES",
        "ID", "PREFIX", "NAME", "STATE"
    );
    for key in keys {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{:<37} {:<12} {:<20} {:<8} {}",
            key.id,
            key.prefix,
            key.name,
            state,
            scopes.join(" ")
        );
    }
}
