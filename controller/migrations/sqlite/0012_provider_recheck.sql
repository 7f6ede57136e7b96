-- What the controller keeps to ask the provider again whether a person
-- may still sign in (a refresh token, or GitHub's access token), and when
-- it last asked. A secret: the database is readable by the controller's
-- user and group only.
ALTER TABLE users ADD COLUMN provider_token TEXT;
ALTER TABLE users ADD COLUMN checked_unix INTEGER;
