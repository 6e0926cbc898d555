-- A party's end is an event like any other: its row must outlive the party,
-- and other server instances read events (and who they are for) from here.
CREATE TABLE party_events_new (
    party_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    recipients TEXT NOT NULL DEFAULT '[]',  -- JSON array of peer ids
    PRIMARY KEY (party_id, seq)
);
INSERT INTO party_events_new (party_id, seq, created_at, payload)
    SELECT party_id, seq, created_at, payload FROM party_events;
DROP TABLE party_events;
ALTER TABLE party_events_new RENAME TO party_events;
CREATE INDEX party_events_created_at ON party_events (created_at);

-- A signal delivered over a socket stays until it expires (another instance
-- may still be reading it) but is no longer handed out by a poll.
ALTER TABLE signals ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;

-- One cleanup pass per interval, whichever instance gets there first.
CREATE TABLE cleanup_lease (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    ran_at INTEGER NOT NULL
);
INSERT INTO cleanup_lease (id, ran_at) VALUES (1, 0);
