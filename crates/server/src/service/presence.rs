//! Presence (DESIGN, "Capabilities beyond v1", section 4): a member is
//! present while it has an open socket, or was heard from (a heartbeat or
//! any authenticated request) within `--host-grace-secs`.
//!
//! Heartbeats are stored as `last_seen` already. The rest is noted here in
//! memory, per instance, and stored as the member's `heard_at` every
//! presence interval (at most 5 s), so every instance, and the loop that
//! replaces absent hosts on any of them, judges from the database. An open
//! socket is stored as heard at each third of the grace period, so it
//! never lapses while it stays open. This instance's own notes also count
//! at once when it answers a party read, which therefore never shows a
//! member absent that it has just heard from.

use std::{collections::HashMap, future::Future, time::Duration};

use lanrage_proto::{PeerId, Timestamp};
use lanrage_rules as rules;
use parking_lot::Mutex;

use super::{Change, Result, Service, WriteOp, parties::roster};
use crate::telemetry::error_chain;

/// A peer heard again within this long is not noted again.
const NOTE_EVERY_MICROS: i64 = 1_000_000;

/// What this instance heard, not yet stored, and its open sockets.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Peers heard from by a request, when last; pruned once older than
    /// the grace period.
    heard: Mutex<HashMap<PeerId, Timestamp>>,
    /// Peers heard since the last flush (what it must store).
    unstored: Mutex<HashMap<PeerId, Timestamp>>,
    /// Open authenticated sockets per peer.
    sockets: Mutex<HashMap<PeerId, usize>>,
}

impl Presence {
    /// Notes `peer_id` heard at `at`. Called on every authenticated
    /// request, so a peer heard less than a second ago costs one lookup
    /// and no allocation: presence is judged in seconds of grace.
    pub(crate) fn heard(&self, peer_id: &PeerId, at: Timestamp) {
        {
            let mut heard = self.heard.lock();
            match heard.get_mut(peer_id) {
                Some(last) if at.as_micros() - last.as_micros() < NOTE_EVERY_MICROS => return,
                Some(last) => *last = at,
                None => {
                    heard.insert(peer_id.clone(), at);
                }
            }
        }
        self.unstored.lock().insert(peer_id.clone(), at);
    }

    pub(crate) fn socket_opened(&self, peer_id: &PeerId) {
        *self.sockets.lock().entry(peer_id.clone()).or_default() += 1;
        self.heard(peer_id, Timestamp::now());
    }

    pub(crate) fn socket_closed(&self, peer_id: &PeerId) {
        let mut sockets = self.sockets.lock();
        if let Some(open) = sockets.get_mut(peer_id) {
            *open -= 1;
            if *open == 0 {
                sockets.remove(peer_id);
            }
        }
        drop(sockets);
        // Present for the grace period after its socket closes, as after
        // any other sign of life.
        self.heard(peer_id, Timestamp::now());
    }

    /// Marks a failed flush could not store, to store next time (newer
    /// marks taken since win).
    fn put_back(&self, marks: Vec<(PeerId, Timestamp)>) {
        let mut unstored = self.unstored.lock();
        for (peer_id, at) in marks {
            let kept = unstored.entry(peer_id).or_insert(at);
            *kept = (*kept).max(at);
        }
    }

    /// Whether this instance knows `peer_id` to be present as of `cutoff`.
    pub(crate) fn is_present_here(&self, peer_id: &PeerId, cutoff: Timestamp) -> bool {
        self.sockets.lock().contains_key(peer_id)
            || self
                .heard
                .lock()
                .get(peer_id)
                .is_some_and(|at| *at >= cutoff)
    }

    /// What to store: peers heard since the last flush, and (when
    /// `sockets_too`) every peer with an open socket, heard `now`. Forgets
    /// requests older than `cutoff`.
    fn take(
        &self,
        now: Timestamp,
        cutoff: Timestamp,
        sockets_too: bool,
    ) -> Vec<(PeerId, Timestamp)> {
        let mut marks = std::mem::take(&mut *self.unstored.lock());
        if sockets_too {
            for peer_id in self.sockets.lock().keys() {
                marks.insert(peer_id.clone(), now);
            }
        }
        self.heard.lock().retain(|_, at| *at >= cutoff);
        marks.into_iter().collect()
    }
}

/// Keeps its peer present while held (an open socket).
#[derive(Debug)]
pub struct SocketPresence {
    presence: std::sync::Arc<Presence>,
    peer_id: PeerId,
}

impl Drop for SocketPresence {
    fn drop(&mut self) {
        self.presence.socket_closed(&self.peer_id);
    }
}

impl Service {
    /// Counts `peer_id` present until the guard is dropped.
    pub fn present_while_open(&self, peer_id: &PeerId) -> SocketPresence {
        self.presence.socket_opened(peer_id);
        SocketPresence {
            presence: self.presence.clone(),
            peer_id: peer_id.clone(),
        }
    }

