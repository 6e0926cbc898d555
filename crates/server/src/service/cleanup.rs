//! The cleanup loop: stale peers (through the party rules, so members hear
//! of it), orphaned parties, expired tokens and signals, silent relays, and
//! old event-log rows.

use std::future::Future;

use lanrage_proto::{ServerMessage, Timestamp};

use super::{
    Result, Service,
    parties::{Left, Pending, Removal},
};
use crate::store::Swept;

/// A party's event log keeps at least its last this many events...
const KEEP_EVENTS: u64 = 256;
/// ...and at least this many seconds of history.
const KEEP_EVENTS_SECS: i64 = 600;

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What one cleanup pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub stale_peers: u64,
    pub ended_parties: u64,
    pub swept: Swept,
}

impl Service {
    /// One cleanup pass at `now`.
    pub async fn cleanup_once(&self, now: Timestamp) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let cutoff = now.plus_secs(-secs(self.config.peer_timeout_secs));
        for (party_id, peer_id) in self.store.stale_members(cutoff).await? {
            let _order = self.sequencer.lock().await;
            let mut pending = Pending::default();
            let mut tx = self.store.begin().await?;
            let Some(party) = tx.party(&party_id).await? else {
                continue;
            };
            // Between the scan and this transaction the peer may have sent a
            // heartbeat, left or moved: only a member still stale goes.
            let still_stale = tx
                .members(&party_id)
                .await?
                .iter()
                .any(|m| m.peer.peer_id == peer_id && m.peer.last_seen < cutoff);
            if !still_stale {
                continue;
            }
            let left = Self::remove_member(
                tx.as_mut(),
                &party,
                &peer_id,
                Removal::TimedOut,
                now,
                &mut pending,
            )
            .await?;
            tx.commit().await?;
            self.publish(pending);
            report.stale_peers += 1;
            if left == Left::PartyDeleted {
                report.ended_parties += 1;
            }
        }
        for party_id in self.store.orphaned_parties().await? {
            let _order = self.sequencer.lock().await;
            let mut pending = Pending::default();
            let mut tx = self.store.begin().await?;
            let Some(party) = tx.party(&party_id).await? else {
                continue;
            };
            let members = tx.members(&party_id).await?;
            if members.iter().any(|m| m.peer.peer_id == party.host_id) {
                continue;
            }
            let seq = tx.next_seq(&party_id).await?;
            tx.delete_party(&party_id).await?;
            tx.commit().await?;
            pending.party(
                ServerMessage::PartyEnded {
                    party_id,
                    reason: "host_left".into(),
                    seq,
                },
                members.into_iter().map(|m| m.peer.peer_id).collect(),
            );
            self.publish(pending);
            report.ended_parties += 1;
        }
        report.swept = self
            .store
            .sweep(
                now,
                now.plus_secs(-secs(self.config.relay_timeout_secs)),
                KEEP_EVENTS,
                now.plus_secs(-KEEP_EVENTS_SECS),
            )
            .await?;
        Ok(report)
    }

    /// Runs a cleanup pass every interval until `shutdown` completes.
    pub async fn run_cleanup(self, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.config.cleanup_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            match self.cleanup_once(Timestamp::now()).await {
                Ok(report) if report != CleanupReport::default() => {
                    tracing::info!(
                        stale_peers = report.stale_peers,
                        ended_parties = report.ended_parties,
                        tokens = report.swept.tokens,
                        relays = report.swept.relays,
                        signals = report.swept.signals,
                        events = report.swept.events,
                        "cleanup removed stale state"
                    );
                }
                Ok(_) => tracing::debug!("cleanup found nothing to remove"),
                Err(error) => tracing::warn!(%error, "cleanup pass failed; retrying next interval"),
            }
        }
    }
}
