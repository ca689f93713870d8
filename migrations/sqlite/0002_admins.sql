-- Dashboard admins and their browser sessions. Mirrors migrations/postgres/0002_admins.sql.

-- A signed-in admin is a superuser: every app, every scope.
CREATE TABLE admins (
    id               TEXT PRIMARY KEY,
    -- stored lower-cased, so sign-in is case-insensitive
    email            TEXT NOT NULL UNIQUE,
    -- an argon2id PHC string; never the password
    password_hash    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    -- consecutive failed sign-ins; a success resets it
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    -- sign-ins are refused until then (ms since the epoch)
    locked_until     INTEGER
);

-- One row per signed-in browser. The id is the SHA-256 of the cookie's secret: the secret
-- itself is never stored.
CREATE TABLE admin_sessions (
    id          BLOB PRIMARY KEY,
    admin_id    TEXT NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions(admin_id);
CREATE INDEX admin_sessions_expires ON admin_sessions(expires_at);
