//! Path plan (DESIGN, "Capabilities beyond v1", section 6): how each pair
//! of members should connect, by a fixed precedence: a fresh observation,
//! then the same public address, then what the fleet's statistics say
//! about the pair's NAT classes, then the NAT table.

use lanrage_proto::{IpOrUnknown, NatBehaviour, NatReport, PathBasis, PathOutcome, PathPlanKind};

/// One side of a pair: its NAT behaviour and its addresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairSide<'a> {
    pub nat: NatReport,
    pub public_ip: &'a IpOrUnknown,
    pub local_ip: &'a IpOrUnknown,
}

/// Outcomes the fleet reported for a pair's unordered class pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassOutcomes {
    pub direct: u64,
    pub relayed: u64,
    pub failed: u64,
}

impl ClassOutcomes {
    pub fn total(&self) -> u64 {
        self.direct + self.relayed + self.failed
    }
}

/// A pair's plan, how sure it is, and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairPlan {
    pub plan: PathPlanKind,
    pub confidence: f64,
    pub basis: PathBasis,
}

fn plan(plan: PathPlanKind, confidence: f64, basis: PathBasis) -> PairPlan {
    PairPlan {
        plan,
        confidence,
        basis,
    }
}

/// The behaviour the table uses: a working port mapping makes a side
/// reachable as if it had no NAT.
fn effective(side: &PairSide<'_>) -> (NatBehaviour, NatBehaviour) {
    if side.nat.port_mapping {
        (NatBehaviour::None, NatBehaviour::None)
    } else {
        (side.nat.mapping, side.nat.filtering)
    }
}

fn is_open(behaviour: NatBehaviour) -> bool {
    matches!(
        behaviour,
        NatBehaviour::None | NatBehaviour::EndpointIndependent
    )
}

fn is_dependent(mapping: NatBehaviour) -> bool {
    matches!(
        mapping,
        NatBehaviour::AddressDependent | NatBehaviour::AddressAndPortDependent
    )
}

/// DESIGN's table, first matching row.
pub fn nat_table(a: &PairSide<'_>, b: &PairSide<'_>) -> PairPlan {
    use PathPlanKind::{Attempt, Direct, Relay};
    let ((am, af), (bm, bf)) = (effective(a), effective(b));
    let table = PathBasis::NatTable;
    if (is_open(am) && is_open(af)) || (is_open(bm) && is_open(bf)) {
        return plan(Direct, 0.95, table);
    }
    if [am, af, bm, bf].contains(&NatBehaviour::Unknown) {
        return plan(Attempt, 0.5, table);
    }
    if is_open(am) && is_open(bm) {
        return plan(Direct, 0.9, table);
    }
    if is_dependent(am) && is_dependent(bm) {
        return plan(Relay, 0.85, table);
    }
    // One mapping dependent: what the other side's filtering lets in.
    let other_filtering = if is_dependent(am) { bf } else { af };
    if other_filtering == NatBehaviour::AddressAndPortDependent {
        plan(Relay, 0.7, table)
    } else {
        plan(Direct, 0.7, table)
    }
}

/// The plan for a pair of members `a` and `b`: `observed` is the latest
/// fresh outcome either reported about the other, `stats` the fleet's
/// outcomes for their class pair in the window, counted once they reach
/// `min_samples`.
pub fn plan_pair(
    a: &PairSide<'_>,
    b: &PairSide<'_>,
    observed: Option<PathOutcome>,
    stats: ClassOutcomes,
    min_samples: u64,
) -> PairPlan {
    if let Some(outcome) = observed {
        let kind = match outcome {
            PathOutcome::Direct => PathPlanKind::Direct,
            PathOutcome::Relayed | PathOutcome::Failed => PathPlanKind::Relay,
        };
        return plan(kind, 1.0, PathBasis::Observed);
    }
    let known = |ip: &IpOrUnknown| *ip != IpOrUnknown::Unknown;
    if known(a.public_ip) && a.public_ip == b.public_ip && known(a.local_ip) && known(b.local_ip) {
        return plan(PathPlanKind::Lan, 0.9, PathBasis::SamePublicIp);
    }
    let total = stats.total();
    if total >= min_samples.max(1) {
        #[allow(clippy::cast_precision_loss)]
        let rate = stats.direct as f64 / total as f64;
        let kind = if rate >= 0.8 {
            PathPlanKind::Direct
        } else if rate <= 0.2 {
            PathPlanKind::Relay
        } else {
            PathPlanKind::Attempt
        };
        return plan(kind, rate.max(1.0 - rate), PathBasis::Statistics);
    }
    nat_table(a, b)
}

