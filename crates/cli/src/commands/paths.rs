//! The path plan under `party`: `paths` prints how each pair of members
//! should connect, `nat` reports this peer's NAT behaviour (on a server
//! that lists `path-plan`), and the line `party watch` prints for a
//! `path_plan`.

use clap::Args;
use lanrage_proto::{NatBehaviour, NatReport, PartyId, PathPair, StatusResponse};
use serde::Serialize;

use super::{Context, describe, host::PartyOption, party::print_table, when};

/// `party nat`: what RFC 5780 tests (or a STUN tool) found.
#[derive(Debug, Clone, Args)]
pub struct NatArgs {
    /// How the NAT maps outgoing flows (RFC 4787): none,
    /// endpoint_independent, address_dependent, address_and_port_dependent
    /// or unknown.
    #[arg(long, value_name = "BEHAVIOUR", value_parser = parse_behaviour)]
    pub mapping: NatBehaviour,
    /// Which incoming packets it lets through, in the same terms.
    #[arg(long, value_name = "BEHAVIOUR", value_parser = parse_behaviour)]
    pub filtering: NatBehaviour,
    /// A port-mapping protocol (UPnP, NAT-PMP, PCP) opened a port.
    #[arg(long)]
    pub port_mapping: bool,
    #[command(flatten)]
    pub party: PartyOption,
}

fn parse_behaviour(value: &str) -> Result<NatBehaviour, String> {
    value.trim().parse().map_err(|_| {
        "expected none, endpoint_independent, address_dependent, address_and_port_dependent \
         or unknown"
            .to_owned()
    })
}

/// `party paths`: one line per member pair.
pub async fn show(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let paths = cx.http.party_paths(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&paths);
    }
    if paths.pairs.is_empty() {
        out!("Party {party_id} has one member: no pair to plan.")?;
        return Ok(());
    }
    out!("Paths of party {party_id}:")?;
    let mut rows = vec![[
        "A".to_owned(),
        "B".to_owned(),
        "PLAN".to_owned(),
        "CONFIDENCE".to_owned(),
        "BASIS".to_owned(),
        "RTT".to_owned(),
        "LAST OBSERVED".to_owned(),
    ]];
    rows.extend(paths.pairs.iter().map(row));
    print_table(&rows)
}

fn row(pair: &PathPair) -> [String; 7] {
    let observed = match (pair.observed, pair.observed_at) {
        (Some(outcome), Some(at)) => format!("{} at {}", outcome.as_str(), when(at)),
        (Some(outcome), None) => outcome.as_str().to_owned(),
        (None, _) => "-".to_owned(),
    };
    [
        pair.a.to_string(),
        pair.b.to_string(),
        pair.plan.as_str().to_owned(),
        format!("{:.2}", pair.confidence),
        wire_name(&pair.basis),
        pair.rtt_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
        observed,
    ]
}

/// `party nat`: reports this peer's NAT behaviour to the party.
pub async fn report_nat(cx: &Context, args: &NatArgs) -> anyhow::Result<()> {
    let party_id = cx.party(args.party.party_id.clone())?;
    let nat = NatReport {
        mapping: args.mapping,
        filtering: args.filtering,
        port_mapping: args.port_mapping,
    };
    cx.http.report_nat(&party_id, nat).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&StatusResponse::new("ok"));
    }
    out!(
        "Reported to party {party_id}: mapping {}, filtering {}, port mapping {}. \
         Members whose plan changes are told.",
        nat.mapping.as_str(),
        nat.filtering.as_str(),
        if nat.port_mapping { "yes" } else { "no" }
    )?;
    Ok(())
}

/// The line `party watch` prints for a `path_plan`: the changed pairs.
pub fn plan_line(pairs: &[PathPair]) -> String {
    let changed: Vec<String> = pairs
        .iter()
        .map(|p| {
            format!(
                "{} ↔ {} {} ({}, {:.2})",
                p.a,
                p.b,
                p.plan.as_str(),
                wire_name(&p.basis),
                p.confidence
            )
        })
        .collect();
    format!("path plan: {}", changed.join("; "))
}

/// A value's name on the wire (`same_public_ip`).
fn wire_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::{PathBasis, PathOutcome, PathPlanKind, PeerId, Timestamp};

    use super::*;

    fn pair(a: &str, b: &str) -> PathPair {
        PathPair {
            a: PeerId::parse(a).unwrap(),
            b: PeerId::parse(b).unwrap(),
            plan: PathPlanKind::Relay,
            confidence: 0.85,
            basis: PathBasis::NatTable,
            rtt_ms: None,
            observed: None,
            observed_at: None,
        }
    }

    #[test]
    fn a_pair_prints_dashes_for_what_nobody_measured() {
        let fresh = pair("alice", "bob");
        let measured = PathPair {
            plan: PathPlanKind::Direct,
            confidence: 1.0,
            basis: PathBasis::Observed,
            rtt_ms: Some(12.5),
            observed: Some(PathOutcome::Direct),
            observed_at: Some(Timestamp::from_micros(1_800_000_000_000_000)),
            ..pair("alice", "carol")
        };

        assert_eq!(
            row(&fresh),
            ["alice", "bob", "relay", "0.85", "nat_table", "-", "-"]
        );
        // The time is the machine's local time; `when` is tested on its own.
        assert_eq!(
            row(&measured),
            [
                "alice".to_owned(),
                "carol".to_owned(),
                "direct".to_owned(),
                "1.00".to_owned(),
                "observed".to_owned(),
                "12.5 ms".to_owned(),
                format!(
                    "direct at {}",
                    when(Timestamp::from_micros(1_800_000_000_000_000))
                )
            ]
        );
        assert_eq!(
            plan_line(&[fresh, measured]),
            "path plan: alice ↔ bob relay (nat_table, 0.85); alice ↔ carol direct (observed, 1.00)"
        );
    }

    #[test]
    fn behaviours_are_read_by_their_wire_names() {
        assert_eq!(
            parse_behaviour("address_and_port_dependent"),
            Ok(NatBehaviour::AddressAndPortDependent)
        );
        assert_eq!(parse_behaviour(" none "), Ok(NatBehaviour::None));
        for bad in ["cone", "None", "symmetric", ""] {
            let error = parse_behaviour(bad).unwrap_err();
            assert!(error.contains("endpoint_independent"), "{bad}: {error}");
        }
        assert_eq!(wire_name(&PathBasis::SamePublicIp), "same_public_ip");
    }
}
