//! The schema's migrations: `migrations/sqlite` and `migrations/postgres`, embedded in the
//! binary and read the way sqlx's `migrate!` macro reads a folder (`<version>_<words>.sql`,
//! a file starting `-- no-transaction` runs outside a transaction). The macro would embed
//! them too, but it needs sqlx's macro crate, which compiles sqlx's drivers and tokio a
//! second time for the build host. A database migrated by either accepts the other: sqlx
//! checks each applied migration by its version and the SHA-384 of its text.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use rust_embed::RustEmbed;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::db::Backend;
use crate::error::{Error, Result};

#[derive(RustEmbed)]
#[folder = "../../migrations/sqlite"]
struct SqliteFiles;

#[derive(RustEmbed)]
#[folder = "../../migrations/postgres"]
struct PostgresFiles;

/// `backend`'s migrations numbered up to `through`, in order.
pub(crate) async fn migrator(backend: Backend, through: i64) -> Result<Migrator> {
    let files: Vec<(String, Cow<'static, [u8]>)> = match backend {
        Backend::Sqlite => embedded::<SqliteFiles>(),
        Backend::Postgres => embedded::<PostgresFiles>(),
    };
    let mut migrations = Vec::with_capacity(files.len());
    for (name, data) in files {
        let migration = parse(&name, data)?;
        if migration.version <= through {
            migrations.push(migration);
        }
    }
    migrations.sort_by_key(|m| m.version);
    Ok(Migrator::new(Embedded(migrations)).await?)
}

fn embedded<F: RustEmbed>() -> Vec<(String, Cow<'static, [u8]>)> {
    F::iter()
        .filter_map(|name| F::get(&name).map(|file| (name.into_owned(), file.data)))
        .collect()
}

/// A migration from its file: `0007_cron_triggers.sql` is version 7, "cron triggers".
fn parse(name: &str, data: Cow<'static, [u8]>) -> Result<Migration> {
    let bad = |why: &str| Error::Corrupt(format!("embedded migration {name}: {why}"));
    let stem = name
        .strip_suffix(".sql")
        .ok_or_else(|| bad("not a .sql file"))?;
    let (version, words) = stem
        .split_once('_')
        .ok_or_else(|| bad("its name is not <version>_<description>.sql"))?;
    let version: i64 = version
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad("its version is not a positive number"))?;
    let sql = String::from_utf8(data.into_owned()).map_err(|_| bad("not UTF-8"))?;
    let no_tx = sql.starts_with("-- no-transaction");
    Ok(Migration::new(
        version,
        Cow::Owned(words.replace('_', " ")),
        MigrationType::Simple,
        Cow::Owned(sql),
        no_tx,
    ))
}

/// Migrations already read, as the source sqlx's [`Migrator`] takes.
#[derive(Debug)]
struct Embedded(Vec<Migration>);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move { Ok(self.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_file_of_both_backends_is_a_migration_and_they_pair_up() {
        let sqlite = migrator(Backend::Sqlite, i64::MAX).await.unwrap();
        let postgres = migrator(Backend::Postgres, i64::MAX).await.unwrap();
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            versions(&sqlite),
            (1..=sqlite.iter().count() as i64).collect::<Vec<_>>()
        );
        assert_eq!(versions(&sqlite), versions(&postgres));
        let first = sqlite.iter().next().unwrap();
        assert_eq!(first.description, "initial");
        assert!(first.sql.contains("CREATE TABLE"));
        assert_eq!(SqliteFiles::iter().count(), sqlite.iter().count());
    }

    #[tokio::test]
    async fn through_leaves_out_the_later_migrations() {
        let three = migrator(Backend::Postgres, 3).await.unwrap();
        assert_eq!(
            three.iter().map(|m| m.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_misnamed_file_is_an_error_not_a_panic() {
        for name in [
            "initial.sql",
            "x_initial.sql",
            "0_initial.sql",
            "0001_initial.txt",
        ] {
            assert!(parse(name, Cow::Borrowed(b"SELECT 1;")).is_err(), "{name}");
        }
        let parsed = parse(
            "0012_two_words.sql",
            Cow::Borrowed(b"-- no-transaction\nSELECT 1;"),
        )
        .unwrap();
        assert_eq!(
            (parsed.version, parsed.description.as_ref(), parsed.no_tx),
            (12, "two words", true)
        );
    }
}
