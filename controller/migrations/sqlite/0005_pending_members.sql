-- no-transaction
-- Pending members take no address and no name until an admin (or a
-- pre-auth key) authorizes them: anyone who knows a network ID can join
-- as pending, and each pending join used to take an address from the pool
-- and a name from the zone. A pending member keeps only the name it asked
-- for (`requested_name`, not unique, never in DNS); authorization assigns
-- `name` and `ipv4`.
--
-- SQLite cannot drop NOT NULL in place, so the table is rebuilt (the
-- documented twelve-step way): with foreign keys off, so dropping the old
-- table does not cascade into services and routes, and checked before the
-- commit.
PRAGMA foreign_keys = OFF;

BEGIN;

CREATE TABLE members_new (
    network_id      TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    node_id         TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    name            TEXT,                   -- NULL while pending
    requested_name  TEXT NOT NULL DEFAULT '',
    ipv4            INTEGER,                -- NULL while pending; u32 host order
    state           INTEGER NOT NULL,       -- 0 pending, 1 authorized, 2 revoked
    online          INTEGER NOT NULL DEFAULT 0,
    endpoints       TEXT NOT NULL DEFAULT '[]',
    agent_version   TEXT NOT NULL DEFAULT '',
    last_seen       TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id),
    UNIQUE (network_id, ipv4),
    UNIQUE (network_id, name)
);

INSERT INTO members_new (network_id, node_id, public_key, name, requested_name, ipv4, state,
                         online, endpoints, agent_version, last_seen, created_at)
SELECT network_id, node_id, public_key,
       CASE WHEN state = 0 THEN NULL ELSE name END,
       name,
       CASE WHEN state = 0 THEN NULL ELSE ipv4 END,
       state,
       CASE WHEN state = 0 THEN 0 ELSE online END,
       CASE WHEN state = 0 THEN '[]' ELSE endpoints END,
       agent_version, last_seen, created_at
FROM members;

DROP TABLE members;
ALTER TABLE members_new RENAME TO members;
CREATE INDEX members_by_key ON members(public_key);
CREATE INDEX members_by_state ON members(network_id, state);

-- What each node may still add to the audit log of its own events
-- (presence, endpoints, services, advertised routes): a token bucket per
-- node, action and network, and how many entries were folded into the
-- next one while it was empty. A node that flaps cannot flood the log.
CREATE TABLE audit_node_budget (
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    network_id  TEXT NOT NULL,
    tokens      REAL NOT NULL,
    at_unix     INTEGER NOT NULL,
    coalesced   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (actor, action, network_id)
);

COMMIT;

PRAGMA foreign_keys = ON;
