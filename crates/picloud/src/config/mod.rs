//! Configuration: every setting is a flag with a `PICLOUD_*` environment variable.
//! clap rejects a bad value with a clear message and exit code 2.

//!
//! - `serve`: the settings of `picloud serve` and the component configurations built
//!   from them (the one place a default is written).
//! - `subcommands`: the management subcommands (`apps`, `keys`, `admins`, `secrets`).
//! - `values`: parsers for values clap cannot check by itself.

mod serve;
mod subcommands;
mod values;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use picloud_manager_core::secret_box::MasterKey;

pub use serve::{ConnectionArgs, LogFormat, RealtimeArgs, ServeArgs};
pub use subcommands::{
    AdminsCommand, AppsCommand, KeyOwner, KeysCommand, SecretsCommand, SourcesCommand,
};
pub use values::cors_origin_list;
use values::parse_master_key;

/// PiCloud: a self-hosted realtime pub/sub platform with a transactional outbox.
#[derive(Debug, Parser)]
#[command(name = "picloud", version, about, propagate_version = true)]
pub struct Cli {
    /// Where the database lives.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Database settings, shared by every command that touches the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Folder for PiCloud's files; the default SQLite database lives here.
    #[arg(
        long,
        env = "PICLOUD_DATA_DIR",
        default_value = "./picloud_data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER:PASS@HOST/DB`; default: SQLite in the data dir.
    #[arg(
        long,
        env = "PICLOUD_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most database connections this process's pool opens (the publish writer has one
    /// more, of its own).
    #[arg(long, env = "PICLOUD_DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub database_max_connections: u32,
    /// Seconds a request waits for a database connection before it is answered 503
    /// `unavailable` (with `Retry-After`); background tasks retry after it.
    #[arg(long, env = "PICLOUD_DATABASE_ACQUIRE_TIMEOUT_SEC", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub database_acquire_timeout_sec: u64,
    /// The master key stored secrets are sealed under: the base64 of 32 bytes (e.g.
    /// `openssl rand -base64 32`). Unset: the `master.key` file in the data dir, created
    /// 0600 on first start. Every node of one database needs the same key; prefer the
    /// variable to the flag, which other local users can see in the process list.
    #[arg(long, env = "PICLOUD_MASTER_KEY", global = true, hide_env_values = true,
          value_parser = parse_master_key)]
    pub master_key: Option<MasterKey>,
}

impl DatabaseArgs {
    /// The database URL to use: the explicit one, or the SQLite file in the data dir.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("picloud.db").display()),
        }
    }

    /// The SQLite database file [`Self::url`] names, as an absolute path; `None` for
    /// PostgreSQL and in-memory databases.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.url();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
            return None;
        }
        std::path::absolute(path).ok()
    }
}

/// Where `picloud serve` listens unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply database migrations and exit (the server also applies them at start).
    Migrate,
    /// Manage apps.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage dashboard admins (superusers who sign in at /_/).
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Manage the master key that stored secrets are sealed under.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Set up an app's PostgreSQL database as an outbox source (docs/sources.md).
    #[command(subcommand)]
    Sources(SourcesCommand),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let cli = Cli::try_parse_from(["picloud", "--data-dir", "/tmp/x", "migrate"]).unwrap();
        assert_eq!(cli.database.url(), "sqlite:///tmp/x/picloud.db");
    }

    #[test]
    fn defaults_are_the_flags_defaults_whatever_the_environment() {
        let cli = Cli::try_parse_from(["picloud", "serve"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        // The test runs without PICLOUD_* variables, so the parse saw only defaults.
        assert_eq!(format!("{serve:?}"), format!("{:?}", ServeArgs::defaults()));
        assert_eq!(ServeArgs::defaults().dispatch_lease_sec, 90);
        let bad = RealtimeArgs {
            subscriber_token_ttl_default_sec: 5,
            ..ServeArgs::defaults().realtime
        };
        assert!(bad
            .to_config()
            .unwrap_err()
            .contains("min <= default <= max"));
    }

    #[test]
    fn bad_values_are_rejected() {
        let err = Cli::try_parse_from(["picloud", "serve", "--bind", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["picloud", "apps", "create", "Bad App"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from([
            "picloud", "keys", "create", "--app", "shop", "--name", "x", "--scope", "root",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("unknown scope"), "{err}");
        let err = Cli::try_parse_from(["picloud", "keys", "list", "--instance", "--app", "shop"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