    /// The instant before which a member last heard from is absent.
    pub(crate) fn presence_cutoff(&self, now: Timestamp) -> Timestamp {
        rules::stale_cutoff(now, Duration::from_secs(self.config.host_grace_secs))
    }

    /// Stores what this instance heard ([`Presence`]).
    async fn store_presence(&self, now: Timestamp, sockets_too: bool) -> Result<()> {
        let marks = self
            .presence
            .take(now, self.presence_cutoff(now), sockets_too);
        if let Err(error) = self.store.mark_heard(&marks).await {
            // Kept for the next round: a lost mark could make another
            // instance take a present host for absent.
            self.presence.put_back(marks);
            return Err(error.into());
        }
        Ok(())
    }

    /// One round of the presence loop: heartbeats and presence stored,
    /// then every migrating party whose host is absent handed to the first
    /// present member in succession. Returns how many hosts changed.
    pub async fn presence_once(&self, now: Timestamp, sockets_too: bool) -> Result<u64> {
        self.flush_heartbeats().await?;
        self.store_presence(now, sockets_too).await?;
        let cutoff = self.presence_cutoff(now);
        let mut changed = 0;
        for party_id in self.store.absent_hosts(cutoff).await? {
            let op = WriteOp::ReplaceAbsentHost {
                party_id: party_id.clone(),
                cutoff,
                now,
            };
            match self.write(op).await.and_then(bool::try_from) {
                Ok(replaced) => changed += u64::from(replaced),
                Err(error) => {
                    self.count_failure(&error);
                    tracing::warn!(%party_id, error = %error_chain(&error), "cannot replace an absent host");
                }
            }
        }
        Ok(changed)
    }

    /// Inside the write: replaces the host of `party_id` if it is still
    /// absent as of `cutoff` and someone present can take over.
    pub(super) async fn replace_absent_host_in(
        change: &mut Change<'_>,
        party_id: &lanrage_proto::PartyId,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let Some((party, members)) = change.tx.party_and_members(party_id).await? else {
            return Ok(false);
        };
        // Judged from the database alone, like every instance would.
        let present =
            |m: &crate::store::MemberRecord| m.peer.last_seen >= cutoff || m.heard_at >= cutoff;
        let Some(plan) =
            rules::plan_absent_host(&roster(&party, &members, present), party.host_epoch)
        else {
            return Ok(false);
        };
        Self::change_host(change, party, &members, plan, "absent", now).await?;
        Ok(true)
    }

    /// Runs the presence loop every presence interval until `shutdown`.
    pub async fn run_presence(self, shutdown: impl Future<Output = ()>) {
        let every = self.config.presence_interval();
        // Sockets are stored as heard once per third of the grace period.
        let third = Duration::from_secs(self.config.host_grace_secs).as_millis() / 3;
        let socket_rounds = (third / every.as_millis().max(1)).max(1);
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut round: u128 = 0;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            let sockets_too = round.is_multiple_of(socket_rounds);
            round += 1;
            match self.presence_once(Timestamp::now(), sockets_too).await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(changed, "replaced absent hosts"),
                Err(error) => {
                    self.count_failure(&error);
                    tracing::warn!(error = %error_chain(&error), "presence round failed; retrying next interval");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str) -> PeerId {
        PeerId::parse(id).unwrap()
    }

    #[test]
    fn sockets_count_until_their_last_closes_and_requests_for_the_grace() {
        let presence = Presence::default();
        let now = Timestamp::now();
        let later = now.plus_secs(100);
        presence.socket_opened(&peer("a"));
        presence.socket_opened(&peer("a"));
        presence.socket_closed(&peer("a"));
        assert!(
            presence.is_present_here(&peer("a"), later),
            "one socket still open"
        );
        presence.socket_closed(&peer("a"));
        assert!(!presence.is_present_here(&peer("a"), later));
        assert!(presence.is_present_here(&peer("a"), now.plus_secs(-1)));

        presence.heard(&peer("b"), now);
        assert!(presence.is_present_here(&peer("b"), now));
        assert!(!presence.is_present_here(&peer("b"), later));
    }

    #[test]
    fn a_flush_stores_what_was_heard_once_and_open_sockets_when_asked() {
        let presence = Presence::default();
        let now = Timestamp::now();
        presence.heard(&peer("b"), now);
        presence.socket_opened(&peer("s"));
        let mut first = presence.take(now, now.plus_secs(-10), false);
        first.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            first.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["b", "s"]
        );
        assert!(presence.take(now, now.plus_secs(-10), false).is_empty());
        let sockets = presence.take(now, now.plus_secs(-10), true);
        assert_eq!(sockets, [(peer("s"), now)]);
        presence.take(now, now.plus_secs(1), false);
        assert!(
            !presence.is_present_here(&peer("b"), now),
            "old requests are forgotten"
        );
    }
}
