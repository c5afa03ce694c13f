-- The example app's tables, the app's role, and the role channelgate reads
-- them with. Run once by an administrator (a role that may create roles):
--   psql -h 127.0.0.1 -U postgres -d app -f schema.sql

CREATE TABLE IF NOT EXISTS users (
  id   text PRIMARY KEY,
  name text NOT NULL
);

-- "Is alice in room 42, and with which role?" (policies/memberships.yaml: room-members)
CREATE TABLE IF NOT EXISTS room_members (
  room_id integer NOT NULL,
  user_id text    NOT NULL REFERENCES users (id),
  role    text    NOT NULL DEFAULT 'member',   -- member | moderator | banned
  PRIMARY KEY (room_id, user_id)
);

-- "May bob see document 7?" is the app's own decision (POST /pusher/decide).
CREATE TABLE IF NOT EXISTS doc_viewers (
  doc_id  integer NOT NULL,
  user_id text    NOT NULL REFERENCES users (id),
  PRIMARY KEY (doc_id, user_id)
);

INSERT INTO users VALUES ('alice', 'Alice'), ('bob', 'Bob'), ('mallory', 'Mallory') ON CONFLICT DO NOTHING;
INSERT INTO room_members VALUES (42, 'alice', 'moderator'), (42, 'bob', 'member'), (42, 'mallory', 'banned')
  ON CONFLICT DO NOTHING;
INSERT INTO doc_viewers VALUES (7, 'alice') ON CONFLICT DO NOTHING;

-- Roles (add PASSWORD '…' to both outside a loopback test).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
    CREATE ROLE app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'channelgate_ro') THEN
    CREATE ROLE channelgate_ro LOGIN;
  END IF;
END $$;

-- The app reads and writes its tables.
GRANT SELECT, INSERT, UPDATE, DELETE ON users, room_members, doc_viewers TO app;

-- channelgate's role: it can log in and SELECT the one table its policies
-- read, nothing else. Its connections also run read-only
-- (default_transaction_read_only, set by channelgate and here), and
-- `channelgate check` refuses any SQL it cannot prove is a single SELECT:
-- three locks, one behind the other.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM channelgate_ro;
GRANT SELECT ON room_members TO channelgate_ro;
ALTER ROLE channelgate_ro SET default_transaction_read_only = on;
