//! Relay choice (DESIGN, "Capabilities beyond v1", section 5): the one
//! relay a party's relayed pairs should share, chosen to minimise the
//! worst pair, explained, and kept unless something clearly better comes
//! along.
//!
//! The cost of a relay is the worst round trip between two measured
//! members through it (`rtt(a, r) + rtt(b, r)`), counting only pairs that
//! both reach it; with a single member reaching it, that member's round
//! trip. Relays every measured member reaches come first; if there are
//! none, those reached by the most. Then the lowest cost wins, ties going
//! to the lower load (unknown counts 0.5) and then the relay ID.

use std::collections::{BTreeMap, HashSet};

use lanrage_proto::{PeerId, RelayId};

/// Unknown load, as it counts in ties.
const UNKNOWN_LOAD: f64 = 0.5;

/// Why the current relay can no longer be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    Active,
    Draining,
    Full,
    Stale,
    /// Not registered any more.
    Removed,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Full => "full",
            Self::Stale => "stale",
            Self::Removed => "removed",
        }
    }
}

/// A registered relay as the choice sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayView {
    pub relay_id: RelayId,
    pub state: RelayState,
    /// 0 to 1; none for a relay that never sent a status.
    pub load: Option<f64>,
}

/// What one member measured: its round trip to each relay, in ms (`None`:
/// unreachable).
pub type Measurements = BTreeMap<RelayId, Option<u32>>;

/// The choice and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayChoice {
    pub relay_id: Option<RelayId>,
    pub worst_pair_rtt_ms: Option<u32>,
    /// Each measured member's round trip to the chosen relay.
    pub rtt_ms: BTreeMap<PeerId, u32>,
    /// Members with no report.
    pub unmeasured: Vec<PeerId>,
    /// The other candidates, best first.
    pub alternates: Vec<RelayId>,
    /// `initial`, `better`, `current draining|full|stale|unreachable|removed`,
    /// `no measurements` or `no candidate`; a kept relay keeps `kept_reason`.
    pub reason: String,
}

/// A candidate with what ranks it.
struct Ranked<'a> {
    relay: &'a RelayView,
    reached_by: usize,
    cost: u32,
}

/// Member pairs, `(a, b)` with `a < b`.
pub type Pairs = HashSet<(PeerId, PeerId)>;

fn cost(
    relay: &RelayId,
    reports: &BTreeMap<&PeerId, &Measurements>,
    counted: Option<&Pairs>,
) -> Option<(usize, u32)> {
    let reach: Vec<(&PeerId, u32)> = reports
        .iter()
        .filter_map(|(peer, m)| m.get(relay).copied().flatten().map(|ms| (*peer, ms)))
        .collect();
    let worst_single = reach.iter().map(|(_, ms)| *ms).max()?;
    let mut worst_pair = None;
    for (i, (a, rtt_a)) in reach.iter().enumerate() {
        for (b, rtt_b) in &reach[i + 1..] {
            let pair = if a < b { (*a, *b) } else { (*b, *a) };
            if counted.is_none_or(|c| c.contains(&(pair.0.clone(), pair.1.clone()))) {
                let sum = rtt_a.saturating_add(*rtt_b);
                worst_pair = Some(worst_pair.map_or(sum, |w: u32| w.max(sum)));
            }
        }
    }
    // With one member reaching it (or no counted pair), the worst single
    // round trip.
    Some((reach.len(), worst_pair.unwrap_or(worst_single)))
}

