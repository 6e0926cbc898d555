-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,  -- SHA-256 of the bearer token, hex
    peer_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE parties (
    party_id   TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    host_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seq        INTEGER NOT NULL DEFAULT 0  -- number of the party's last event
);

-- peer_id is the primary key: a peer is in at most one party.
CREATE TABLE members (
    peer_id     TEXT PRIMARY KEY NOT NULL,
    party_id    TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    nat_type    TEXT NOT NULL,
    public_ip   TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    local_ip    TEXT NOT NULL,
    local_port  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    joined_at   INTEGER NOT NULL,
    vip_index   INTEGER NOT NULL,  -- offset of the virtual IP in 10.66.0.0/16
    UNIQUE (party_id, vip_index)
);
CREATE INDEX members_last_seen ON members (last_seen);

-- A party's events, as sent to its members' sockets, for resume.
CREATE TABLE party_events (
    party_id   TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (party_id, seq)
);

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    party_id     TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    from_peer_id TEXT NOT NULL,
    to_peer_id   TEXT NOT NULL,
    signal_data  TEXT NOT NULL,
    sent_at      INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX signals_target ON signals (party_id, to_peer_id, id);
CREATE INDEX signals_expires_at ON signals (expires_at);

CREATE TABLE relays (
    relay_id      TEXT PRIMARY KEY NOT NULL,
    public_ip     TEXT NOT NULL,
    port          INTEGER NOT NULL,
    region        TEXT NOT NULL,
    capacity      INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX relays_region ON relays (region, relay_id);
