//! Party snapshots kept in memory, so reading a party (the most frequent
//! request after heartbeats) costs no database round trip.
//!
//! Only for a store whose every change goes through this process (SQLite):
//! each committed change drops its party's entry before the change's
//! response is sent, so a client always reads its own writes. `last_seen`
//! changes by heartbeats, which are not events, so an entry also expires
//! after the heartbeat flush interval: a cached `last_seen` is never staler
//! than a stored one would be.

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Bytes;
use lanrage_proto::PartyId;
use parking_lot::RwLock;

use crate::store::PartyWithMembers;

/// A party and its members as read at one moment, with the JSON answers
/// made from it. Every member reading a party gets the same bytes, so they
/// are written once per snapshot, not once per read.
#[derive(Debug)]
pub(crate) struct PartySnapshot {
    parts: PartyWithMembers,
    /// The body of `GET /parties/{id}`.
    pub(crate) party_json: OnceLock<Bytes>,
    /// The body of `GET /parties/{id}/peers`.
    pub(crate) peers_json: OnceLock<Bytes>,
}

impl PartySnapshot {
    pub(crate) fn new(parts: PartyWithMembers) -> Self {
        Self {
            parts,
            party_json: OnceLock::new(),
            peers_json: OnceLock::new(),
        }
    }
}

impl Deref for PartySnapshot {
    type Target = PartyWithMembers;

    fn deref(&self) -> &PartyWithMembers {
        &self.parts
    }
}

pub(crate) type Snapshot = Arc<PartySnapshot>;

/// Most parties kept; beyond it the cache starts over.
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug)]
pub(crate) struct SnapshotCache {
    entries: RwLock<HashMap<PartyId, (Snapshot, Instant)>>,
    /// Bumped by every invalidation: a snapshot read from the database
    /// while a change committed is not cached.
    generation: AtomicU64,
    fresh_for: Duration,
}

impl SnapshotCache {
    pub(crate) fn new(fresh_for: Duration) -> Self {
        Self {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            fresh_for,
        }
    }

    pub(crate) fn get(&self, party_id: &PartyId) -> Option<Snapshot> {
        let entries = self.entries.read();
        let (snapshot, cached_at) = entries.get(party_id)?;
        (cached_at.elapsed() < self.fresh_for).then(|| snapshot.clone())
    }

    /// The generation to pass to [`SnapshotCache::put`] for a read that
    /// starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn put(&self, party_id: PartyId, snapshot: Snapshot, read_since: u64) {
        let mut entries = self.entries.write();
        // Checked under the lock: an invalidation cannot slip in between.
        if self.generation.load(Ordering::Acquire) != read_since {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(party_id, (snapshot, Instant::now()));
    }

    pub(crate) fn invalidate(&self, party_id: &PartyId) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(party_id);
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::{Name, PeerId, Timestamp};

    use crate::{store::PartyRecord, testing::panic_holding};

    use super::*;

    fn snapshot(seq: u64) -> Snapshot {
        Arc::new(PartySnapshot::new((
            PartyRecord {
                party_id: PartyId::parse("p").unwrap(),
                name: Name::parse("n").unwrap(),
                host_id: PeerId::parse("h").unwrap(),
                created_at: Timestamp::now(),
                seq,
            },
            Vec::new(),
        )))
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let party = PartyId::parse("p").unwrap();
        let since = cache.generation();
        cache.invalidate(&party);
        cache.put(party.clone(), snapshot(1), since);
        assert!(cache.get(&party).is_none());

        let since = cache.generation();
        cache.put(party.clone(), snapshot(2), since);
        assert_eq!(cache.get(&party).unwrap().0.seq, 2);
        cache.invalidate(&party);
        assert!(cache.get(&party).is_none());
    }

    #[test]
    fn a_panic_while_the_cache_is_locked_leaves_no_stale_entry() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let party = PartyId::parse("p").unwrap();
        cache.put(party.clone(), snapshot(1), cache.generation());
        panic_holding(|| cache.entries.write());
        assert_eq!(cache.get(&party).unwrap().0.seq, 1);
        cache.invalidate(&party);
        assert!(cache.get(&party).is_none(), "a change drops its party");
        cache.put(party.clone(), snapshot(2), cache.generation());
        assert_eq!(cache.get(&party).unwrap().0.seq, 2);
    }

    #[test]
    fn entries_expire() {
        let cache = SnapshotCache::new(Duration::ZERO);
        let party = PartyId::parse("p").unwrap();
        cache.put(party.clone(), snapshot(1), cache.generation());
        assert!(cache.get(&party).is_none());
    }
}
