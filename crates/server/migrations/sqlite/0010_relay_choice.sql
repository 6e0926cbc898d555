-- Relay choice (DESIGN, "Capabilities beyond v1", section 5).

-- A relay's last status; all NULL (and not draining) until it sends one.
ALTER TABLE relays ADD COLUMN sessions INTEGER;
ALTER TABLE relays ADD COLUMN load_ppm INTEGER;  -- load in millionths
ALTER TABLE relays ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
ALTER TABLE relays ADD COLUMN last_status_at INTEGER;

-- Members' round trips to relays: one report per member, replaced whole.
CREATE TABLE relay_rtts (
    party_id    TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    peer_id     TEXT NOT NULL,
    relay_id    TEXT NOT NULL,
    rtt_ms      INTEGER,              -- NULL: unreachable
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (party_id, peer_id, relay_id)
);
CREATE INDEX relay_rtts_reported_at ON relay_rtts (reported_at);

-- Each party's current recommendation, shared by every instance, and what
-- its members were last told (relay_announced: the relay ID, '' for none).
ALTER TABLE parties ADD COLUMN relay_id TEXT;
ALTER TABLE parties ADD COLUMN relay_reason TEXT;
ALTER TABLE parties ADD COLUMN relay_announced TEXT;
ALTER TABLE parties ADD COLUMN relay_announced_at INTEGER;
