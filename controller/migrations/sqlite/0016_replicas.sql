-- Which controller process holds a member's connection. One SQLite file
-- has one controller process, so it is always the same here; the column
-- keeps the stores' SQL alike (PostgreSQL's replicas need it).
ALTER TABLE members ADD COLUMN online_replica TEXT;
