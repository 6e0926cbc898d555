//! Relay choice (DESIGN, "Capabilities beyond v1", section 5): relays say
//! how loaded they are, members how far each relay is, and each party is
//! recommended the relay that minimises its worst relayed pair
//! (`lanrage_rules::choose_relay`).
//!
//! The current recommendation is stored per party, so every instance
//! starts from the same one and the hysteresis holds across them. It is
//! recomputed inside a write that locks the party, on the inputs that
//! matter: at once for a member's report (and for a read that finds the
//! stored choice out of date); within a second, by the loop here, after a
//! member leaves, a change of the party's path plan, a relay's status,
//! registration or removal, and each cleanup pass (expired reports). A change is announced to the party with
//! `relay_recommendation`, at most once per second per party: a change
//! within a second of the last announcement is announced by the loop when
//! the second is up.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use lanrage_proto::{
    MAX_RTT_ENTRIES, MAX_RTT_MS, PartyId, PartyRelayResponse, PeerId, RelayId, RelayRttsResponse,
    RelayStatus, RelayStatusReport, ServerMessage, Timestamp,
};
use lanrage_rules::{self as rules, Measurements, RelayChoice, RelayState, RelayView};
use parking_lot::Mutex;

use super::{
    Change, Error, Result, Service, WriteOp, host::party_in, parties::must_be_caller,
    paths::relayed_pairs,
};
use crate::{
    config::Config,
    events::Event,
    store::{RelayStatusRecord, RttEntry, StoredRelay},
    telemetry::error_chain,
};

/// The shortest time between two announcements to one party.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// Parties whose recommendation should be recomputed soon.
#[derive(Debug, Default)]
pub(crate) struct RelayDirty {
    parties: Mutex<HashSet<PartyId>>,
    /// Every party with inputs (the relays changed, or the clock did).
    all: AtomicBool,
}

impl RelayDirty {
    pub(crate) fn party(&self, party_id: &PartyId) {
        self.parties.lock().insert(party_id.clone());
    }

    pub(crate) fn everyone(&self) {
        self.all.store(true, Ordering::Release);
    }
}

/// What a relay's last status makes it, as of `now`.
pub(super) fn relay_state(
    status: &RelayStatusRecord,
    config: &Config,
    now: Timestamp,
) -> RelayState {
    let stale_before = now.plus_secs(-i64::try_from(config.relay_stale_secs).unwrap_or(i64::MAX));
    if status.draining {
        RelayState::Draining
    } else if status.last_status_at.is_some_and(|at| at < stale_before) {
        RelayState::Stale
    } else if status
        .load
        .is_some_and(|load| load >= config.relay_full_load)
        || status
            .sessions
            .is_some_and(|sessions| sessions >= status.relay.capacity)
    {
        RelayState::Full
    } else {
        RelayState::Active
    }
}

/// The instant before which a round-trip report no longer counts.
fn reports_since(config: &Config, now: Timestamp) -> Timestamp {
    now.plus_secs(-i64::try_from(config.rtt_report_ttl_secs).unwrap_or(i64::MAX))
}

/// The inputs of one party's choice, read in one place.
struct Inputs {
    statuses: Vec<RelayStatusRecord>,
    members: Vec<PeerId>,
    rtts: Vec<(PeerId, RttEntry)>,
    stored: StoredRelay,
    /// The pairs the path plan relays (none planned: every pair counts).
    counted: Option<rules::Pairs>,
}

impl Inputs {
    fn decide(&self, config: &Config, now: Timestamp) -> RelayChoice {
        let views: Vec<RelayView> = self
            .statuses
            .iter()
            .map(|s| RelayView {
                relay_id: s.relay.relay_id.clone(),
                state: relay_state(s, config, now),
                load: s.load,
            })
            .collect();
        let mut reports: BTreeMap<PeerId, Measurements> = BTreeMap::new();
        for (peer, (relay, rtt)) in &self.rtts {
            reports
                .entry(peer.clone())
                .or_default()
                .insert(relay.clone(), *rtt);
        }
        let current = self
            .stored
            .relay_id
            .as_ref()
            .map(|id| (id, self.stored.reason.as_deref().unwrap_or("initial")));
        rules::choose_relay(
            &views,
            &self.members,
            &reports,
            current,
            u32::try_from(config.relay_switch_min_ms).unwrap_or(u32::MAX),
            self.counted.as_ref(),
        )
    }

    /// Whether `choice` differs from what is stored or was announced.
    fn outdated(&self, choice: &RelayChoice) -> bool {
        choice.relay_id != self.stored.relay_id
            || self.stored.announced.clone().unwrap_or(None) != choice.relay_id
    }

    fn answer(&self, party_id: &PartyId, choice: RelayChoice, seq: u64) -> PartyRelayResponse {
        let relay = choice.relay_id.as_ref().and_then(|id| {
            self.statuses
                .iter()
                .find(|s| s.relay.relay_id == *id)
                .map(|s| s.relay.clone())
        });
        PartyRelayResponse {
            party_id: party_id.clone(),
            relay,
            worst_pair_rtt_ms: choice.worst_pair_rtt_ms,
            rtt_ms: choice.rtt_ms,
            unmeasured: choice.unmeasured,
            alternates: choice.alternates,
            reason: choice.reason,
            seq,
        }
    }
}

