-- Devices people sign in expire unless their owner signs in again: each
-- network has a period (180 days by default), each signed-in member the
-- time its sign-in runs out. Members joined with a pre-auth key or an
-- admin's approval have no owner and no expiry (NULL).
ALTER TABLE networks ADD COLUMN device_expiry_secs INTEGER NOT NULL DEFAULT 15552000;
ALTER TABLE members ADD COLUMN expires_unix INTEGER;
-- Set once the expiry is audited and peers were told (the clock's mark).
ALTER TABLE members ADD COLUMN expiry_noted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX members_expiry ON members (expires_unix) WHERE expires_unix IS NOT NULL AND expiry_noted = 0;
