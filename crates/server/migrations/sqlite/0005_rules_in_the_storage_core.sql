-- Advancing a party's counter when an event is logged, and dropping the
-- signals waiting for a member that leaves, are now statements of the
-- storage core (`store/core.rs`), the same on both backends: sent in the
-- same round trip as the change, so the triggers would only repeat them.
DROP TRIGGER party_events_advance_seq;
DROP TRIGGER members_drop_signals;
