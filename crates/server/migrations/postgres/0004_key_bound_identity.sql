-- Key-bound identity (DESIGN, "Capabilities beyond v1", section 1).

-- One-use challenges: the private half of each challenge's X25519 key lives
-- here only, so any instance can check the proof; a row is deleted by the
-- first attempt to answer it, or once it expires.
CREATE TABLE key_challenges (
    challenge_id TEXT PRIMARY KEY NOT NULL,
    public_key   TEXT NOT NULL,  -- the WireGuard key it was issued for
    secret       TEXT NOT NULL,  -- the challenge key's private half, base64
    client       TEXT NOT NULL,  -- the asking address, to bound its backlog
    expires_at   BIGINT NOT NULL
);
CREATE INDEX key_challenges_client ON key_challenges (client);
CREATE INDEX key_challenges_expires_at ON key_challenges (expires_at);

-- Peers bound to the WireGuard key they proved; a key belongs to one peer.
CREATE TABLE key_bindings (
    peer_id    TEXT PRIMARY KEY NOT NULL,
    public_key TEXT NOT NULL,
    bound_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX key_bindings_public_key ON key_bindings (public_key);
