//! The outbox schema PiCloud keeps in an app's own PostgreSQL database: a table of
//! events waiting to be relayed and `publish(topic, type, data, idempotency_key)`, which
//! the app calls inside its own transactions. The function only inserts (and notifies
//! the relay when the transaction commits), so an event exists if and only if the app's
//! write committed.
//!
//! The schema is versioned and forward-only: `schema_version` records what is applied,
//! and [`install`] applies what is missing under an advisory lock, so running it twice,
//! or from two places at once, is harmless. [`sql`] is the same script for a DBA to read
//! and apply by hand.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::{Error, Result};

/// The schema name PiCloud uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "picloud";

/// The channel `publish` notifies on commit; the payload is the schema's name.
pub const NOTIFY_CHANNEL: &str = "picloud_outbox";

/// The schema's migrations, oldest first; `{schema}` is replaced by the schema's name.
/// Each is written to be safe to run again.
const MIGRATIONS: [&str; 1] = [r#"
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic            TEXT NOT NULL,
    type             TEXT NOT NULL,
    data             JSONB NOT NULL,
    idempotency_key  TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION {schema}.publish(
    topic TEXT, type TEXT, data JSONB, idempotency_key TEXT DEFAULT NULL
) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $picloud$
DECLARE
    new_id BIGINT;
BEGIN
    INSERT INTO {schema}.outbox (topic, type, data, idempotency_key)
    VALUES (publish.topic, publish.type, publish.data, publish.idempotency_key)
    RETURNING id INTO new_id;
    PERFORM pg_notify('picloud_outbox', '{schema}');
    RETURN new_id;
END
$picloud$;

REVOKE ALL ON FUNCTION {schema}.publish(TEXT, TEXT, JSONB, TEXT) FROM PUBLIC;
"#];

/// The newest schema version this PiCloud knows.
pub const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

/// Checks an outbox schema name: a plain lower-case PostgreSQL identifier, so it can be
/// written into SQL unquoted.
pub fn schema_name(name: &str) -> Result<&str> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    if first_ok
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_")
    {
        Ok(name)
    } else {
        Err(Error::Invalid(format!(
            "schema '{name}' must be 1 to 63 lower-case letters, digits and _, \
             not starting with a digit or pg_"
        )))
    }
}

/// The schema's tables and function, created if missing.
fn preamble(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};\n\
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (\n    \
             version     INTEGER PRIMARY KEY,\n    \
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n"
    )
}

/// Migration `index` (0-based) for `schema`.
fn migration(index: usize, schema: &str) -> String {
    MIGRATIONS[index].replace("{schema}", schema)
}

/// The whole install script for `schema`, as [`install`] applies it to an empty
/// database: for `picloud sources sql`.
pub fn sql(schema: &str) -> Result<String> {
    let schema = schema_name(schema)?;
    let mut script = format!(
        "-- PiCloud outbox schema, version {LATEST_VERSION}. Safe to run again.\nBEGIN;\n\
         SELECT pg_advisory_xact_lock(hashtext('picloud install {schema}'));\n{}",
        preamble(schema)
    );
    for index in 0..MIGRATIONS.len() {
        script.push_str(&migration(index, schema));
        script.push_str(&format!(
            "INSERT INTO {schema}.schema_version (version) VALUES ({}) ON CONFLICT DO NOTHING;\n",
            index + 1
        ));
    }
    script.push_str("COMMIT;\n");
    Ok(script)
}

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// The version found (0: none).
    pub from: i32,
    /// The version now.
    pub to: i32,
}

/// Applies the missing migrations of `schema` to the database at `database_url`, in one
/// transaction. A database with a newer version than this PiCloud knows is left alone
/// and reported as an error: the schema only moves forward.
pub async fn install(database_url: &str, schema: &str) -> Result<Installed> {
    let schema = schema_name(schema)?;
    let options: PgConnectOptions = database_url
        .parse()
        .map_err(|_| Error::Invalid("the database URL is not a PostgreSQL URL".into()))?;
    let mut conn = options.connect().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("picloud install {schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(&preamble(schema)).execute(&mut *tx).await?;
    let from: i32 = sqlx::query_scalar(&format!(
        "SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"
    ))
    .fetch_one(&mut *tx)
    .await?;
    if from > LATEST_VERSION {
        return Err(Error::Invalid(format!(
            "schema '{schema}' is at version {from}, newer than this PiCloud's {LATEST_VERSION}"
        )));
    }
    for index in from as usize..MIGRATIONS.len() {
        sqlx::raw_sql(&migration(index, schema))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {schema}.schema_version (version) VALUES ($1)"
        ))
        .bind(index as i32 + 1)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Installed {
        from,
        to: LATEST_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["picloud", "_outbox", "app_2"] {
            assert_eq!(schema_name(good).unwrap(), good);
        }
        for bad in [
            "",
            "Picloud",
            "2x",
            "pg_x",
            "a;drop",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(schema_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_script_names_only_the_schema_given() {
        let script = sql("shop_events").unwrap();
        assert!(script.contains("shop_events.publish("));
        assert!(!script.contains("{schema}"));
        assert!(!script.contains("picloud.outbox"));
    }
}
