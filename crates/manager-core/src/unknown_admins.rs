//! Lockout bookkeeping for sign-in emails that belong to no admin, in memory.
//!
//! A real account answers 429 after [`LOCKOUT_AFTER`] failures; if an unknown email
//! kept answering 401, the difference would tell which emails are admins. So unknown
//! emails count failures and lock exactly like accounts do ([`lockout_for`]), here in
//! memory rather than in the database. The table holds at most [`MAX_TRACKED`] emails
//! (by SHA-256, so it keeps no addresses); when it is full the least recently tried
//! one is forgotten.
//!
//! [`LOCKOUT_AFTER`]: crate::admins::LOCKOUT_AFTER

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::admins::lockout_for;

/// Most unknown emails remembered at once.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: i64,
    locked_until: Option<i64>,
    tried_at: i64,
}

/// Failure counts and locks of emails no admin has.
#[derive(Debug, Default)]
pub struct UnknownAdmins {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl UnknownAdmins {
    /// Counts a sign-in attempt for the unknown `email` (already normalised) at `now`, as
    /// `Db::claim_sign_in` does for an account: `Err(until)` if the email is locked now
    /// (the attempt is not counted), else `Ok(())` after counting it (and locking from the
    /// threshold on). Every attempt at an unknown email fails, so nothing resets it.
    pub fn claim(&self, email: &str, now: i64) -> Result<(), i64> {
        let key: [u8; 32] = Sha256::digest(email.as_bytes()).into();
        let mut entries = self.entries.lock().expect("unknown admins lock");
        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.tried_at)
                .map(|(k, _)| *k)
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            locked_until: None,
            tried_at: now,
        });
        entry.tried_at = now;
        if let Some(until) = entry.locked_until.filter(|until| *until > now) {
            return Err(until);
        }
        entry.failures = entry.failures.saturating_add(1);
        if let Some(lock) = lockout_for(entry.failures) {
            entry.locked_until = Some(now.saturating_add(lock.as_millis() as i64));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admins::LOCKOUT_AFTER;

    #[test]
    fn unknown_emails_lock_like_accounts() {
        let unknown = UnknownAdmins::default();
        for _ in 0..LOCKOUT_AFTER {
            assert_eq!(unknown.claim("nobody@example.com", 1_000), Ok(()));
        }
        assert_eq!(unknown.claim("nobody@example.com", 1_000), Err(31_000));
        assert_eq!(unknown.claim("other@example.com", 1_000), Ok(()));
        // After the lock, one more try locks twice as long.
        assert_eq!(unknown.claim("nobody@example.com", 31_000), Ok(()));
        assert_eq!(unknown.claim("nobody@example.com", 31_000), Err(91_000));
    }

    #[test]
    fn the_table_is_bounded() {
        let unknown = UnknownAdmins::default();
        for i in 0..MAX_TRACKED as i64 + 10 {
            assert_eq!(unknown.claim(&format!("u{i}@example.com"), i), Ok(()));
        }
        assert_eq!(unknown.entries.lock().unwrap().len(), MAX_TRACKED);
    }
}
