//! What the WebSocket channel and the health routes read through the
//! service, so no transport reaches the store itself.

use lanrage_proto::{PartyId, PeerId, ServerMessage};

use super::{Result, Service};
use crate::store::PoolState;

impl Service {
    /// The peer's party and that party's current `seq`, if it is in one.
    pub async fn membership(&self, peer_id: &PeerId) -> Result<Option<(PartyId, u64)>> {
        Ok(self.store().membership(peer_id).await?)
    }

    /// The party's logged events after `after_seq`, in order, at most
    /// `limit` of them (a resume's replay).
    pub async fn events_after(
        &self,
        party_id: &PartyId,
        after_seq: u64,
        limit: u64,
    ) -> Result<Vec<ServerMessage>> {
        Ok(self
            .store()
            .events_after(party_id, after_seq, limit)
            .await?)
    }

    /// Records that the queued signal `id` was written to its target's
    /// socket: a later drain does not return it again.
    pub async fn mark_signal_delivered(&self, id: i64) -> Result<()> {
        Ok(self.store().mark_signal_delivered(id).await?)
    }

    /// Whether the database answers.
    pub async fn check_database(&self) -> Result<()> {
        Ok(self.store().ping().await?)
    }

    /// Counts `error` in the metrics if the database caused it.
    pub fn count_db_error(&self, error: &super::Error) {
        if let super::Error::Store(store) = error {
            self.metrics().count_db_error(store);
        }
    }

    /// The state of the database's connection pools, for the metrics.
    pub fn pool_states(&self) -> Vec<PoolState> {
        self.store().pools()
    }
}
