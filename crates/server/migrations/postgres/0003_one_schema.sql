-- The same indexes as the SQLite schema: lookups by party use the index of
-- UNIQUE (party_id, vip_index), so this one only cost writes.
DROP INDEX members_party;