/// A recomputed recommendation, and whether announcing it had to wait.
#[derive(Debug)]
pub(crate) struct Recomputed {
    pub(crate) answer: PartyRelayResponse,
    pub(crate) deferred: bool,
}

impl Service {
    /// Every relay with its status and state.
    pub async fn relay_statuses(&self) -> Result<Vec<RelayStatus>> {
        let now = Timestamp::now();
        let statuses = self.store.relay_statuses().await?;
        Ok(statuses
            .into_iter()
            .map(|s| RelayStatus {
                state: relay_state(&s, &self.config, now).as_str().to_owned(),
                relay_id: s.relay.relay_id,
                region: s.relay.region,
                capacity: s.relay.capacity,
                sessions: s.sessions,
                load: s.load,
                last_status_at: s.last_status_at,
            })
            .collect())
    }

    /// A relay's operator reports its status (which also refreshes it).
    pub async fn report_relay_status(
        &self,
        relay_id: &RelayId,
        report: RelayStatusReport,
    ) -> Result<()> {
        if report == RelayStatusReport::default() {
            return Err(Error::Invalid(
                "a status needs at least one of sessions, load, draining".into(),
            ));
        }
        if let Some(load) = report.load
            && !(0.0..=1.0).contains(&load)
        {
            return Err(Error::Invalid(format!(
                "load must be from 0 to 1, not {load}"
            )));
        }
        if !self
            .store
            .set_relay_status(relay_id, &report, Timestamp::now())
            .await?
        {
            return Err(Error::NotFound(format!("relay {relay_id} not found")));
        }
        self.relay_dirty.everyone();
        Ok(())
    }

    /// A member reports its round trips to relays, replacing its last
    /// report; unknown relay IDs are ignored and listed.
    pub async fn report_rtts(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
        rtts: BTreeMap<RelayId, Option<f64>>,
    ) -> Result<RelayRttsResponse> {
        must_be_caller(caller, peer_id)?;
        if rtts.len() > MAX_RTT_ENTRIES {
            return Err(Error::Invalid(format!(
                "a report names at most {MAX_RTT_ENTRIES} relays, not {}",
                rtts.len()
            )));
        }
        let mut entries = Vec::with_capacity(rtts.len());
        for (relay_id, ms) in rtts {
            let rtt = match ms {
                None => None,
                Some(ms) if ms > 0.0 && ms <= MAX_RTT_MS => {
                    // Whole milliseconds, at least 1: a sub-millisecond
                    // relay is as good as one at 1 ms for this choice.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Some(ms.ceil() as u32)
                }
                Some(ms) => {
                    return Err(Error::Invalid(format!(
                        "the round trip to {relay_id} must be over 0 and at most \
                         {MAX_RTT_MS} ms, or null, not {ms}"
                    )));
                }
            };
            entries.push((relay_id, rtt));
        }
        let op = WriteOp::ReportRtts {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
            rtts: entries,
        };
        let (ignored, deferred): (Vec<RelayId>, bool) =
            self.retrying(|| self.write(op.clone())).await?.try_into()?;
        if deferred {
            self.relay_dirty.party(party_id);
        }
        Ok(RelayRttsResponse {
            status: "ok".into(),
            ignored,
        })
    }

