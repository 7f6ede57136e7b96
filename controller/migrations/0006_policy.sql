-- Access policy (issue 12): every version of each network's policy
-- document, and the tags admins put on members. A network without rows
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
