//! Path plan (DESIGN, "Capabilities beyond v1", section 6): members report
//! their NAT behaviour and what happened when they connected; the server
//! plans each pair (`lanrage_rules::plan_pair`) and learns per NAT-class
//! pair across the fleet.
//!
//! A party's plans are stored, so a change is told once (`path_plan`, the
//! changed pairs only) and every instance judges changes the same way. A
//! party starts being planned when a member reads its paths or reports for
//! it; from then on its plans are recomputed inside a write that locks the
//! party on each of its inputs: a NAT or outcome report at once, a join or
//! a leave within a second (the loop here), and a shift in the fleet's
//! statistics within 10 minutes, each party in its own minute of the ten,
//! never all at once.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::Duration,
};

use lanrage_proto::{
    MAX_PATH_REPORTS, MAX_RTT_MS, NatReport, PartyId, PathClassStats, PathOutcome, PathPair,
    PathPlanKind, PathReport, PathsResponse, PeerId, ServerMessage, Timestamp,
};
use lanrage_rules::{self as rules, ClassOutcomes, PairSide};
use parking_lot::Mutex;

use super::{Change, Error, Result, Service, WriteOp, host::party_in, parties::must_be_caller};
use crate::{
    config::Config,
    events::Event,
    store::{MemberRecord, PathInputs, PathReportRecord, StoredPath},
    telemetry::error_chain,
};

const DAY_MICROS: i64 = 86_400_000_000;
/// Every stored party is recomputed once in this long, for the statistics.
const STATISTICS_EVERY: Duration = Duration::from_secs(600);

fn day_of(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(DAY_MICROS)
}

/// The first day the statistics window counts.
fn first_day(config: &Config, now: Timestamp) -> i64 {
    let window = i64::try_from(config.path_stats_window_days).unwrap_or(i64::MAX);
    day_of(now).saturating_sub(window.saturating_sub(1))
}

fn reports_since(config: &Config, now: Timestamp) -> Timestamp {
    now.plus_secs(-i64::try_from(config.rtt_report_ttl_secs).unwrap_or(i64::MAX))
}

/// Each member's NAT behaviour: reported, or derived from its `nat_type`.
fn nats(members: &[MemberRecord], inputs: &PathInputs) -> HashMap<PeerId, NatReport> {
    let reported: HashMap<&PeerId, &NatReport> = inputs.nats.iter().map(|(p, n)| (p, n)).collect();
    members
        .iter()
        .map(|m| {
            let nat = reported
                .get(&m.peer.peer_id)
                .map_or_else(|| NatReport::from_nat_type(m.peer.nat_type), |n| **n);
            (m.peer.peer_id.clone(), nat)
        })
        .collect()
}

/// Every member pair's plan, `a < b`, from `inputs` (reports already
/// limited to the fresh ones).
fn plan_pairs(config: &Config, members: &[MemberRecord], inputs: &PathInputs) -> Vec<PathPair> {
    let nats = nats(members, inputs);
    let stats: HashMap<&(String, String), &ClassOutcomes> =
        inputs.stats.iter().map(|(k, v)| (k, v)).collect();
    let report = |from: &PeerId, to: &PeerId| {
        inputs
            .reports
            .iter()
            .find(|r| r.from_peer == *from && r.to_peer == *to)
    };
    let mut sorted: Vec<&MemberRecord> = members.iter().collect();
    sorted.sort_by(|x, y| x.peer.peer_id.cmp(&y.peer.peer_id));
    let mut pairs = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            let (ida, idb) = (&a.peer.peer_id, &b.peer.peer_id);
            let (ab, ba) = (report(ida, idb), report(idb, ida));
            let latest = [ab, ba].into_iter().flatten().max_by_key(|r| r.reported_at);
            #[allow(clippy::cast_precision_loss)]
            let ms = |r: &PathReportRecord| r.rtt_us.map(|us| us as f64 / 1000.0);
            let rtt_ms = match (ab.and_then(ms), ba.and_then(ms)) {
                (Some(x), Some(y)) => Some(f64::midpoint(x, y)),
                _ => [ab, ba]
                    .into_iter()
                    .flatten()
                    .filter(|r| r.rtt_us.is_some())
                    .max_by_key(|r| r.reported_at)
                    .and_then(ms),
            };
            let (nat_a, nat_b) = (nats[ida], nats[idb]);
            fn side(m: &MemberRecord, nat: NatReport) -> PairSide<'_> {
                PairSide {
                    nat,
                    public_ip: &m.peer.public_ip,
                    local_ip: &m.peer.local_ip,
                }
            }
            let class = rules::class_pair(&nat_a, &nat_b);
            let planned = rules::plan_pair(
                &side(a, nat_a),
                &side(b, nat_b),
                latest.map(|r| r.outcome),
                stats
                    .get(&class)
                    .map_or_else(ClassOutcomes::default, |s| **s),
                config.path_min_samples,
            );
            pairs.push(PathPair {
                a: ida.clone(),
                b: idb.clone(),
                plan: planned.plan,
                confidence: planned.confidence,
                basis: planned.basis,
                rtt_ms,
                observed: latest.map(|r| r.outcome),
                observed_at: latest.map(|r| r.reported_at),
            });
        }
    }
    pairs
}

