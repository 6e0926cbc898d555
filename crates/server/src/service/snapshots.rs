//! Party snapshots kept in memory, so reading a party (the most frequent
//! request after heartbeats) costs no database round trip.
//!
//! An entry is dropped by every change to its party before the change's
//! response is sent, so a client always reads its own writes: on SQLite by
//! the group-commit writer, the only writer; on PostgreSQL by the request
//! that committed the change, and on every other instance by the event
//! feed (each committed change arrives there with its party), through the
//! bus's observer ([`SnapshotCache::observe`]). While that feed is down
//! another instance's change would go unseen, so the cache serves nothing
//! from [`Event::Interrupted`] until the [`Event::Resync`] that ends the
//! outage, and starts again empty.
//!
//! `last_seen` changes by heartbeats, which are not events, so an entry also
//! expires after the heartbeat flush interval: a cached `last_seen` is
//! never staler than a stored one would be.

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Bytes;
use lanrage_proto::PartyId;
use parking_lot::RwLock;

use crate::{events::Event, store::PartyWithMembers};

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
    /// False while changes may go unseen (the event feed is down).
    serving: AtomicBool,
}

impl SnapshotCache {
    pub(crate) fn new(fresh_for: Duration) -> Self {
        Self {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            fresh_for,
            serving: AtomicBool::new(true),
        }
    }

    pub(crate) fn get(&self, party_id: &PartyId) -> Option<Snapshot> {
        let entries = self.entries.read();
        if !self.serving.load(Ordering::Acquire) {
            return None;
        }
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
        if self.generation.load(Ordering::Acquire) != read_since
            || !self.serving.load(Ordering::Acquire)
        {
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

    /// Serves nothing from now on.
    pub(crate) fn disable(&self) {
        self.reset(false);
    }

    /// Drops everything; from now on serves entries only if `serving`.
    fn reset(&self, serving: bool) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.serving.store(serving, Ordering::Release);
        entries.clear();
    }

    /// Follows the bus (see the module doc): called with each event as it
    /// is published.
    pub(crate) fn observe(&self, event: &Event) {
        match event {
            Event::Party { message, .. } => {
                if let Some((party_id, _)) = message.party_seq() {
                    self.invalidate(party_id);
                }
            }
            Event::Signal { .. } | Event::Revoked { .. } => {}
            Event::Interrupted => self.reset(false),
            // A read that began before the feed was back is not cached
            // (the reset moves the generation on): it may have missed a
            // change no notification announced.
            Event::Resync => self.reset(true),
        }
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
                settings: Default::default(),
                host_epoch: 1,
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
    fn nothing_is_served_while_the_feed_is_down_and_nothing_from_before_after() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let party = PartyId::parse("p").unwrap();
        cache.put(party.clone(), snapshot(1), cache.generation());
        let before_the_outage = cache.generation();

        cache.observe(&Event::Interrupted);
        assert!(cache.get(&party).is_none(), "entries are dropped");
        let during_the_outage = cache.generation();
        cache.put(party.clone(), snapshot(2), during_the_outage);
        assert!(cache.get(&party).is_none(), "reads are not cached");

        cache.observe(&Event::Resync);
        cache.put(party.clone(), snapshot(2), during_the_outage);
        cache.put(party.clone(), snapshot(2), before_the_outage);
        assert!(
            cache.get(&party).is_none(),
            "a read begun before the feed was back may have missed a change"
        );
        cache.put(party.clone(), snapshot(3), cache.generation());
        assert_eq!(cache.get(&party).unwrap().0.seq, 3);
    }

    #[test]
    fn an_announced_change_drops_its_party_only() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let changed = PartyId::parse("p").unwrap();
        let other = PartyId::parse("q").unwrap();
        cache.put(changed.clone(), snapshot(1), cache.generation());
        cache.put(other.clone(), snapshot(1), cache.generation());
        cache.observe(&Event::Party {
            message: Arc::new(lanrage_proto::ServerMessage::PeerLeft {
                party_id: changed.clone(),
                peer_id: PeerId::parse("h").unwrap(),
                reason: None,
                seq: 2,
            }),
            recipients: Arc::new([]),
        });
        assert!(cache.get(&changed).is_none());
        assert_eq!(cache.get(&other).unwrap().0.seq, 1);
    }

    #[test]
    fn entries_expire() {
        let cache = SnapshotCache::new(Duration::ZERO);
        let party = PartyId::parse("p").unwrap();
        cache.put(party.clone(), snapshot(1), cache.generation());
        assert!(cache.get(&party).is_none());
    }
}
