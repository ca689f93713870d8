//! The management subcommands: `apps`, `keys`, `admins` and `secrets`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use picloud_shared::{AppId, Scope};

use super::values::parse_scope;

/// `picloud apps …`
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        /// The app id (slug).
        id: AppId,
        /// Display name; defaults to the id.
        #[arg(long)]
        name: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List apps.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an app and everything it owns.
    Delete {
        /// The app id.
        id: AppId,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Whose keys a `keys` command works on.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct KeyOwner {
    /// Instance keys (manage apps and keys).
    #[arg(long)]
    pub instance: bool,
    /// Keys of this app.
    #[arg(long)]
    pub app: Option<AppId>,
}

/// `picloud keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Whose key.
        #[command(flatten)]
        owner: KeyOwner,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// A scope for an app key (repeatable), e.g. `--scope pubsub:publish`.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Whose keys.
        #[command(flatten)]
        owner: KeyOwner,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        /// The key id.
        id: String,
        /// Whose key.
        #[command(flatten)]
        owner: KeyOwner,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud admins …`
#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Create a dashboard admin; the password is asked for, or read from stdin.
    Create {
        /// The admin's email (stored lower-cased).
        #[arg(long)]
        email: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List admins (never their passwords).
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an admin and sign them out everywhere.
    Delete {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear an admin's failed sign-ins and lockout.
    Unlock {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every stored secret under a new master key, in one transaction. Stop every
    /// node first; afterwards, start them all with the new key.
    RotateMasterKey {
        /// Read the new key (base64 of 32 bytes) from this file; without it, a new key
        /// is generated and written to the data dir's key file.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud sources …`: the outbox schema in an app's own PostgreSQL database.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Print the SQL that creates the outbox schema (to read, or apply by hand).
    Sql {
        /// The schema's name.
        #[arg(long, default_value = "picloud")]
        schema: String,
    },
    /// Create or upgrade the outbox schema in the app's database (idempotent; only
    /// moves forward).
    Install {
        /// The app database's URL (a role that may create the schema).
        #[arg(long, env = "PICLOUD_SOURCE_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The schema's name.
        #[arg(long, default_value = "picloud")]
        schema: String,
    },
}
