//! Dashboard sessions: the `picloud_session` cookie, its stored digest and its CSRF token.
//!
//! Signing in creates a random 32-byte secret that only the browser's HttpOnly cookie
//! holds; the database keeps its SHA-256 as the session id, with the session's CSRF
//! token and expiry. Every state-changing request a cookie authenticates must echo the
//! CSRF token in [`CSRF_HEADER`].

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use picloud_shared::ids::random_bytes;
use picloud_shared::time::now_ms;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admins::Admin;
use crate::db::{begin_write, Db};
use crate::error::Result;
use crate::on_db;

pub use picloud_shared::extract::{session_cookie, SESSION_COOKIE};
/// The header a cookie-authenticated state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A signed-in admin, as the auth middleware leaves it in the request extensions.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Who.
    pub admin: Admin,
    /// The session's id: the SHA-256 of the cookie's secret.
    pub session_id: [u8; 32],
    /// The token state-changing requests must echo in [`CSRF_HEADER`].
    pub csrf_token: String,
    /// When the session ends, ms since the epoch.
    pub expires_at: i64,
}

impl SignedIn {
    /// Whether `presented` is this session's CSRF token (constant-time comparison).
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf_token.as_bytes())))
    }
}

/// A new session: the cookie secret (for the browser only) and what the API returns.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie's value. Never stored or logged.
    pub secret: String,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// When it ends, ms since the epoch.
    pub expires_at: i64,
}

/// The session id (SHA-256) of a cookie secret.
pub fn session_id(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The `Set-Cookie` value that stores `secret` for `ttl`: HttpOnly, SameSite=Strict,
/// `Path=/`, and `Secure` when `secure`.
pub fn session_set_cookie(secret: &str, ttl: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn session_clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

impl Db {
    /// Starts a session of admin `admin_id` lasting `ttl`, and drops every expired
    /// session on the way.
    pub async fn create_admin_session(&self, admin_id: &str, ttl: Duration) -> Result<NewSession> {
        let now = now_ms();
        let session = NewSession {
            secret: URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
            csrf_token: URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
            expires_at: now.saturating_add(ttl.as_millis() as i64),
        };
        let id = session_id(&session.secret);
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO admin_sessions (id, admin_id, csrf_token, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id[..])
            .bind(admin_id)
            .bind(&session.csrf_token)
            .bind(now)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(session)
    }

    /// The unexpired session a cookie secret stands for, with its admin.
    pub async fn find_admin_session(&self, secret: &str) -> Result<Option<SignedIn>> {
        crate::db::row_struct! {
            struct Row {
                id: Vec<u8>,
                admin_id: String,
                email: String,
                csrf_token: String,
                expires_at: i64,
            }
        }
        let id = session_id(secret);
        let row: Option<Row> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT s.id, s.admin_id, a.email, s.csrf_token, s.expires_at
                 FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
                 WHERE s.id = $1 AND s.expires_at > $2",
            )
            .bind(&id[..])
            .bind(now_ms())
            .fetch_optional(pool)
            .await?
        });
        // The index lookup matched on the digest; confirm it without timing leaks.
        Ok(row
            .filter(|r| bool::from(r.id.as_slice().ct_eq(&id[..])))
            .map(|r| SignedIn {
                admin: Admin {
                    id: r.admin_id,
                    email: r.email,
                },
                session_id: id,
                csrf_token: r.csrf_token,
                expires_at: r.expires_at,
            }))
    }

    /// Ends the session with id `session_id` (signing out).
    pub async fn delete_admin_session(&self, session_id: &[u8; 32]) -> Result<()> {
        on_db!(self, pool, {
            sqlx::query("DELETE FROM admin_sessions WHERE id = $1")
                .bind(&session_id[..])
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
    fn cookies_are_http_only_and_strict() {
        let set = session_set_cookie("s3cret", Duration::from_secs(60), false);
        assert_eq!(
            set,
            "picloud_session=s3cret; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        assert!(session_set_cookie("s", Duration::from_secs(1), true).ends_with("; Secure"));
        assert!(session_clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let signed_in = SignedIn {
            admin: Admin {
                id: "adm_1".into(),
                email: "a@b.c".into(),
            },
            session_id: [0; 32],
            csrf_token: "tok".into(),
            expires_at: 0,
        };
        assert!(signed_in.csrf_matches(Some("tok")));
        assert!(!signed_in.csrf_matches(Some("tok2")));
        assert!(!signed_in.csrf_matches(Some("")));
        assert!(!signed_in.csrf_matches(None));
    }
}
