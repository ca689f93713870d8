//! Dashboard admins: accounts, argon2id password hashes and the sign-in lockout.
//!
//! An admin is a superuser of the instance (every app, every scope). Emails are stored
//! lower-cased. Passwords are hashed with argon2id (a PHC string with its own salt and
//! parameters) and checked in constant time by the `argon2` crate. After
//! [`LOCKOUT_AFTER`] consecutive failures an account is locked for [`lockout_for`]: 30 s,
//! doubling with every further failure, at most 15 minutes. Each attempt is counted as a
//! failure before its password is checked ([`Db::claim_sign_in`]), so parallel attempts
//! cannot check more passwords than the allowance; a success resets the count, and
//! `picloud admins unlock` ([`Db::unlock_admin`]) clears it.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use picloud_shared::ids::random_id;
use picloud_shared::names::check_printable;
use picloud_shared::time::now_ms;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::db::{begin_write, is_unique_violation, Db};
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
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

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
    /// Sign-ins are refused until then, ms since the epoch (for a claimed attempt: the
    /// lock it set, if it reached the threshold).
    pub locked_until: Option<i64>,
}

/// What a sign-in attempt may do, decided (and counted) before any password is checked.
#[derive(Debug, Clone)]
pub enum SignInClaim {
    /// The attempt is already counted as a failure (and locks the account if it reached
    /// the threshold); check the password against this account, and reset on success.
    Check(Credentials),
    /// The account is locked until then, ms since the epoch; check nothing.
    Locked(i64),
    /// No admin has this email.
    Unknown,
}

/// Normalises and checks an email address: trimmed, lower-cased, one `@` with text on
/// both sides, no whitespace or control characters, at most [`MAX_EMAIL_LEN`]
/// characters.
pub fn normalize_email(email: &str) -> Result<String> {
    check_printable("email", email).map_err(|e| Error::Invalid(e.0))?;
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
/// like [`hash_password`]). A malformed hash matches nothing. The hash's own algorithm,
/// version and parameters are used, so hashes made with other parameters still verify.
///
/// The argon2 memory (~19 MiB with the default parameters) is this thread's, allocated
/// once and reused by every later check here: freed and allocated anew each time, the
/// allocator would keep a block per thread and per arena that ever ran a check.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    let mut computed = vec![0u8; expected.len()];
    let hashed = ARGON2_MEMORY.with_borrow_mut(|blocks| {
        let needed = argon2.params().block_count();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut computed,
            &mut blocks[..needed],
        )
    });
    hashed.is_ok() && bool::from(computed.as_slice().ct_eq(expected.as_bytes()))
}