/// The pairs whose plan differs from the stored one.
fn changed<'p>(pairs: &'p [PathPair], stored: &[StoredPath]) -> Vec<&'p PathPair> {
    let stored: HashMap<(&PeerId, &PeerId), PathPlanKind> =
        stored.iter().map(|(a, b, plan)| ((a, b), *plan)).collect();
    pairs
        .iter()
        .filter(|p| stored.get(&(&p.a, &p.b)) != Some(&p.plan))
        .collect()
}

/// Parties whose plans to recompute soon.
#[derive(Debug, Default)]
pub(crate) struct PathsDirty(Mutex<HashSet<PartyId>>);

impl PathsDirty {
    pub(crate) fn party(&self, party_id: &PartyId) {
        self.0.lock().insert(party_id.clone());
    }
}

/// The pairs planned `relay` or `attempt` in `stored`: what the relay's
/// cost counts (none: every pair).
pub(crate) fn relayed_pairs(stored: &[StoredPath]) -> Option<HashSet<(PeerId, PeerId)>> {
    let relayed: HashSet<(PeerId, PeerId)> = stored
        .iter()
        .filter(|(_, _, plan)| matches!(plan, PathPlanKind::Relay | PathPlanKind::Attempt))
        .map(|(a, b, _)| (a.clone(), b.clone()))
        .collect();
    (!relayed.is_empty()).then_some(relayed)
}

impl Service {
    /// A member reports its NAT behaviour.
    pub async fn report_nat(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
        nat: NatReport,
    ) -> Result<()> {
        must_be_caller(caller, peer_id)?;
        let op = WriteOp::ReportNat {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
            nat,
        };
        match self.retrying(|| self.write(op.clone())).await? {
            super::write::Outcome::PathsPlanned(_) => Ok(()),
            other => Err(other.mismatch("PathsPlanned")),
        }
    }

