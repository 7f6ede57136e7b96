-- Warren controller schema. Flags are integers (sqlx reads SQLite booleans
-- badly through its Any driver). Times are RFC 3339 text in UTC, with a unix
-- seconds column beside them where SQL has to compare.

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,          -- 8 hex digits, shown in lists and audit
    name        TEXT NOT NULL UNIQUE,
    scope       INTEGER NOT NULL,          -- 0 admin, 1 auditor
    hash        TEXT NOT NULL UNIQUE,      -- SHA-256 of the token, hex
    created_at  TEXT NOT NULL
);

CREATE TABLE networks (
    id              TEXT PRIMARY KEY,      -- 16 hex digits
    name            TEXT NOT NULL UNIQUE,
    pool            TEXT NOT NULL,         -- IPv4 prefix, e.g. 10.147.0.0/16
    zone            TEXT NOT NULL,
    mtu             INTEGER NOT NULL,
    netmap_version  INTEGER NOT NULL,      -- bumped by every change that a netmap shows
    created_at      TEXT NOT NULL
);

CREATE TABLE members (
    network_id     TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    node_id        TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    name           TEXT NOT NULL,
    ipv4           INTEGER NOT NULL,       -- u32 host order, so the lowest free one is a scan
    state          INTEGER NOT NULL,       -- 0 pending, 1 authorized, 2 revoked
    online         INTEGER NOT NULL DEFAULT 0,
    endpoints      TEXT NOT NULL DEFAULT '[]',
    agent_version  TEXT NOT NULL DEFAULT '',
    last_seen      TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id),
    UNIQUE (network_id, ipv4),
    UNIQUE (network_id, name)
);
CREATE INDEX members_by_key ON members(public_key);

CREATE TABLE preauth_keys (
    id            TEXT PRIMARY KEY,        -- 8 hex digits
    network_id    TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    hash          TEXT NOT NULL UNIQUE,
    reusable      INTEGER NOT NULL,
    expires_at    TEXT,
    expires_unix  INTEGER,
    uses          INTEGER NOT NULL DEFAULT 0,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX preauth_keys_by_network ON preauth_keys(network_id);

-- The audit log keeps no foreign keys: entries outlive what they describe.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,       -- assigned by the writer: last + 1
    at          TEXT NOT NULL,
    at_unix     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    network_id  TEXT,
    target      TEXT,
    before      TEXT,
    after       TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_by_network ON audit_log(network_id, id);
CREATE INDEX audit_by_time ON audit_log(at_unix, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
