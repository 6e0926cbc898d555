//! NAT hole-punching signals between members of one party.

use std::sync::Arc;

use lanrage_proto::{PartyId, PeerId, Signal, SignalData, Timestamp};

use super::{Error, Result, Service};
use crate::events::Event;

impl Service {
    /// Queues a signal from the caller to another member, and announces it
    /// so a connected target gets it at once.
    pub async fn send_signal(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        to_peer_id: PeerId,
        signal_data: SignalData,
    ) -> Result<Signal> {
        let now = Timestamp::now();
        let mut change = self.change().await?;
        let tx = &mut change.tx;
        if tx.party(party_id).await?.is_none() {
            return Err(Error::NotFound(format!("party {party_id} not found")));
        }
        let members = tx.members(party_id).await?;
        let is_member = |id: &PeerId| members.iter().any(|m| m.peer.peer_id == *id);
        if !is_member(caller) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can signal in it"
            )));
        }
        if *caller == to_peer_id {
            return Err(Error::Invalid("a peer cannot signal itself".into()));
        }
        if !is_member(&to_peer_id) {
            return Err(Error::NotFound(format!(
                "peer {to_peer_id} is not in party {party_id}"
            )));
        }
        if tx.queued_signals(party_id, &to_peer_id, now).await? >= self.config.signal_queue_max {
            return Err(Error::TooManyRequests(format!(
                "{to_peer_id} has {} signals waiting; try again once it has read them",
                self.config.signal_queue_max
            )));
        }
        let signal = Signal {
            party_id: party_id.clone(),
            from_peer_id: caller.clone(),
            to_peer_id,
            signal_data,
            sent_at: now,
        };
        let ttl = i64::try_from(self.config.signal_ttl_secs).unwrap_or(i64::MAX);
        let id = tx.insert_signal(&signal, now.plus_secs(ttl)).await?;
        change.publish(Event::Signal {
            signal: Arc::new(signal.clone()),
            id,
        });
        change.commit().await?;
        self.metrics.signals_sent.inc();
        Ok(signal)
    }

    /// Takes the caller's queued signals in a party, oldest first.
    pub async fn drain_signals(&self, caller: &PeerId, party_id: &PartyId) -> Result<Vec<Signal>> {
        let Some(snapshot) = self.snapshot(party_id).await? else {
            return Err(Error::NotFound(format!("party {party_id} not found")));
        };
        if !snapshot.1.iter().any(|m| m.peer.peer_id == *caller) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can read its signals"
            )));
        }
        Ok(self
            .store
            .drain_signals(party_id, caller, Timestamp::now())
            .await?)
    }
}
