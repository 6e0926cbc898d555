//! Heartbeats, the hottest write, coalesced: a member verified recently only
//! has its time noted in memory, and one batch write per flush interval
//! stores every noted time. Staleness is bounded by the flush interval,
//! far below the peer timeout.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lanrage_proto::{PartyId, PeerId, ServerMessage, Timestamp};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{
    Result, Service,
    parties::{must_be_caller, roster_of},
};
use crate::{events::Event, telemetry::error_chain};

/// How long a verified membership is trusted without asking the database.
const VERIFIED_FOR: Duration = Duration::from_secs(30);

type Key = (PartyId, PeerId);

/// Heartbeats waiting for the next flush, and memberships known to hold.
#[derive(Debug, Default)]
pub(crate) struct Heartbeats {
    pending: Mutex<HashMap<Key, Timestamp>>,
    verified: Mutex<HashMap<Key, Instant>>,
}

impl Heartbeats {
    fn is_verified(&self, key: &Key) -> bool {
        self.verified
            .lock()
            .get(key)
            .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
    }

    fn note(&self, key: Key, at: Timestamp) {
        self.pending.lock().insert(key, at);
    }

    fn verify(&self, key: Key) {
        self.verified.lock().insert(key, Instant::now());
    }

    /// Forgets memberships an event ended.
    pub(super) fn forget(&self, message: &ServerMessage) {
        let mut verified = self.verified.lock();
        match message {
            ServerMessage::PeerLeft {
                party_id, peer_id, ..
            } => {
                verified.remove(&(party_id.clone(), peer_id.clone()));
            }
            ServerMessage::PartyEnded { party_id, .. } => {
                verified.retain(|(party, _), _| party != party_id);
            }
            _ => {}
        }
    }

    fn take(&self) -> Vec<(PartyId, PeerId, Timestamp)> {
        let pending = std::mem::take(&mut *self.pending.lock());
        pending
            .into_iter()
            .map(|((party, peer), at)| (party, peer, at))
            .collect()
    }
}

impl Service {
    /// Records that the caller is alive.
    pub async fn heartbeat(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<()> {
        must_be_caller(caller, peer_id)?;
        let now = Timestamp::now();
        let key = (party_id.clone(), peer_id.clone());
        if self.heartbeats.is_verified(&key) {
            self.heartbeats.note(key, now);
            return Ok(());
        }
        // Not known yet: one write both checks the membership and stores it.
        if self.store.touch_member(party_id, peer_id, now).await? {
            self.heartbeats.verify(key);
            return Ok(());
        }
        // Which of the two refusals, as the rules word them. A peer that
        // joined since the write passes: its join stamped it just now.
        let snapshot = self.store.snapshot(party_id).await?;
        lanrage_rules::check_member(party_id, roster_of(snapshot.as_ref()).as_ref(), peer_id)?;
        Ok(())
    }

    /// Writes the noted heartbeats in one batch.
    pub async fn flush_heartbeats(&self) -> Result<()> {
        let beats = self.heartbeats.take();
        if beats.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.store.touch_members(&beats).await {
            // Put them back: the next flush tries again.
            for (party, peer, at) in beats {
                self.heartbeats.note((party, peer), at);
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Flushes heartbeats every `every` until `shutdown`, then once more;
    /// forgets verified memberships as members leave.
    pub async fn run_heartbeat_flusher(self, every: Duration, shutdown: impl Future<Output = ()>) {
        let mut events = self.events.subscribe();
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {
                    if let Err(error) = self.flush_heartbeats().await {
                        self.count_failure(&error);
                        tracing::warn!(error = %error_chain(&error), "cannot store heartbeats; retrying");
                    }
                }
                event = events.recv() => match event {
                    Ok(Event::Party { message, .. }) => self.heartbeats.forget(&message),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Some departures were missed: trust nothing.
                        self.heartbeats.verified.lock().clear();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        if let Err(error) = self.flush_heartbeats().await {
            self.count_failure(&error);
            tracing::warn!(error = %error_chain(&error), "heartbeats not stored at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::panic_holding;

    #[test]
    fn a_panic_while_heartbeats_are_locked_loses_no_later_one() {
        let heartbeats = Heartbeats::default();
        panic_holding(|| heartbeats.pending.lock());
        panic_holding(|| heartbeats.verified.lock());
        let key = (PartyId::parse("p").unwrap(), PeerId::parse("a").unwrap());

        let at = Timestamp::now();
        heartbeats.note(key.clone(), at);
        assert_eq!(
            heartbeats.take(),
            vec![(key.0.clone(), key.1.clone(), at)],
            "a noted heartbeat is flushed"
        );

        heartbeats.verify(key.clone());
        assert!(heartbeats.is_verified(&key));
        heartbeats.forget(&ServerMessage::PeerLeft {
            party_id: key.0.clone(),
            peer_id: key.1.clone(),
            reason: None,
            seq: 2,
        });
        assert!(
            !heartbeats.is_verified(&key),
            "a departure is not trusted on"
        );
    }
}
