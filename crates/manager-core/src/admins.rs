//! Dashboard admins: accounts, argon2id password hashes and the sign-in lockout.
//!
//! An admin is a superuser of the instance (every app, every scope). Emails are stored
//! lower-cased. Passwords are hashed with argon2id (a PHC string with its own salt and
//! parameters) and checked in constant time by the `argon2` crate. After
//! [`LOCKOUT_AFTER`] consecutive failures an account is locked for [`lockout_for`]: 30 s,
//! doubling with every further failure, at most an hour. A success resets the count.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use picloud_shared::ids::random_id;
use picloud_shared::time::now_ms;
use serde::Serialize;

use crate::db::{is_unique_violation, Db};
use crate::error::{Error, Result};
use crate::on_db;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, in bytes (hashing cost must stay bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest accepted email address.
pub const MAX_EMAIL_LEN: usize = 254;
/// Consecutive failed sign-ins after which an account is locked.
pub const LOCKOUT_AFTER: i64 = 5;
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);

/// An admin account as listed: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Admin {
    /// Stable id.
    pub id: String,
    /// The sign-in email, lower-cased.
    pub email: String,
}

/// An admin with the listing details the CLI shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminRecord {
    /// The account.
    #[serde(flatten)]
    pub admin: Admin,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Consecutive failed sign-ins.
    pub failed_attempts: i64,
    /// Sign-ins are refused until then, ms since the epoch.
    pub locked_until: Option<i64>,
}

/// What a sign-in needs to know about an account.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub admin: Admin,
    /// Its argon2id PHC string.
    pub password_hash: String,
    /// Sign-ins are refused until then, ms since the epoch.
    pub locked_until: Option<i64>,
}

/// Normalises and checks an email address: trimmed, lower-cased, one `@` with text on
/// both sides, no whitespace, at most [`MAX_EMAIL_LEN`] characters.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((user, domain))
            if !user.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err(Error::Invalid(format!(
            "'{email}' is not an email address (name@domain, at most {MAX_EMAIL_LEN} characters)"
        )))
    }
}

/// Checks a new password's length: [`MIN_PASSWORD_CHARS`] characters to
/// [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Invalid(format!(
            "the password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Hashes `password` with argon2id and a fresh random salt (CPU-heavy: call it off the
/// async runtime, e.g. in `spawn_blocking`).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Invalid(format!("could not hash the password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (constant-time comparison; CPU-heavy
/// like [`hash_password`]). A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password, checked against when the email is unknown, so that an
/// unknown email costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = random_id("dummy");
        hash_password(&password).expect("hashing a random password")
    })
}

/// How long an account is locked after its `failures`-th consecutive failure: nothing
/// before [`LOCKOUT_AFTER`], then 30 s doubling with each failure, at most an hour.
pub fn lockout_for(failures: i64) -> Option<Duration> {
    if failures < LOCKOUT_AFTER {
        return None;
    }
    let doublings = (failures - LOCKOUT_AFTER).min(16) as u32;
    Some(
        FIRST_LOCKOUT
            .saturating_mul(1 << doublings)
            .min(MAX_LOCKOUT),
    )
}

#[derive(sqlx::FromRow)]
struct AdminRow {
    id: String,
    email: String,
    password_hash: String,
    created_at: i64,
    failed_attempts: i64,
    locked_until: Option<i64>,
}

impl AdminRow {
    fn admin(&self) -> Admin {
        Admin {
            id: self.id.clone(),
            email: self.email.clone(),
        }
    }

    fn record(self) -> AdminRecord {
        AdminRecord {
            admin: self.admin(),
            created_at: self.created_at,
            failed_attempts: self.failed_attempts,
            locked_until: self.locked_until,
        }
    }
}

const ADMIN_COLUMNS: &str = "id, email, password_hash, created_at, failed_attempts, locked_until";

