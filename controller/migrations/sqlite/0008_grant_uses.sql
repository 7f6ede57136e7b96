-- The members a grant admitted a flow at, first use each: the audit log
-- records `grant.use` once per grant and member, and `grant list` shows
-- who used a grant.
CREATE TABLE grant_uses (
    grant_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    first_used_at TEXT NOT NULL,
    PRIMARY KEY (grant_id, node_id)
);
