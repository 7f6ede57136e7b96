-- Access policy (issue 12): every version of each network's policy
-- document, the tags admins put on members, and grants. A network without rows
-- (made before this migration) has the built-in default as version 1.

CREATE TABLE policies (
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,          -- 1, 2, ... per network
    text        TEXT NOT NULL,             -- the TOML document as the admin wrote it
    created_by  TEXT NOT NULL,             -- actor, e.g. token:alice
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, version)
);

-- Tags go with the membership (ON DELETE CASCADE).
CREATE TABLE member_tags (
    network_id  TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    tag         TEXT NOT NULL,             -- the label without `tag:`
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id, tag),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);

-- Grants: a rule with an end time (temporary access). A grant is active
-- while ends_unix is in the future and it is not revoked; ended and
-- revoked grants stay for the record. ended_at is set when the controller
-- has recorded the end (audit entry, netmap version bump).
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,          -- 8 hex digits; the rule is named grant:<id>
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    source      TEXT NOT NULL,             -- a member name, group:NAME, tag:NAME or *
    target      TEXT NOT NULL,             -- as a rule's `to`: member, group, tag, CIDR, service, *
    ports       TEXT NOT NULL,             -- JSON array of port specs, e.g. ["tcp:6379"]
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    ends_unix   INTEGER NOT NULL,
    revoked_by  TEXT,
    revoked_at  TEXT,
    ended_at    TEXT
);
CREATE INDEX grants_by_network ON grants(network_id, ends_unix);
CREATE INDEX grants_due ON grants(ends_unix) WHERE revoked_at IS NULL AND ended_at IS NULL;