/// The unordered class pair of two NAT reports, `a ≤ b`.
pub fn class_pair(a: &NatReport, b: &NatReport) -> (String, String) {
    let (a, b) = (a.class(), b.class());
    if a <= b { (a, b) } else { (b, a) }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::NatType;

    use super::*;

    const UNKNOWN: IpOrUnknown = IpOrUnknown::Unknown;

    fn side(nat_type: NatType) -> PairSide<'static> {
        PairSide {
            nat: NatReport::from_nat_type(nat_type),
            public_ip: &UNKNOWN,
            local_ip: &UNKNOWN,
        }
    }

    #[test]
    fn the_table_for_every_pair_of_v1_nat_types() {
        use NatType::*;
        use PathPlanKind::{Attempt as A, Direct as D, Relay as R};
        let expected = [
            // (a, b, plan, confidence)
            (Open, Symmetric, D, 0.95),
            (FullCone, Symmetric, D, 0.95),
            (Unknown, Symmetric, A, 0.5),
            (Unknown, Unknown, A, 0.5),
            (Unknown, FullCone, D, 0.95),
            (RestrictedCone, RestrictedCone, D, 0.9),
            (RestrictedCone, PortRestrictedCone, D, 0.9),
            (PortRestrictedCone, PortRestrictedCone, D, 0.9),
            (Symmetric, Symmetric, R, 0.85),
            (Symmetric, RestrictedCone, D, 0.7),
            (Symmetric, PortRestrictedCone, R, 0.7),
        ];
        for (a, b, kind, confidence) in expected {
            for (x, y) in [(a, b), (b, a)] {
                let planned = nat_table(&side(x), &side(y));
                assert_eq!(
                    (planned.plan, planned.confidence, planned.basis),
                    (kind, confidence, PathBasis::NatTable),
                    "{x:?} with {y:?}"
                );
            }
        }
    }

    #[test]
    fn a_port_mapping_makes_a_side_reachable() {
        let mut mapped = side(NatType::Symmetric);
        mapped.nat.port_mapping = true;
        assert_eq!(
            nat_table(&mapped, &side(NatType::Symmetric)).plan,
            PathPlanKind::Direct
        );
    }

    #[test]
    fn precedence_is_observation_then_lan_then_statistics_then_table() {
        let home: IpOrUnknown = "203.0.113.5".parse().unwrap();
        let lan_a: IpOrUnknown = "192.168.1.2".parse().unwrap();
        let lan_b: IpOrUnknown = "192.168.1.3".parse().unwrap();
        let a = PairSide {
            nat: NatReport::from_nat_type(NatType::Symmetric),
            public_ip: &home,
            local_ip: &lan_a,
        };
        let b = PairSide {
            local_ip: &lan_b,
            ..a
        };
        let stats = ClassOutcomes {
            direct: 19,
            relayed: 1,
            failed: 0,
        };
        let observed = plan_pair(&a, &b, Some(PathOutcome::Failed), stats, 20);
        assert_eq!(
            (observed.plan, observed.basis),
            (PathPlanKind::Relay, PathBasis::Observed)
        );
        let lan = plan_pair(&a, &b, None, stats, 20);
        assert_eq!(
            (lan.plan, lan.basis),
            (PathPlanKind::Lan, PathBasis::SamePublicIp)
        );
        let (x, y) = (side(NatType::Symmetric), side(NatType::Symmetric));
        let learned = plan_pair(&x, &y, None, stats, 20);
        assert_eq!(
            (learned.plan, learned.basis),
            (PathPlanKind::Direct, PathBasis::Statistics)
        );
        assert!((learned.confidence - 0.95).abs() < 1e-9);
        let too_few = plan_pair(
            &x,
            &y,
            None,
            ClassOutcomes {
                direct: 19,
                ..stats
            },
            21,
        );
        assert_eq!(too_few.basis, PathBasis::NatTable);
        let mixed = ClassOutcomes {
            direct: 10,
            relayed: 5,
            failed: 5,
        };
        assert_eq!(
            plan_pair(&x, &y, None, mixed, 20).plan,
            PathPlanKind::Attempt
        );
    }
}