    pub(super) async fn report_rtts_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
        rtts: &[RttEntry],
    ) -> Result<(Vec<RelayId>, bool)> {
        let now = Timestamp::now();
        let (_, members) = party_in(change, party_id).await?;
        if !members.iter().any(|m| m.peer.peer_id == *peer_id) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can report for it"
            )));
        }
        let registered: HashSet<RelayId> = change
            .tx
            .relay_statuses()
            .await?
            .into_iter()
            .map(|s| s.relay.relay_id)
            .collect();
        let (known, ignored): (Vec<RttEntry>, Vec<RttEntry>) = rtts
            .iter()
            .cloned()
            .partition(|(relay, _)| registered.contains(relay));
        change
            .tx
            .replace_rtts(party_id, peer_id, &known, now)
            .await?;
        let recomputed = Self::recompute_relay_in(change, party_id, now).await?;
        Ok((
            ignored.into_iter().map(|(relay, _)| relay).collect(),
            recomputed.deferred,
        ))
    }

    /// Recomputes the party's recommendation under its lock; stores it and
    /// announces a change of relay (unless one was announced less than a
    /// second ago: then `deferred`).
    pub(super) async fn recompute_relay_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        now: Timestamp,
    ) -> Result<Recomputed> {
        let (party, members) = party_in(change, party_id).await?;
        let config = change.config;
        let inputs = Inputs {
            statuses: change.tx.relay_statuses().await?,
            members: members.iter().map(|m| m.peer.peer_id.clone()).collect(),
            rtts: change
                .tx
                .party_rtts(party_id, reports_since(config, now))
                .await?,
            stored: change.tx.party_relay(party_id).await?,
            counted: relayed_pairs(&change.tx.party_paths(party_id).await?),
        };
        let choice = inputs.decide(config, now);
        let mut stored = inputs.stored.clone();
        stored.relay_id.clone_from(&choice.relay_id);
        stored.reason = Some(choice.reason.clone());
        let mut seq = party.seq;
        let announced = stored.announced.clone().unwrap_or(None);
        let mut deferred = false;
        if announced != choice.relay_id {
            let due = stored.announced_at.is_none_or(|at| {
                now.as_micros() - at.as_micros() >= ANNOUNCE_EVERY.as_micros() as i64
            });
            if due {
                let recipients = members.iter().map(|m| m.peer.peer_id.clone()).collect();
                seq = Self::log_event(change, &party, now, recipients, |seq| {
                    ServerMessage::RelayRecommendation {
                        party_id: party_id.clone(),
                        relay_id: choice.relay_id.clone(),
                        worst_pair_rtt_ms: choice.worst_pair_rtt_ms,
                        reason: choice.reason.clone(),
                        seq,
                    }
                })
                .await?;
                stored.announced = Some(choice.relay_id.clone());
                stored.announced_at = Some(now);
            } else {
                deferred = true;
            }
        }
        if stored != inputs.stored {
            change.tx.set_party_relay(party_id, &stored).await?;
        }
        Ok(Recomputed {
            answer: inputs.answer(party_id, choice, seq),
            deferred,
        })
    }

    /// The party's recommended relay, for its member `caller`.
    pub async fn party_relay(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
    ) -> Result<PartyRelayResponse> {
        let snapshot = self.member_snapshot(caller, party_id, "its relay").await?;
        let now = Timestamp::now();
        let inputs = Inputs {
            statuses: self.store.relay_statuses().await?,
            members: snapshot.1.iter().map(|m| m.peer.peer_id.clone()).collect(),
            rtts: self
                .store
                .party_rtts(party_id, reports_since(&self.config, now))
                .await?,
            stored: self.store.party_relay(party_id).await?,
            counted: relayed_pairs(&self.store.party_paths(party_id).await?),
        };
        let choice = inputs.decide(&self.config, now);
        if !inputs.outdated(&choice) {
            return Ok(inputs.answer(party_id, choice, snapshot.0.seq));
        }
        // Stored or announced behind the inputs: bring them up to date.
        Ok(self.recompute_relay(party_id).await?.answer)
    }

    async fn recompute_relay(&self, party_id: &PartyId) -> Result<Recomputed> {
        let op = WriteOp::RecomputeRelay {
            party_id: party_id.clone(),
        };
        let recomputed: Recomputed = self.retrying(|| self.write(op.clone())).await?.try_into()?;
        if recomputed.deferred {
            self.relay_dirty.party(party_id);
        }
        Ok(recomputed)
    }

    /// Whether the party has anything a recommendation depends on.
    async fn has_relay_inputs(&self, party_id: &PartyId) -> Result<bool> {
        let stored = self.store.party_relay(party_id).await?;
        if stored.reason.is_some() || stored.relay_id.is_some() {
            return Ok(true);
        }
        let since = reports_since(&self.config, Timestamp::now());
        Ok(!self.store.party_rtts(party_id, since).await?.is_empty())
    }

    /// One round of the loop: recomputes every party marked dirty.
    pub async fn relay_choice_once(&self) -> Result<()> {
        let mut parties: HashSet<PartyId> = std::mem::take(&mut *self.relay_dirty.parties.lock());
        if self.relay_dirty.all.swap(false, Ordering::AcqRel) {
            parties.extend(self.store.parties_with_relay_inputs().await?);
        }
        for party_id in parties {
            let outcome = match self.has_relay_inputs(&party_id).await {
                Ok(false) => continue,
                Ok(true) => self.recompute_relay(&party_id).await.map(drop),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(error) => {
                    self.relay_dirty.party(&party_id);
                    self.count_failure(&error);
                    tracing::warn!(%party_id, error = %error_chain(&error), "cannot recompute a party's relay");
                }
            }
        }
        Ok(())
    }

    /// Runs the loop every second until `shutdown`; members leaving (on
    /// any instance) mark their party.
    pub async fn run_relay_choice(self, shutdown: impl Future<Output = ()>) {
        let mut events = self.events.subscribe();
        let mut ticker = tokio::time::interval(ANNOUNCE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                event = events.recv() => match event {
                    Ok(Event::Party { message, .. }) => match &*message {
                        // A member gone, or pairs newly planned through
                        // a relay (or no longer): the cost may differ.
                        ServerMessage::PeerLeft { party_id, .. }
                        | ServerMessage::PathPlan { party_id, .. } => {
                            self.relay_dirty.party(party_id);
                        }
                        _ => {}
                    },
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        self.relay_dirty.everyone();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if let Err(error) = self.relay_choice_once().await {
                        self.relay_dirty.everyone();
                        self.count_failure(&error);
                        tracing::warn!(error = %error_chain(&error), "relay choice round failed");
                    }
                }
            }
        }
    }
}