    pub(super) async fn report_nat_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
        nat: &NatReport,
    ) -> Result<PathsResponse> {
        let now = Timestamp::now();
        let (_, members) = party_in(change, party_id).await?;
        member_of(party_id, &members, peer_id).map_err(|_| {
            Error::Forbidden(format!(
                "only members of party {party_id} can report for it"
            ))
        })?;
        change.tx.set_peer_nat(party_id, peer_id, nat, now).await?;
        Self::recompute_paths_in(change, party_id, now).await
    }

    /// A member reports outcomes of connecting to other members.
    pub async fn report_paths(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        reports: Vec<PathReport>,
    ) -> Result<()> {
        if reports.len() > MAX_PATH_REPORTS {
            return Err(Error::Invalid(format!(
                "at most {MAX_PATH_REPORTS} reports at once, not {}",
                reports.len()
            )));
        }
        for report in &reports {
            if let Some(ms) = report.rtt_ms
                && !(ms > 0.0 && ms <= MAX_RTT_MS)
            {
                return Err(Error::Invalid(format!(
                    "rtt_ms must be over 0 and at most {MAX_RTT_MS}, not {ms}"
                )));
            }
        }
        let op = WriteOp::ReportPaths {
            caller: caller.clone(),
            party_id: party_id.clone(),
            reports,
        };
        let classes = match self.retrying(|| self.write(op.clone())).await? {
            super::write::Outcome::PathsReported(classes) => classes,
            other => return Err(other.mismatch("PathsReported")),
        };
        for (class, outcome) in &classes {
            self.metrics.count_path_outcome(class, outcome.as_str());
        }
        Ok(())
    }

    pub(super) async fn report_paths_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        reports: &[PathReport],
    ) -> Result<Vec<((String, String), PathOutcome)>> {
        let now = Timestamp::now();
        let (_, members) = party_in(change, party_id).await?;
        member_of(party_id, &members, caller).map_err(|_| {
            Error::Forbidden(format!(
                "only members of party {party_id} can report for it"
            ))
        })?;
        for report in reports {
            if report.peer_id == *caller {
                return Err(Error::NotFound(format!(
                    "{} is the reporter itself: report about other members",
                    report.peer_id
                )));
            }
            member_of(party_id, &members, &report.peer_id)?;
        }
        let config = change.config;
        let inputs = change
            .tx
            .path_inputs(party_id, reports_since(config, now), first_day(config, now))
            .await?;
        let nats = nats(&members, &inputs);
        let mut counted = Vec::with_capacity(reports.len());
        for report in reports {
            let class = rules::class_pair(&nats[caller], &nats[&report.peer_id]);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let record = PathReportRecord {
                from_peer: caller.clone(),
                to_peer: report.peer_id.clone(),
                outcome: report.outcome,
                rtt_us: report.rtt_ms.map(|ms| (ms * 1000.0).round() as u64),
                reported_at: now,
            };
            change
                .tx
                .add_path_report(party_id, &record, &class, day_of(now))
                .await?;
            counted.push((class, report.outcome));
        }
        Self::recompute_paths_in(change, party_id, now).await?;
        Ok(counted)
    }

    /// Recomputes the party's plans under its lock, stores the changed
    /// ones and tells the members (not when the party is planned for the
    /// first time: nobody was told anything before).
    pub(super) async fn recompute_paths_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        now: Timestamp,
    ) -> Result<PathsResponse> {
        let (party, members) = party_in(change, party_id).await?;
        let config = change.config;
        let inputs = change
            .tx
            .path_inputs(party_id, reports_since(config, now), first_day(config, now))
            .await?;
        let pairs = plan_pairs(config, &members, &inputs);
        let changed: Vec<PathPair> = changed(&pairs, &inputs.stored)
            .into_iter()
            .cloned()
            .collect();
        let mut seq = party.seq;
        if !changed.is_empty() {
            let stored: Vec<StoredPath> = changed
                .iter()
                .map(|p| (p.a.clone(), p.b.clone(), p.plan))
                .collect();
            change.tx.set_party_paths(party_id, &stored).await?;
            if !inputs.stored.is_empty() {
                let recipients = members.iter().map(|m| m.peer.peer_id.clone()).collect();
                seq = Self::log_event(change, &party, now, recipients, |seq| {
                    ServerMessage::PathPlan {
                        party_id: party_id.clone(),
                        pairs: changed,
                        seq,
                    }
                })
                .await?;
            }
        }
        Ok(PathsResponse {
            party_id: party_id.clone(),
            pairs,
            seq,
        })
    }

    /// The party's plan, for its member `caller`.
    pub async fn party_paths(&self, caller: &PeerId, party_id: &PartyId) -> Result<PathsResponse> {
        let snapshot = self.member_snapshot(caller, party_id, "its paths").await?;
        let now = Timestamp::now();
        let inputs = self
            .store
            .path_inputs(
                party_id,
                reports_since(&self.config, now),
                first_day(&self.config, now),
            )
            .await?;
        let pairs = plan_pairs(&self.config, &snapshot.1, &inputs);
        if changed(&pairs, &inputs.stored).is_empty() {
            return Ok(PathsResponse {
                party_id: party_id.clone(),
                pairs,
                seq: snapshot.0.seq,
            });
        }
        self.recompute_paths(party_id).await
    }

    async fn recompute_paths(&self, party_id: &PartyId) -> Result<PathsResponse> {
        let op = WriteOp::RecomputePaths {
            party_id: party_id.clone(),
        };
        match self.retrying(|| self.write(op.clone())).await? {
            super::write::Outcome::PathsPlanned(paths) => Ok(paths),
            other => Err(other.mismatch("PathsPlanned")),
        }
    }

    /// The fleet's outcomes per NAT-class pair in the window, for the
    /// operator.
    pub async fn path_stats(&self) -> Result<Vec<PathClassStats>> {
        let first_day = first_day(&self.config, Timestamp::now());
        Ok(self
            .store
            .class_outcomes(first_day)
            .await?
            .into_iter()
            .map(|((a, b), o)| PathClassStats {
                a,
                b,
                direct: o.direct,
                relayed: o.relayed,
                failed: o.failed,
            })
            .collect())
    }

    /// Deletes expired outcome reports and statistics past the window.
    pub(super) async fn sweep_paths(&self, now: Timestamp) -> Result<u64> {
        Ok(self
            .store
            .sweep_paths(
                reports_since(&self.config, now),
                first_day(&self.config, now),
            )
            .await?)
    }

    /// Recomputes `parties` that are planned (a stored plan): a party
    /// nobody asked to plan costs one indexed read, not a write.
    async fn recompute_planned(&self, parties: impl IntoIterator<Item = PartyId>) {
        for party_id in parties {
            let outcome = match self.store.party_paths(&party_id).await {
                Ok(stored) if stored.is_empty() => continue,
                Ok(_) => self.recompute_paths(&party_id).await.map(drop),
                Err(error) => Err(error.into()),
            };
            match outcome {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(error) => {
                    self.count_failure(&error);
                    tracing::warn!(%party_id, error = %error_chain(&error), "cannot recompute a party's paths");
                }
            }
        }
    }

    /// Runs until `shutdown`: every second, the parties whose members
    /// joined or left; every minute, the tenth of the planned parties
    /// whose turn it is (so each is recomputed every 10 minutes).
    pub async fn run_path_plans(self, shutdown: impl Future<Output = ()>) {
        let mut events = self.events.subscribe();
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let slices = 10u64;
        let mut minute = tokio::time::interval(STATISTICS_EVERY / 10);
        minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut slice = 0u64;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                event = events.recv() => match event {
                    Ok(Event::Party { message, .. }) => match &*message {
                        ServerMessage::PeerJoined { party_id, .. }
                        | ServerMessage::PeerLeft { party_id, .. } => self.paths_dirty.party(party_id),
                        _ => {}
                    },
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(all) = self.store.parties_with_paths().await {
                            all.iter().for_each(|p| self.paths_dirty.party(p));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = second.tick() => {
                    let dirty = std::mem::take(&mut *self.paths_dirty.0.lock());
                    self.recompute_planned(dirty).await;
                }
                _ = minute.tick() => {
                    if let Ok(all) = self.store.parties_with_paths().await {
                        let mine = all.into_iter().filter(|p| {
                            p.as_str().bytes().map(u64::from).sum::<u64>() % slices == slice
                        });
                        self.recompute_planned(mine.collect::<Vec<_>>()).await;
                    }
                    slice = (slice + 1) % slices;
                }
            }
        }
    }
}

/// 404 unless `peer_id` is among `members`.
fn member_of(party_id: &PartyId, members: &[MemberRecord], peer_id: &PeerId) -> Result<()> {
    if members.iter().any(|m| m.peer.peer_id == *peer_id) {
        Ok(())
    } else {
        Err(rules::RuleError::NotAMember {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
        }
        .into())
    }
}
