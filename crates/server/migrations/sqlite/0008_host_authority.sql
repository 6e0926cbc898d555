-- Party settings and host authority (DESIGN, "Capabilities beyond v1",
-- sections 2 and 4). Existing parties keep v1's behaviour.

ALTER TABLE parties ADD COLUMN host_policy TEXT NOT NULL DEFAULT 'end';
ALTER TABLE parties ADD COLUMN join_policy TEXT NOT NULL DEFAULT 'open';
ALTER TABLE parties ADD COLUMN max_members INTEGER;  -- NULL: no limit of its own
ALTER TABLE parties ADD COLUMN host_epoch INTEGER NOT NULL DEFAULT 1;

-- When a member was last heard from other than by a heartbeat (an open
-- socket, any authenticated request), as each instance last stored it:
-- with last_seen, what makes a member present. Microseconds, 0: never.
ALTER TABLE members ADD COLUMN heard_at INTEGER NOT NULL DEFAULT 0;

-- Peers a party's host banned (by peer ID and, when key-bound, by key),
-- until the party ends.
CREATE TABLE party_bans (
    party_id   TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    peer_id    TEXT NOT NULL,
    public_key TEXT,
    banned_at  INTEGER NOT NULL,
    PRIMARY KEY (party_id, peer_id)
);
CREATE INDEX party_bans_public_key ON party_bans (party_id, public_key);
