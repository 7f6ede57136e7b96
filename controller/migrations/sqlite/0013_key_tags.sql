-- Tags a pre-auth key puts on the members it authorizes (servers, cluster
-- masters): a JSON list of labels without `tag:`.
ALTER TABLE preauth_keys ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
