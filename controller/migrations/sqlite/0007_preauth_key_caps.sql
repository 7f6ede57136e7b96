-- A pre-auth key may cap how many joins it admits. NULL: no cap (a
-- reusable key made before caps, or one asked for without a cap). A
-- single-use key is a key with a cap of one.
ALTER TABLE preauth_keys ADD COLUMN max_uses INTEGER;
UPDATE preauth_keys SET max_uses = 1 WHERE reusable = 0;