impl Db {
    /// Creates an admin with an already hashed password ([`hash_password`]);
    /// [`Error::AdminExists`] if the email is taken.
    pub async fn create_admin(&self, email: &str, password_hash: &str) -> Result<AdminRecord> {
        let email = normalize_email(email)?;
        let row = AdminRow {
            id: random_id("adm"),
            email,
            password_hash: password_hash.to_owned(),
            created_at: now_ms(),
            failed_attempts: 0,
            locked_until: None,
        };
        let inserted = on_db!(self, pool => {
            sqlx::query(
                "INSERT INTO admins (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&row.id)
            .bind(&row.email)
            .bind(&row.password_hash)
            .bind(row.created_at)
            .execute(pool)
            .await
            .map(drop)
        });
        match inserted {
            Ok(()) => Ok(row.record()),
            Err(e) if is_unique_violation(&e) => Err(Error::AdminExists(row.email)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every admin, by email.
    pub async fn list_admins(&self) -> Result<Vec<AdminRecord>> {
        let rows: Vec<AdminRow> = on_db!(self, pool => {
            sqlx::query_as(&format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY email"))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(AdminRow::record).collect())
    }

    /// Deletes the admin with `email` and every session of theirs;
    /// [`Error::AdminNotFound`] if there is none.
    pub async fn delete_admin(&self, email: &str) -> Result<Admin> {
        let email = normalize_email(email)?;
        let row: Option<AdminRow> = on_db!(self, pool => {
            sqlx::query_as(&format!("DELETE FROM admins WHERE email = $1 RETURNING {ADMIN_COLUMNS}"))
                .bind(&email)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| r.admin()).ok_or(Error::AdminNotFound(email))
    }

    /// The account a sign-in with `email` is checked against, if it exists. `email` is
    /// compared lower-cased.
    pub async fn admin_credentials(&self, email: &str) -> Result<Option<Credentials>> {
        let email = email.trim().to_lowercase();
        let row: Option<AdminRow> = on_db!(self, pool => {
            sqlx::query_as(&format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE email = $1"))
                .bind(&email)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| Credentials {
            admin: r.admin(),
            password_hash: r.password_hash,
            locked_until: r.locked_until,
        }))
    }

    /// Counts a failed sign-in of admin `id` at `now` and, from the
    /// [`LOCKOUT_AFTER`]th consecutive failure on, locks the account ([`lockout_for`]).
    /// Returns the lock's end, if it is now locked.
    pub async fn record_failed_sign_in(&self, id: &str, now: i64) -> Result<Option<i64>> {
        let failures: Option<i64> = on_db!(self, pool => {
            sqlx::query_scalar(
                "UPDATE admins SET failed_attempts = failed_attempts + 1 WHERE id = $1
                 RETURNING failed_attempts",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let Some(until) = failures
            .and_then(lockout_for)
            .map(|d| now + d.as_millis() as i64)
        else {
            return Ok(None);
        };
        on_db!(self, pool => {
            sqlx::query("UPDATE admins SET locked_until = $2 WHERE id = $1")
                .bind(id)
                .bind(until)
                .execute(pool)
                .await
                .map(drop)?
        });
        Ok(Some(until))
    }

    /// Clears admin `id`'s failure count and lock after a successful sign-in.
    pub async fn reset_failed_sign_ins(&self, id: &str) -> Result<()> {
        on_db!(self, pool => {
            sqlx::query(
                "UPDATE admins SET failed_attempts = 0, locked_until = NULL
                 WHERE id = $1 AND (failed_attempts <> 0 OR locked_until IS NOT NULL)",
            )
            .bind(id)
            .execute(pool)
            .await
            .map(drop)?
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in ["", "ada", "@example.com", "ada@", "a da@x.io", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@x.io", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_need_ten_characters() {
        assert!(validate_password("123456789").is_err());
        assert!(validate_password("1234567890").is_ok());
        assert!(
            validate_password("ééééééééé").is_err(),
            "characters, not bytes"
        );
        assert!(validate_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
        assert!(!verify_password(dummy_hash(), ""));
    }

    #[test]
    fn lockout_starts_at_the_fifth_failure_and_doubles_to_an_hour() {
        assert_eq!(lockout_for(4), None);
        assert_eq!(lockout_for(5), Some(Duration::from_secs(30)));
        assert_eq!(lockout_for(6), Some(Duration::from_secs(60)));
        assert_eq!(lockout_for(7), Some(Duration::from_secs(120)));
        assert_eq!(lockout_for(12), Some(Duration::from_secs(3600)));
        assert_eq!(lockout_for(1000), Some(Duration::from_secs(3600)));
    }
}
