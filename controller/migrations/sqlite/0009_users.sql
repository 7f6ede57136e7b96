-- People who sign devices in through the OpenID provider. A user is its
-- provider's (issuer, subject); e-mail, name and groups are what the
-- provider said at the latest sign-in.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,        -- 16 hex digits, ours
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    groups        TEXT NOT NULL DEFAULT '[]',
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    last_sign_in  TEXT NOT NULL,
    UNIQUE (issuer, subject)
);

-- The person who signed a device in; NULL for keys and admin approvals.
ALTER TABLE members ADD COLUMN owner_user_id TEXT REFERENCES users(id) ON DELETE SET NULL;
