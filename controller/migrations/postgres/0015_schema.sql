-- The schema as SQLite's migrations 0001 to 0015 leave it, for PostgreSQL.
-- A later migration is written for both databases under the same number.
-- Integers are BIGINT (what the store binds), flags are 0/1 integers as in
-- SQLite, times are RFC 3339 text next to unix seconds.

CREATE TABLE api_tokens (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    scope           BIGINT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    network_id      TEXT,
    created_by      TEXT NOT NULL DEFAULT 'system',
    expires_at      TEXT,
    expires_unix    BIGINT,
    last_used_at    TEXT,
    last_used_unix  BIGINT,
    revoked_at      TEXT
);

CREATE TABLE networks (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    pool                TEXT NOT NULL,
    zone                TEXT NOT NULL,
    mtu                 BIGINT NOT NULL,
    netmap_version      BIGINT NOT NULL,
    created_at          TEXT NOT NULL,
    device_expiry_secs  BIGINT NOT NULL DEFAULT 15552000
);

CREATE TABLE preauth_keys (
    id            TEXT PRIMARY KEY,
    network_id    TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    hash          TEXT NOT NULL UNIQUE,
    reusable      BIGINT NOT NULL,
    expires_at    TEXT,
    expires_unix  BIGINT,
    uses          BIGINT NOT NULL DEFAULT 0,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    max_uses      BIGINT,
    tags          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX preauth_keys_by_network ON preauth_keys(network_id);

CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    at          TEXT NOT NULL,
    at_unix     BIGINT NOT NULL,
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

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    groups        TEXT NOT NULL DEFAULT '[]',
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    last_sign_in  TEXT NOT NULL,
    provider_token TEXT,
    checked_unix  BIGINT,
    UNIQUE (issuer, subject)
);

CREATE TABLE members (
    network_id      TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    node_id         TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    name            TEXT,
    requested_name  TEXT NOT NULL DEFAULT '',
    ipv4            BIGINT,
    state           BIGINT NOT NULL,
    online          BIGINT NOT NULL DEFAULT 0,
    endpoints       TEXT NOT NULL DEFAULT '[]',
    agent_version   TEXT NOT NULL DEFAULT '',
    last_seen       TEXT,
    created_at      TEXT NOT NULL,
    owner_user_id   TEXT REFERENCES users(id) ON DELETE SET NULL,
    expires_unix    BIGINT,
    expiry_noted    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (network_id, node_id),
    UNIQUE (network_id, ipv4),
    UNIQUE (network_id, name)
);
CREATE INDEX members_by_key ON members(public_key);
CREATE INDEX members_by_state ON members(network_id, state);
CREATE INDEX members_expiry ON members (expires_unix)
    WHERE expires_unix IS NOT NULL AND expiry_noted = 0;

CREATE TABLE services (
    network_id  TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    proto       TEXT NOT NULL,
    port        BIGINT NOT NULL,
    txt         TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (network_id, node_id, name, proto),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);

CREATE TABLE routes (
    network_id   TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    advertised   BIGINT NOT NULL DEFAULT 0,
    approved     BIGINT NOT NULL DEFAULT 0,
    approved_by  TEXT,
    approved_at  TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id, prefix),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);

CREATE TABLE route_auto_approvers (
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, prefix, node_id)
);

CREATE TABLE audit_node_budget (
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    network_id  TEXT NOT NULL,
    tokens      DOUBLE PRECISION NOT NULL,
    at_unix     BIGINT NOT NULL,
    coalesced   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (actor, action, network_id)
);

CREATE TABLE policies (
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    text        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, version)
);

CREATE TABLE member_tags (
    network_id  TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    tag         TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id, tag),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    ports       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    ends_unix   BIGINT NOT NULL,
    revoked_by  TEXT,
    revoked_at  TEXT,
    ended_at    TEXT
);
CREATE INDEX grants_by_network ON grants(network_id, ends_unix);
CREATE INDEX grants_due ON grants(ends_unix) WHERE revoked_at IS NULL AND ended_at IS NULL;

CREATE TABLE grant_uses (
    grant_id       TEXT NOT NULL,
    network_id     TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    first_used_at  TEXT NOT NULL,
    PRIMARY KEY (grant_id, node_id)
);

CREATE TABLE sessions (
    secret_hash     TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    expires_unix    BIGINT NOT NULL,
    last_used_unix  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE console_codes (
    code_hash     TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    expires_unix  BIGINT NOT NULL
);

CREATE TABLE grant_requests (
    id            TEXT PRIMARY KEY,
    network_id    TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    requester     TEXT NOT NULL,
    target        TEXT NOT NULL,
    ports         TEXT NOT NULL,
    duration_secs BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    state         TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    TEXT,
    grant_id      TEXT
);
CREATE INDEX grant_requests_pending ON grant_requests(network_id) WHERE state = 'pending';
CREATE INDEX grant_requests_by_requester ON grant_requests(requester, created_at);
