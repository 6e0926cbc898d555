//! NAT hole-punching signals between members of one party.

use std::sync::Arc;

use lanrage_proto::{PartyId, PeerId, Signal, SignalData, Timestamp};

use super::{Change, Error, Result, Service, WriteOp};
use crate::events::Event;

/// Most signals one drain answers with: with every signal at most 16 KiB,
/// an answer stays under about 4 MiB however many members wait to signal.
pub const MAX_SIGNALS_PER_DRAIN: u64 = 256;

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
        let op = WriteOp::SendSignal {
            caller: caller.clone(),
            party_id: party_id.clone(),
            to_peer_id,
            signal_data,
        };
        let signal = self.write(op).await?.try_into()?;
        self.metrics.signals_sent.inc();
        Ok(signal)
    }

    pub(super) async fn send_signal_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: &SignalData,
    ) -> Result<Signal> {
        let now = Timestamp::now();
        let config = change.config;
        let tx = &mut change.tx;
        let Some((_, members)) = tx.party_and_members(party_id).await? else {
            return Err(Error::NotFound(format!("party {party_id} not found")));
        };
        let is_member = |id: &PeerId| members.iter().any(|m| m.peer.peer_id == *id);
        if !is_member(caller) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can signal in it"
            )));
        }
        if caller == to_peer_id {
            return Err(Error::Invalid("a peer cannot signal itself".into()));
        }
        if !is_member(to_peer_id) {
            return Err(Error::NotFound(format!(
                "peer {to_peer_id} is not in party {party_id}"
            )));
        }
        // Bounded per sender and target: one member filling its share
        // never blocks the others' signals to the same target.
        let waiting = tx.queued_signals(party_id, caller, to_peer_id, now).await?;
        if waiting >= config.signal_queue_max {
            return Err(Error::TooManyRequests(format!(
                "you have {waiting} signals waiting for {to_peer_id} (at most {} per sender); \
                 try again once it has read them",
                config.signal_queue_max
            )));
        }
        let signal = Signal {
            party_id: party_id.clone(),
            from_peer_id: caller.clone(),
            to_peer_id: to_peer_id.clone(),
            signal_data: signal_data.clone(),
            sent_at: now,
        };
        let ttl = i64::try_from(config.signal_ttl_secs).unwrap_or(i64::MAX);
        let id = tx.insert_signal(&signal, now.plus_secs(ttl)).await?;
        change.publish(Event::Signal {
            signal: Arc::new(signal.clone()),
            id,
        });
        Ok(signal)
    }

    /// Takes the caller's queued signals in a party, oldest first, at most
    /// [`MAX_SIGNALS_PER_DRAIN`]; the rest stay queued for the next poll.
    pub async fn drain_signals(&self, caller: &PeerId, party_id: &PartyId) -> Result<Vec<Signal>> {
        self.member_snapshot(caller, party_id, "its signals")
            .await?;
        let signals = self
            .store
            .drain_signals(party_id, caller, Timestamp::now(), MAX_SIGNALS_PER_DRAIN)
            .await?;
        self.metrics
            .signals_delivered
            .inc_by(u64::try_from(signals.len()).unwrap_or(u64::MAX));
        Ok(signals)
    }
}
