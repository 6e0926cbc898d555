-- Logging an event advances its party's counter, and removing a member
-- drops the signals waiting for it: each in the same statement as the
-- change, so a join or a leave costs fewer round trips to the database.
CREATE TRIGGER party_events_advance_seq AFTER INSERT ON party_events
BEGIN
    UPDATE parties SET seq = NEW.seq WHERE party_id = NEW.party_id AND seq < NEW.seq;
END;

CREATE TRIGGER members_drop_signals AFTER DELETE ON members
BEGIN
    DELETE FROM signals WHERE party_id = OLD.party_id AND to_peer_id = OLD.peer_id;
END;
