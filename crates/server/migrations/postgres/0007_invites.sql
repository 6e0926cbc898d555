-- Join codes (DESIGN, "Capabilities beyond v1", section 3).

-- One row per nameplate: the invite holding it, live or ended. A nameplate
-- is held while its invite lives and for 24 hours after it ends (at
-- COALESCE(ended_at, expires_at)), then the row may be taken over by a new
-- invite. Not tied to the party by a foreign key: the row outlives the
-- party, which ends it (ended_at), to keep the nameplate resting.
CREATE TABLE invites (
    nameplate  TEXT PRIMARY KEY NOT NULL,  -- 'frog' or 'frog-lamp'
    party_id   TEXT NOT NULL,
    secret     TEXT NOT NULL,              -- the digits
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses   BIGINT NOT NULL,
    uses       BIGINT NOT NULL,
    failures   BIGINT NOT NULL,                -- wrong secrets so far
    ended_at   BIGINT,                         -- revoked, used up or its party ended
    end_reason TEXT                        -- host, guessing, used_up, party_ended
);
CREATE INDEX invites_party_id ON invites (party_id);
