-- Grant requests: a person asks for temporary access to a service from
-- the console, an admin approves (which makes the grant) or denies, or
-- the person withdraws it. Kept after the decision, for the person's own
-- history and the audit trail.
CREATE TABLE grant_requests (
    id            TEXT PRIMARY KEY,       -- 8 hex digits
    network_id    TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    requester     TEXT NOT NULL,          -- the e-mail address the person signs in with
    target        TEXT NOT NULL,          -- as a grant's `to`, e.g. service:grafana
    ports         TEXT NOT NULL,          -- JSON array of port specs
    duration_secs INTEGER NOT NULL,       -- how long the grant lasts once approved
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    state         TEXT NOT NULL,          -- pending, approved, denied, withdrawn
    decided_by    TEXT,
    decided_at    TEXT,
    grant_id      TEXT                    -- the grant an approval made
);
CREATE INDEX grant_requests_pending ON grant_requests(network_id) WHERE state = 'pending';
CREATE INDEX grant_requests_by_requester ON grant_requests(requester, created_at);