thread_local! {
    /// The argon2 working memory of [`verify_password`] on this thread.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
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
/// before [`LOCKOUT_AFTER`], then 30 s doubling with each failure, at most 15 minutes.
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

crate::db::row_struct! {
    struct AdminRow {
        id: String,
        email: String,
        password_hash: String,
        created_at: i64,
        failed_attempts: i64,
        locked_until: Option<i64>,
    }
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
        let inserted = on_db!(self, pool, {
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
        let rows: Vec<AdminRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {ADMIN_COLUMNS} FROM admins ORDER BY email"
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(AdminRow::record).collect())
    }

    /// Deletes the admin with `email` and every session of theirs;
    /// [`Error::AdminNotFound`] if there is none.
    pub async fn delete_admin(&self, email: &str) -> Result<Admin> {
        let email = normalize_email(email)?;
        let row: Option<AdminRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "DELETE FROM admins WHERE email = $1 RETURNING {ADMIN_COLUMNS}"
            ))
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
        let row: Option<AdminRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {ADMIN_COLUMNS} FROM admins WHERE email = $1"
            ))
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

    /// Counts a sign-in attempt at `email` (compared lower-cased) at `now` as a failure
    /// before its password is checked, atomically with the lock check: the count goes up
    /// only while the account is not locked, and the attempt that reaches
    /// [`LOCKOUT_AFTER`] locks it ([`lockout_for`]) in the same transaction. Parallel
    /// attempts thus check at most the allowance of passwords; a success resets the count
    /// ([`Db::reset_failed_sign_ins`]).
    pub async fn claim_sign_in(&self, email: &str, now: i64) -> Result<SignInClaim> {
        let email = email.trim().to_lowercase();
        let claim = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let row: Option<AdminRow> = sqlx::query_as(&format!(
                "UPDATE admins SET failed_attempts = failed_attempts + 1
                 WHERE email = $1 AND (locked_until IS NULL OR locked_until <= $2)
                 RETURNING {ADMIN_COLUMNS}"
            ))
            .bind(&email)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let claim = match row {
                Some(row) => {
                    let locked_until = lockout_for(row.failed_attempts)
                        .map(|lock| now.saturating_add(lock.as_millis() as i64));
                    if let Some(until) = locked_until {
                        sqlx::query("UPDATE admins SET locked_until = $2 WHERE id = $1")
                            .bind(&row.id)
                            .bind(until)
                            .execute(&mut *tx)
                            .await?;
                    }
                    SignInClaim::Check(Credentials {
                        admin: row.admin(),
                        password_hash: row.password_hash,
                        locked_until,
                    })
                }
                None => {
                    let locked: Option<Option<i64>> =
                        sqlx::query_scalar("SELECT locked_until FROM admins WHERE email = $1")
                            .bind(&email)
                            .fetch_optional(&mut *tx)
                            .await?;
                    match locked {
                        Some(until) => SignInClaim::Locked(until.unwrap_or(now)),
                        None => SignInClaim::Unknown,
                    }
                }
            };
            tx.commit().await?;
            claim
        });
        Ok(claim)
    }

    /// Clears the failure count and lock of the admin with `email`
    /// (`picloud admins unlock`); returns the account as it was before.
    /// [`Error::AdminNotFound`] if there is none.
    pub async fn unlock_admin(&self, email: &str) -> Result<AdminRecord> {
        let email = normalize_email(email)?;
        let row: Option<AdminRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {ADMIN_COLUMNS} FROM admins WHERE email = $1"
            ))
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        let before = row
            .map(AdminRow::record)
            .ok_or(Error::AdminNotFound(email))?;
        self.reset_failed_sign_ins(&before.admin.id).await?;
        Ok(before)
    }

    /// Clears admin `id`'s failure count and lock after a successful sign-in.
    pub async fn reset_failed_sign_ins(&self, id: &str) -> Result<()> {
        on_db!(self, pool, {
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
    fn hashes_with_other_parameters_still_verify() {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(4096, 3, 2, Some(24)).unwrap();
        let other = Argon2::new(Algorithm::Argon2i, Version::V0x10, params);
        let hash = other
            .hash_password(b"an older password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(&hash, "an older password"));
        assert!(!verify_password(&hash, "an older passwore"));
        // The thread's memory, grown for the default parameters, serves smaller ones.
        assert!(verify_password(
            &hash_password("a newer password").unwrap(),
            "a newer password"
        ));
        assert!(verify_password(&hash, "an older password"));
    }

    #[test]
    fn lockout_starts_at_the_fifth_failure_and_doubles_to_15_minutes() {
        assert_eq!(lockout_for(4), None);
        assert_eq!(lockout_for(5), Some(Duration::from_secs(30)));
        assert_eq!(lockout_for(6), Some(Duration::from_secs(60)));
        assert_eq!(lockout_for(7), Some(Duration::from_secs(120)));
        assert_eq!(lockout_for(9), Some(Duration::from_secs(480)));
        assert_eq!(lockout_for(10), Some(Duration::from_secs(900)));
        assert_eq!(lockout_for(1000), Some(Duration::from_secs(900)));
    }
}
