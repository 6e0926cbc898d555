-- Times are microseconds since the Unix epoch (UTC), as in the SQLite schema.

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,  -- SHA-256 of the bearer token, hex
    peer_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE parties (
    party_id   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    host_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seq        BIGINT NOT NULL DEFAULT 0  -- number of the party's last event
);

-- peer_id is the primary key: a peer is in at most one party.
CREATE TABLE members (
    peer_id     TEXT PRIMARY KEY,
    party_id    TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    nat_type    TEXT NOT NULL,
    public_ip   TEXT NOT NULL,
    public_port BIGINT NOT NULL,
    local_ip    TEXT NOT NULL,
    local_port  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    joined_at   BIGINT NOT NULL,
    vip_index   BIGINT NOT NULL,  -- offset of the virtual IP in 10.66.0.0/16
    UNIQUE (party_id, vip_index)
);
CREATE INDEX members_party ON members (party_id);
CREATE INDEX members_last_seen ON members (last_seen);

-- A party's events, as sent to its members' sockets; rows outlive the party
-- (its end is an event too) until pruned.
CREATE TABLE party_events (
    party_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    payload    TEXT NOT NULL,
    recipients TEXT NOT NULL,  -- JSON array of peer ids
    PRIMARY KEY (party_id, seq)
);
CREATE INDEX party_events_created_at ON party_events (created_at);

CREATE TABLE signals (
    id           BIGSERIAL PRIMARY KEY,
    party_id     TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    from_peer_id TEXT NOT NULL,
    to_peer_id   TEXT NOT NULL,
    signal_data  TEXT NOT NULL,
    sent_at      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    delivered    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX signals_target ON signals (party_id, to_peer_id, id);
CREATE INDEX signals_expires_at ON signals (expires_at);

CREATE TABLE relays (
    relay_id      TEXT PRIMARY KEY,
    public_ip     TEXT NOT NULL,
    port          BIGINT NOT NULL,
    region        TEXT NOT NULL,
    capacity      BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
CREATE INDEX relays_region ON relays (region, relay_id);

-- One cleanup pass per interval, whichever instance gets there first.
CREATE TABLE cleanup_lease (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    ran_at BIGINT NOT NULL
);
INSERT INTO cleanup_lease (id, ran_at) VALUES (1, 0);
