-- The signal queue is bounded per sender and target: counting one sender's
-- backlog reads only its own rows.
CREATE INDEX signals_pair ON signals (party_id, to_peer_id, from_peer_id);
