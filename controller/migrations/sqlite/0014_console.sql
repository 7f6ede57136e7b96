-- The console: a session also ends after an idle hour (its last use is
-- kept, at most once a minute), and break-glass sign-in codes for
-- controllers without an identity provider (`console login-code`).
ALTER TABLE sessions ADD COLUMN last_used_unix INTEGER NOT NULL DEFAULT 0;

CREATE TABLE console_codes (
    code_hash     TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    expires_unix  INTEGER NOT NULL
);

