-- Subnet routes and exit routes. A row is one prefix of one member: the
-- member advertises it (its node says so) and/or an admin approved it. A
-- route is served when both hold and the member is authorized; among
-- several members serving one prefix the netmap builder picks a primary.
-- Rows go with the membership (ON DELETE CASCADE).

CREATE TABLE routes (
    network_id   TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    prefix       TEXT NOT NULL,            -- canonical, e.g. 10.96.0.0/12
    advertised   INTEGER NOT NULL DEFAULT 0,
    approved     INTEGER NOT NULL DEFAULT 0,
    approved_by  TEXT,                     -- actor, e.g. token:alice or system (auto-approval)
    approved_at  TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (network_id, node_id, prefix),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);

-- Prefixes a network approves automatically when chosen members advertise
-- them (or anything inside them). node_id '*' means any member.
CREATE TABLE route_auto_approvers (
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (network_id, prefix, node_id)
);
