-- Token revocation and operator bans (DESIGN, "Capabilities beyond v1",
-- section 1).

-- Logout, rotation and admin revocation delete a peer's tokens by peer.
CREATE INDEX tokens_peer_id ON tokens (peer_id);

-- Peers the operator banned: the peer ID and, for a key-bound peer, the key
-- it was bound to then. A banned key obtains no challenge; a banned peer
-- obtains no token.
CREATE TABLE bans (
    peer_id    TEXT PRIMARY KEY NOT NULL,
    public_key TEXT,
    banned_at  INTEGER NOT NULL
);
CREATE INDEX bans_public_key ON bans (public_key);
