-- Services that members publish into their network's DNS zone: an SRV
-- record at _name._proto.<zone> pointing at the member. They go with the
-- membership (ON DELETE CASCADE); a member that is not authorized keeps
-- its rows but the zone and netmaps leave them out.

CREATE TABLE services (
    network_id  TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    name        TEXT NOT NULL,             -- the label without its underscore
    proto       TEXT NOT NULL,             -- 'tcp' or 'udp'
    port        INTEGER NOT NULL,
    txt         TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    PRIMARY KEY (network_id, node_id, name, proto),
    FOREIGN KEY (network_id, node_id) REFERENCES members(network_id, node_id) ON DELETE CASCADE
);