/// Chooses the party's relay among `relays` from the members' `reports`
/// (members without one are `unmeasured`), given the `current` choice and
/// the reason it was made for, switching away from a still-usable current
/// relay only for a cost at least `switch_min_ms` (or 20 %) lower. With
/// `counted`, only those pairs count toward a cost (the pairs a path plan
/// sends through a relay); without, every pair.
pub fn choose_relay(
    relays: &[RelayView],
    members: &[PeerId],
    reports: &BTreeMap<PeerId, Measurements>,
    current: Option<(&RelayId, &str)>,
    switch_min_ms: u32,
    counted: Option<&Pairs>,
) -> RelayChoice {
    let measured: BTreeMap<&PeerId, &Measurements> = members
        .iter()
        .filter_map(|m| reports.get(m).map(|r| (m, r)))
        .collect();
    let unmeasured: Vec<PeerId> = members
        .iter()
        .filter(|m| !reports.contains_key(*m))
        .cloned()
        .collect();
    let nothing = |reason: &str| RelayChoice {
        relay_id: None,
        worst_pair_rtt_ms: None,
        rtt_ms: BTreeMap::new(),
        unmeasured: unmeasured.clone(),
        alternates: Vec::new(),
        reason: reason.to_owned(),
    };
    if measured.is_empty() {
        return nothing("no measurements");
    }
    let mut ranked: Vec<Ranked<'_>> = relays
        .iter()
        .filter(|r| r.state == RelayState::Active)
        .filter_map(|relay| {
            cost(&relay.relay_id, &measured, counted).map(|(reached_by, cost)| Ranked {
                relay,
                reached_by,
                cost,
            })
        })
        .collect();
    let Some(best_reach) = ranked.iter().map(|r| r.reached_by).max() else {
        return nothing("no candidate");
    };
    let load = |r: &Ranked<'_>| r.relay.load.unwrap_or(UNKNOWN_LOAD);
    ranked.sort_by(|a, b| {
        (b.reached_by == best_reach)
            .cmp(&(a.reached_by == best_reach))
            .then(b.reached_by.cmp(&a.reached_by))
            .then(a.cost.cmp(&b.cost))
            .then(load(a).total_cmp(&load(b)))
            .then(a.relay.relay_id.cmp(&b.relay.relay_id))
    });
    let everyone = measured.len();
    let best = &ranked[0];
    let (chosen, reason) = match current {
        None => (best, "initial".to_owned()),
        Some((current_id, kept_reason)) => {
            let usable = ranked
                .iter()
                .find(|r| r.relay.relay_id == *current_id && r.reached_by == everyone);
            match usable {
                Some(kept) if kept.relay.relay_id == best.relay.relay_id => {
                    (kept, kept_reason.to_owned())
                }
                Some(kept) => {
                    // new ≤ current − max(min, 20 % of current), exactly.
                    let (new, cur) = (u64::from(best.cost), u64::from(kept.cost));
                    let clearly_better =
                        new + u64::from(switch_min_ms) <= cur && new * 5 <= cur * 4;
                    if best.reached_by == everyone && clearly_better {
                        (best, "better".to_owned())
                    } else {
                        (kept, kept_reason.to_owned())
                    }
                }
                None => {
                    let why = match relays.iter().find(|r| r.relay_id == *current_id) {
                        None => "current removed",
                        Some(r) => match r.state {
                            RelayState::Draining => "current draining",
                            RelayState::Full => "current full",
                            RelayState::Stale => "current stale",
                            RelayState::Removed => "current removed",
                            RelayState::Active => "current unreachable",
                        },
                    };
                    (best, why.to_owned())
                }
            }
        }
    };
    let relay_id = chosen.relay.relay_id.clone();
    RelayChoice {
        rtt_ms: measured
            .iter()
            .filter_map(|(peer, m)| {
                m.get(&relay_id)
                    .copied()
                    .flatten()
                    .map(|ms| ((*peer).clone(), ms))
            })
            .collect(),
        worst_pair_rtt_ms: Some(chosen.cost),
        alternates: ranked
            .iter()
            .map(|r| r.relay.relay_id.clone())
            .filter(|id| *id != relay_id)
            .collect(),
        relay_id: Some(relay_id),
        unmeasured,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(id: &str, state: RelayState, load: Option<f64>) -> RelayView {
        RelayView {
            relay_id: RelayId::parse(id).unwrap(),
            state,
            load,
        }
    }

    fn peer(id: &str) -> PeerId {
        PeerId::parse(id).unwrap()
    }

    /// A member's report: (relay, round trip).
    type Report<'a> = &'a [(&'a str, Option<u32>)];

    fn reports(rows: &[(&str, Report<'_>)]) -> BTreeMap<PeerId, Measurements> {
        rows.iter()
            .map(|(p, rtts)| {
                (
                    peer(p),
                    rtts.iter()
                        .map(|(r, ms)| (RelayId::parse(*r).unwrap(), *ms))
                        .collect(),
                )
            })
            .collect()
    }

    fn members(ids: &[&str]) -> Vec<PeerId> {
        ids.iter().map(|id| peer(id)).collect()
    }

    #[test]
    fn the_worst_pair_decides_not_the_mean() {
        // DESIGN's example: X at 10/10/90, Y at 40/40/40.
        let relays = [
            relay("x", RelayState::Active, None),
            relay("y", RelayState::Active, None),
        ];
        let rtts = reports(&[
            ("a", &[("x", Some(10)), ("y", Some(40))]),
            ("b", &[("x", Some(10)), ("y", Some(40))]),
            ("c", &[("x", Some(90)), ("y", Some(40))]),
        ]);
        let choice = choose_relay(
            &relays,
            &members(&["a", "b", "c", "d"]),
            &rtts,
            None,
            15,
            None,
        );
        assert_eq!(choice.relay_id.unwrap().as_str(), "y");
        assert_eq!(choice.worst_pair_rtt_ms, Some(80));
        assert_eq!(choice.reason, "initial");
        assert_eq!(choice.unmeasured, members(&["d"]));
        assert_eq!(choice.alternates.len(), 1);
        assert_eq!(choice.rtt_ms.len(), 3);
    }

    #[test]
    fn relays_everyone_reaches_come_first_then_the_most_reached() {
        let relays = [
            relay("near", RelayState::Active, None),
            relay("far", RelayState::Active, None),
        ];
        let rtts = reports(&[
            ("a", &[("near", Some(5)), ("far", Some(100))]),
            ("b", &[("near", None), ("far", Some(100))]),
        ]);
        let choice = choose_relay(&relays, &members(&["a", "b"]), &rtts, None, 15, None);
        assert_eq!(choice.relay_id.unwrap().as_str(), "far");
        assert_eq!(choice.worst_pair_rtt_ms, Some(200));
    }

    #[test]
    fn ties_go_to_the_lower_load_then_the_id_and_unknown_load_is_half() {
        let rtts = reports(&[("a", &[("r1", Some(10)), ("r2", Some(10)), ("r3", Some(10))])]);
        let relays = [
            relay("r1", RelayState::Active, Some(0.6)),
            relay("r2", RelayState::Active, None),
            relay("r3", RelayState::Active, Some(0.6)),
        ];
        let choice = choose_relay(&relays, &members(&["a"]), &rtts, None, 15, None);
        assert_eq!(choice.relay_id.unwrap().as_str(), "r2");
        assert_eq!(choice.alternates[0].as_str(), "r1");
    }

    #[test]
    fn draining_full_and_stale_relays_are_no_candidates() {
        let rtts = reports(&[("a", &[("d", Some(1)), ("f", Some(1)), ("s", Some(1))])]);
        let relays = [
            relay("d", RelayState::Draining, None),
            relay("f", RelayState::Full, None),
            relay("s", RelayState::Stale, None),
        ];
        let choice = choose_relay(&relays, &members(&["a"]), &rtts, None, 15, None);
        assert_eq!(
            (choice.relay_id, choice.reason.as_str()),
            (None, "no candidate")
        );
        let none = choose_relay(&relays, &members(&["a"]), &BTreeMap::new(), None, 15, None);
        assert_eq!(none.reason, "no measurements");
    }

    #[test]
    fn the_current_relay_stays_unless_clearly_beaten() {
        let relays = [
            relay("cur", RelayState::Active, None),
            relay("new", RelayState::Active, None),
        ];
        let current = RelayId::parse("cur").unwrap();
        let with = |cur: u32, new: u32| {
            let rtts = reports(&[
                ("a", &[("cur", Some(cur)), ("new", Some(new))]),
                ("b", &[("cur", Some(cur)), ("new", Some(new))]),
            ]);
            choose_relay(
                &relays,
                &members(&["a", "b"]),
                &rtts,
                Some((&current, "initial")),
                15,
                None,
            )
        };
        // Current 200: the margin is 20 % (40 ms).
        let kept = with(100, 81);
        assert_eq!(
            (kept.relay_id.unwrap().as_str(), kept.reason.as_str()),
            ("cur", "initial")
        );
        let switched = with(100, 80);
        assert_eq!(
            (
                switched.relay_id.unwrap().as_str(),
                switched.reason.as_str()
            ),
            ("new", "better")
        );
        // Current 40: the margin is the 15 ms minimum.
        assert_eq!(with(20, 13).relay_id.unwrap().as_str(), "cur");
        assert_eq!(with(20, 12).relay_id.unwrap().as_str(), "new");
    }

    #[test]
    fn an_unusable_current_relay_is_left_saying_why() {
        let current = RelayId::parse("cur").unwrap();
        let rtts = reports(&[("a", &[("cur", Some(5)), ("other", Some(50))])]);
        let reason = |state: Option<RelayState>| {
            let mut relays = vec![relay("other", RelayState::Active, None)];
            if let Some(state) = state {
                relays.push(relay("cur", state, None));
            }
            choose_relay(
                &relays,
                &members(&["a"]),
                &rtts,
                Some((&current, "initial")),
                15,
                None,
            )
            .reason
        };
        assert_eq!(reason(Some(RelayState::Draining)), "current draining");
        assert_eq!(reason(Some(RelayState::Full)), "current full");
        assert_eq!(reason(Some(RelayState::Stale)), "current stale");
        assert_eq!(reason(None), "current removed");
        let unreachable = reports(&[("a", &[("cur", None), ("other", Some(50))])]);
        let relays = [
            relay("cur", RelayState::Active, None),
            relay("other", RelayState::Active, None),
        ];
        let choice = choose_relay(
            &relays,
            &members(&["a"]),
            &unreachable,
            Some((&current, "initial")),
            15,
            None,
        );
        assert_eq!(choice.reason, "current unreachable");
    }
}

#[cfg(test)]
mod counted_pairs {
    use super::*;

    #[test]
    fn only_counted_pairs_make_a_cost() {
        let relays = [
            RelayView {
                relay_id: RelayId::parse("x").unwrap(),
                state: RelayState::Active,
                load: None,
            },
            RelayView {
                relay_id: RelayId::parse("y").unwrap(),
                state: RelayState::Active,
                load: None,
            },
        ];
        let peer = |id: &str| PeerId::parse(id).unwrap();
        let report = |x: u32, y: u32| {
            [
                (RelayId::parse("x").unwrap(), Some(x)),
                (RelayId::parse("y").unwrap(), Some(y)),
            ]
            .into_iter()
            .collect::<Measurements>()
        };
        // a and b reach each other directly; only (a, c) is relayed.
        let reports: BTreeMap<PeerId, Measurements> = [
            (peer("a"), report(10, 40)),
            (peer("b"), report(100, 40)),
            (peer("c"), report(10, 40)),
        ]
        .into_iter()
        .collect();
        let members = [peer("a"), peer("b"), peer("c")];
        let all = choose_relay(&relays, &members, &reports, None, 15, None);
        assert_eq!(all.relay_id.unwrap().as_str(), "y", "b's 100 ms counts");
        let relayed: Pairs = [(peer("a"), peer("c"))].into_iter().collect();
        let some = choose_relay(&relays, &members, &reports, None, 15, Some(&relayed));
        assert_eq!(some.relay_id.unwrap().as_str(), "x");
        assert_eq!(some.worst_pair_rtt_ms, Some(20));
    }
}
