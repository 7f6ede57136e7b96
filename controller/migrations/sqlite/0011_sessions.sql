-- People signed in on the controller's HTTPS pages (an admin's or
-- auditor's session, accepted by the API where a token is). Only the
-- secret's SHA-256 is kept, as for tokens.
CREATE TABLE sessions (
    secret_hash   TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_unix  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
