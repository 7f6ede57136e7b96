-- API tokens get a lifecycle: an optional expiry, an optional scope to one
-- network, the time they were last used, and revocation. A revoked token's
-- row stays (its name and ID remain in the audit log and in `token list`).
-- No foreign key to networks: a token scoped to a deleted network simply
-- finds nothing, and is not deleted behind the audit log's back.

ALTER TABLE api_tokens ADD COLUMN network_id TEXT;         -- 16 hex digits, or NULL: every network
ALTER TABLE api_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT 'system';
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_unix INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_unix INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
