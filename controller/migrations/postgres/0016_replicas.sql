-- Several controller replicas on one database.

-- Which replica holds a member's connection: a member goes offline only
-- when that replica says so, or when that replica is gone.
ALTER TABLE members ADD COLUMN online_replica TEXT;

-- Every running replica, with where agents reach it and where other
-- replicas forward relayed packets to it. A replica whose heartbeat is
-- old is gone: its members are offline unless they moved.
CREATE TABLE replicas (
    id            TEXT PRIMARY KEY,
    control       TEXT,
    relay         TEXT,
    started_ms    BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL
);

-- What each committed write changed, per network, for the other replicas
-- (a NOTIFY on `warren_changes` wakes them; a missed one is caught up
-- from here). Ids follow commit order: writers hold one lock to commit.
CREATE TABLE change_log (
    id        BIGSERIAL PRIMARY KEY,
    network_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    replica   TEXT NOT NULL,
    at_ms     BIGINT NOT NULL
);
