-- Path plan (DESIGN, "Capabilities beyond v1", section 6).

-- NAT behaviour members reported (others derive it from nat_type).
CREATE TABLE peer_nat (
    party_id     TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    peer_id      TEXT NOT NULL,
    mapping      TEXT NOT NULL,
    filtering    TEXT NOT NULL,
    port_mapping BIGINT NOT NULL,
    reported_at  BIGINT NOT NULL,
    PRIMARY KEY (party_id, peer_id)
);

-- The latest outcome each member reported about each other member.
CREATE TABLE path_reports (
    party_id    TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    from_peer   TEXT NOT NULL,
    to_peer     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    rtt_us      BIGINT,  -- the round trip in microseconds, if reported
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (party_id, from_peer, to_peer)
);
CREATE INDEX path_reports_reported_at ON path_reports (reported_at);

-- Outcomes per unordered NAT-class pair (class_a <= class_b) and day since
-- the Unix epoch: counts only, no addresses, no peers.
CREATE TABLE path_stats (
    class_a TEXT NOT NULL,
    class_b TEXT NOT NULL,
    day     BIGINT NOT NULL,
    direct  BIGINT NOT NULL,
    relayed BIGINT NOT NULL,
    failed  BIGINT NOT NULL,
    PRIMARY KEY (class_a, class_b, day)
);

-- Each party's current plan per pair (a < b): what changes are judged by.
CREATE TABLE party_paths (
    party_id TEXT NOT NULL REFERENCES parties (party_id) ON DELETE CASCADE,
    a        TEXT NOT NULL,
    b        TEXT NOT NULL,
    plan     TEXT NOT NULL,
    PRIMARY KEY (party_id, a, b)
);
