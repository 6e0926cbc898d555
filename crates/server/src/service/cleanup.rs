//! The cleanup loop: stale peers (through the party rules, so members hear
//! of it), orphaned parties, expired tokens and signals, silent relays, and
//! old event-log rows.

use std::{future::Future, time::Duration};

use lanrage_proto::{PartyId, PeerId, Timestamp};
use lanrage_rules::{self as rules, Removal};

use super::{
    Change, Result, Service, WriteOp,
    parties::{Left, roster},
};
use crate::{store::Swept, telemetry::error_chain};

/// A party's event log keeps at least its last this many events (the
/// write path keeps at most `--event-log-max-per-party`)...
const KEEP_EVENTS: u64 = super::parties::MIN_EVENT_LOG;
/// ...and, up to that maximum, every event of this many last seconds.
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
    /// Steps that failed (logged); the pass went on without them.
    pub failures: u64,
}

impl Service {
    /// One cleanup pass at `now`. A step that fails is logged and skipped,
    /// so one bad row or a busy database does not stall the rest.
    pub async fn cleanup_once(&self, now: Timestamp) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        // Heartbeats noted in memory count: store them before judging.
        if let Err(error) = self.flush_heartbeats().await {
            self.count_failure(&error);
            tracing::warn!(error = %error_chain(&error), "cannot store heartbeats before cleanup");
        }
        let cutoff = rules::stale_cutoff(now, Duration::from_secs(self.config.peer_timeout_secs));
        // The store's query finds the candidates (`last_seen < cutoff`,
        // the rules' `is_stale` in SQL); each removal asks the rules again
        // inside its own transaction.
        for (party_id, peer_id) in self.store.stale_members(cutoff).await? {
            match self.remove_if_stale(&party_id, &peer_id, cutoff, now).await {
                Ok(None) => {}
                Ok(Some(left)) => {
                    report.stale_peers += 1;
                    report.ended_parties += u64::from(left == Left::PartyDeleted);
                }
                Err(error) => {
                    report.failures += 1;
                    self.count_failure(&error);
                    tracing::warn!(%party_id, %peer_id, error = %error_chain(&error), "cannot remove a stale peer");
                }
            }
        }
        for party_id in self.store.orphaned_parties().await? {
            match self.end_if_orphaned(&party_id, now).await {
                Ok(ended) => report.ended_parties += u64::from(ended),
                Err(error) => {
                    report.failures += 1;
                    self.count_failure(&error);
                    tracing::warn!(%party_id, error = %error_chain(&error), "cannot end an orphaned party");
                }
            }
        }
        let relay_cutoff = now.plus_secs(-secs(self.config.relay_timeout_secs));
        match self
            .store
            .sweep(
                now,
                relay_cutoff,
                KEEP_EVENTS,
                now.plus_secs(-KEEP_EVENTS_SECS),
            )
            .await
        {
            Ok(swept) => report.swept = swept,
            Err(error) => {
                report.failures += 1;
                self.metrics.count_db_error(&error);
                tracing::warn!(error = %error_chain(&error), "cannot sweep expired rows");
            }
        }
        // Reports past their TTL stop counting; every choice is looked at
        // again (the relays' states move with the clock too).
        let rtt_cutoff = now.plus_secs(-secs(self.config.rtt_report_ttl_secs));
        match self.store.sweep_rtts(rtt_cutoff).await {
            Ok(_) => {}
            Err(error) => {
                report.failures += 1;
                self.metrics.count_db_error(&error);
                tracing::warn!(error = %error_chain(&error), "cannot sweep expired round-trip reports");
            }
        }
        self.relay_dirty.everyone();
        if let Err(error) = self.sweep_paths(now).await {
            report.failures += 1;
            self.count_failure(&error);
            tracing::warn!(error = %error_chain(&error), "cannot sweep old path reports and statistics");
        }
        let metrics = &self.metrics;
        metrics.count_removed("stale_peers", report.stale_peers);
        metrics.count_removed("ended_parties", report.ended_parties);
        metrics.count_removed("expired_tokens", report.swept.tokens);
        metrics.count_removed("silent_relays", report.swept.relays);
        metrics.count_removed("expired_signals", report.swept.signals);
        metrics.count_removed("delivered_signals", report.swept.delivered_signals);
        metrics.count_removed("old_events", report.swept.events);
        metrics.count_removed("expired_challenges", report.swept.challenges);
        metrics.count_removed("rested_invites", report.swept.invites);
        Ok(report)
    }

    /// Removes a member still silent since before `cutoff` (it may have
    /// sent a heartbeat, left or moved since the scan).
    async fn remove_if_stale(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Left>> {
        let op = WriteOp::RemoveIfStale {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
            cutoff,
            now,
        };
        self.write(op).await?.try_into()
    }

    pub(super) async fn remove_if_stale_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Left>> {
        let Some((party, members)) = change.tx.party_and_members(party_id).await? else {
            return Ok(None);
        };
        let silent = Removal::TimedOut {
            silent_since: cutoff,
        };
        Self::remove_member(change, &party, &members, peer_id, silent, now).await
    }

    /// Ends a party whose host is no longer among its members (the store's
    /// query finds candidates; the rules decide).
    async fn end_if_orphaned(&self, party_id: &PartyId, now: Timestamp) -> Result<bool> {
        let op = WriteOp::EndIfOrphaned {
            party_id: party_id.clone(),
            now,
        };
        self.write(op).await?.try_into()
    }

    pub(super) async fn end_if_orphaned_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        now: Timestamp,
    ) -> Result<bool> {
        let Some((party, members)) = change.tx.party_and_members(party_id).await? else {
            return Ok(false);
        };
        let Some(reason) = rules::orphan_end(&roster(&party, &members, |_| true)) else {
            return Ok(false);
        };
        let recipients = members.into_iter().map(|m| m.peer.peer_id).collect();
        Self::end_party(change, &party, recipients, reason.as_str(), now).await?;
        Ok(true)
    }

    /// Forgives the time the server was down: peers and relays could not
    /// reach it, so their silence counts from now at the earliest.
    ///
    /// Only after a real outage: when no instance has run a cleanup pass
    /// for two intervals. An instance joining running ones, or restarting
    /// quickly, forgives nothing, so dead peers still time out.
    pub async fn forgive_downtime(&self) -> Result<bool> {
        let now = Timestamp::now();
        let idle_since = now.plus_secs(-2 * secs(self.config.cleanup_interval_secs));
        Ok(self.store.forgive_downtime(now, idle_since).await?)
    }

    /// Runs a cleanup pass every interval until `shutdown` completes.
    pub async fn run_cleanup(self, shutdown: impl Future<Output = ()>) {
        // The first pass comes one interval after start, not at once.
        let every = self.config.cleanup_interval();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            let now = Timestamp::now();
            match self
                .store
                .claim_cleanup(now, self.config.cleanup_interval_secs)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("another instance ran this interval's cleanup");
                    continue;
                }
                Err(error) => {
                    self.metrics.count_db_error(&error);
                    tracing::warn!(error = %error_chain(&error), "cannot claim the cleanup pass");
                    continue;
                }
            }
            match self.cleanup_once(now).await {
                Ok(report) if report != CleanupReport::default() => {
                    tracing::info!(
                        stale_peers = report.stale_peers,
                        ended_parties = report.ended_parties,
                        tokens = report.swept.tokens,
                        relays = report.swept.relays,
                        signals = report.swept.signals,
                        events = report.swept.events,
                        failures = report.failures,
                        "cleanup removed stale state"
                    );
                }
                Ok(_) => tracing::debug!("cleanup found nothing to remove"),
                Err(error) => {
                    self.count_failure(&error);
                    tracing::warn!(error = %error_chain(&error), "cleanup pass failed; retrying next interval");
                }
            }
        }
    }
}
