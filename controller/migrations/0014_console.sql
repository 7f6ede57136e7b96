-- The console: a session also ends after an idle hour (its last use is
-- kept, at most once a minute), and break-glass sign-in codes for
-- controllers without an identity provider (`console login-code`).
ALTER TABLE sessions ADD COLUMN last_used_unix INTEGER NOT NULL DEFAULT 0;

CREATE TABLE console_codes (
    code_hash     TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    expires_unix  INTEGER NOT NULL
);

-- People ask for temporary access in the console; an admin approves (a
-- grant is made then, for the asked duration from that moment) or denies.
CREATE TABLE grant_requests (
    id             TEXT PRIMARY KEY,          -- 8 hex digits
    network_id     TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    requested_by   TEXT NOT NULL,             -- the person's e-mail address
    source         TEXT NOT NULL,             -- as a grant's: user:EMAIL
    target         TEXT NOT NULL,
    ports          TEXT NOT NULL,             -- JSON array of port specs
    duration_secs  INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',   -- pending, approved, denied
    decided_by     TEXT,
    decided_at     TEXT,
    grant_id       TEXT
);
CREATE INDEX grant_requests_pending ON grant_requests(state, created_at);
