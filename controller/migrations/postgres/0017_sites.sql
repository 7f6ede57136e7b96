-- Sites (issue 16): a route is advertised for a site (a cluster, say), or
-- for none. Members advertising one prefix for one site are a fail-over
-- pair; for different sites they are different destinations.
ALTER TABLE routes ADD COLUMN site TEXT;

-- The site's own DNS a member declares with its routes: names under
-- `domain` that `server` answers. NULL when it declares none.
ALTER TABLE members ADD COLUMN site_dns_domain TEXT;
ALTER TABLE members ADD COLUMN site_dns_server TEXT;

-- The unique prefix that stands for a site's route where it overlaps
-- another site's: allocated from the controller's mapped range, kept for
-- as long as the site has that route approved. Mapped prefixes never
-- overlap one another, in any network.
CREATE TABLE site_mappings (
    network_id     TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    site           TEXT NOT NULL,
    real_prefix    TEXT NOT NULL,
    mapped_prefix  TEXT NOT NULL UNIQUE,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (network_id, site, real_prefix)
);
