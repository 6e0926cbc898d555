//! `relay list | status | register | report`, and the party's relay
//! under `party relay` (relay choice, on a server that lists
//! `relay-choice`) with the line `party watch` prints for a
//! `relay_recommendation`.

use clap::{ArgGroup, Args, Subcommand};
use lanrage_client::ControlPlane;
use lanrage_proto::{
    IpOrUnknown, PartyId, PartyRelayResponse, PeerId, Region, RelayId, RelayRegistration,
    RelayStatusReport, RelayStatusesResponse, RelaysResponse, StatusResponse,
};

use serde::Serialize;

use super::{ClientArgs, Context, describe, party::print_table, when};

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    command: RelayCommand,
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// List relays, all or one region's.
    List {
        /// Only the relays of this region (as they registered it: `eu`,
        /// `us-east`).
        #[arg(long, value_parser = parse_region)]
        region: Option<Region>,
    },
    /// Every relay's sessions, load and state (active, draining, full,
    /// stale).
    Status,
    /// Register (or refresh) a relay: needs the operator's relay key.
    Register {
        /// The relay's ID, as its operator names it (`eu-1`).
        #[arg(value_parser = parse_relay_id)]
        relay_id: RelayId,
        /// The relay's public address.
        #[arg(long)]
        public_ip: IpOrUnknown,
        /// The relay's port.
        #[arg(long)]
        port: u16,
        /// Where it is (`eu`, `us-east`): `relay list --region` and the
        /// relay choice go by it.
        #[arg(long, value_parser = parse_region, default_value = "unknown")]
        region: Region,
        /// How many peers it takes.
        #[arg(long, default_value_t = 100)]
        capacity: u32,
        /// The operator's secret (the server's LANRAGE_RELAY_KEY).
        #[arg(long, env = "LANRAGE_RELAY_KEY", hide_env_values = true)]
        relay_key: String,
    },
    /// Report a relay's status (operators): what is left out keeps its
    /// last value. Also refreshes the relay.
    #[command(group(
        ArgGroup::new("status")
            .args(["sessions", "load", "draining"])
            .required(true)
            .multiple(true)
    ))]
    Report {
        /// The relay's ID, as it registered.
        #[arg(value_parser = parse_relay_id)]
        relay_id: RelayId,
        /// Sessions it carries now.
        #[arg(long)]
        sessions: Option<u32>,
        /// Its load, from 0 to 1.
        #[arg(long, value_parser = parse_load)]
        load: Option<f64>,
        /// `true` to stop parties being sent to it (those on it move
        /// elsewhere), `false` to take them again.
        #[arg(long, value_name = "true|false")]
        draining: Option<bool>,
        /// The operator's secret (the server's LANRAGE_RELAY_KEY).
        #[arg(long, env = "LANRAGE_RELAY_KEY", hide_env_values = true)]
        relay_key: String,
    },
}

fn parse_load(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|load| (0.0..=1.0).contains(load))
        .ok_or_else(|| "expected a load from 0 to 1".to_owned())
}

fn parse_region(value: &str) -> Result<Region, String> {
    Region::parse(value).map_err(|e| e.to_string())
}

fn parse_relay_id(value: &str) -> Result<RelayId, String> {
    RelayId::parse(value).map_err(|e| e.to_string())
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = match args.command {
        RelayCommand::List { region } => list(&cx, region).await,
        RelayCommand::Status => statuses(&cx).await,
        RelayCommand::Report {
            relay_id,
            sessions,
            load,
            draining,
            relay_key,
        } => {
            let report = RelayStatusReport {
                sessions,
                load,
                draining,
            };
            report_status(&cx, &relay_key, &relay_id, &report).await
        }
        RelayCommand::Register {
            relay_id,
            public_ip,
            port,
            region,
            capacity,
            relay_key,
        } => {
            let relay = RelayRegistration {
                relay_id,
                public_ip,
                port,
                region,
                capacity,
            };
            register(&cx, &relay_key, &relay).await
        }
    };
    let saved = cx.save().await;
    result.and(saved)
}

async fn list(cx: &Context, region: Option<Region>) -> anyhow::Result<()> {
    let relays = match &region {
        Some(region) => cx.http.relays_by_region(region).await,
        None => cx.http.list_relays().await,
    }
    .map_err(describe)?;
    let mut rows = vec![[
        "RELAY".to_owned(),
        "REGION".to_owned(),
        "ADDRESS".to_owned(),
        "CAPACITY".to_owned(),
        "REGISTERED".to_owned(),
    ]];
    for relay in &relays {
        rows.push([
            relay.relay_id.to_string(),
            relay.region.to_string(),
            format!("{}:{}", relay.public_ip, relay.port),
            relay.capacity.to_string(),
            when(relay.registered_at),
        ]);
    }
    if relays.is_empty()
        && !cx.args.json
        && let Some(region) = &region
    {
        out!("No relays in region {region}.")?;
        return Ok(());
    }
    print_relays(cx, &RelaysResponse { relays }, &rows)
}

/// With `--json`, the server's `answer`; otherwise the table `rows`
/// (a header, then a row per relay), or a line saying there are none.
fn print_relays<const N: usize>(
    cx: &Context,
    answer: &impl Serialize,
    rows: &[[String; N]],
) -> anyhow::Result<()> {
    if cx.args.json {
        return cx.print_json(answer);
    }
    if rows.len() < 2 {
        out!("No relays registered.")?;
        return Ok(());
    }
    print_table(rows)
}

async fn register(cx: &Context, relay_key: &str, relay: &RelayRegistration) -> anyhow::Result<()> {
    let answer = cx
        .http
        .register_relay(relay_key, relay)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&answer);
    }
    out!(
        "Relay {} registered in region {} at {}:{}.",
        answer.relay_id,
        relay.region,
        relay.public_ip,
        relay.port
    )?;
    Ok(())
}

async fn statuses(cx: &Context) -> anyhow::Result<()> {
    let relays = cx.http.relay_statuses().await.map_err(describe)?;
    let mut rows = vec![[
        "RELAY".to_owned(),
        "REGION".to_owned(),
        "STATE".to_owned(),
        "SESSIONS".to_owned(),
        "LOAD".to_owned(),
        "LAST STATUS".to_owned(),
    ]];
    let unknown = || "-".to_owned();
    for relay in &relays {
        rows.push([
            relay.relay_id.to_string(),
            relay.region.to_string(),
            relay.state.clone(),
            relay
                .sessions
                .map_or_else(unknown, |n| format!("{n}/{}", relay.capacity)),
            relay.load.map_or_else(unknown, |load| format!("{load:.2}")),
            relay.last_status_at.map_or_else(unknown, when),
        ]);
    }
    print_relays(cx, &RelayStatusesResponse { relays }, &rows)
}

async fn report_status(
    cx: &Context,
    relay_key: &str,
    relay_id: &RelayId,
    report: &RelayStatusReport,
) -> anyhow::Result<()> {
    cx.http
        .report_relay_status(relay_key, relay_id, report)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&StatusResponse::new("ok"));
    }
    out!("Status of relay {relay_id} reported.")?;
    if report.draining == Some(true) {
        out!("Parties using it are moving to another relay; sessions on it go on.")?;
    }
    Ok(())
}

/// `party relay`: the relay the party's relayed pairs should share, and why.
pub async fn show_party_relay(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let choice = cx.http.party_relay(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&choice);
    }
    for line in party_relay_lines(&choice) {
        out!("{line}")?;
    }
    Ok(())
}

fn party_relay_lines(choice: &PartyRelayResponse) -> Vec<String> {
    let head = format!("Party {}", choice.party_id);
    let Some(relay) = &choice.relay else {
        let mut lines = vec![format!("{head}: no relay recommended ({}).", choice.reason)];
        if !choice.unmeasured.is_empty() {
            lines.push(format!("Unmeasured: {}", ids(&choice.unmeasured)));
        }
        return lines;
    };
    let each: Vec<String> = choice
        .rtt_ms
        .iter()
        .map(|(peer, ms)| format!("{peer} {ms} ms"))
        .collect();
    let alternates: Vec<&str> = choice.alternates.iter().map(RelayId::as_str).collect();
    let or_none = |list: String| {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list
        }
    };
    vec![
        format!(
            "{head}: relay {} at {}:{}, region {} ({})",
            relay.relay_id, relay.public_ip, relay.port, relay.region, choice.reason
        ),
        format!(
            "Worst pair through it: {}",
            choice
                .worst_pair_rtt_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
        ),
        format!("Round trips to it: {}", or_none(each.join(", "))),
        format!("Unmeasured: {}", or_none(ids(&choice.unmeasured))),
        format!("Alternates: {}", or_none(alternates.join(", "))),
    ]
}

fn ids(peers: &[PeerId]) -> String {
    peers
        .iter()
        .map(PeerId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line `party watch` prints for a `relay_recommendation`.
pub fn recommendation_line(
    relay_id: Option<&RelayId>,
    worst_pair_rtt_ms: Option<u32>,
    reason: &str,
) -> String {
    match (relay_id, worst_pair_rtt_ms) {
        (Some(relay), Some(ms)) => {
            format!("relay: {relay} recommended (worst pair {ms} ms; {reason})")
        }
        (Some(relay), None) => format!("relay: {relay} recommended ({reason})"),
        (None, _) => format!("relay: none recommended ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lanrage_proto::{Relay, Timestamp};

    use super::*;

    fn peer(id: &str) -> PeerId {
        PeerId::parse(id).unwrap()
    }

    #[test]
    fn the_recommendation_reads_as_what_to_use_and_why() {
        let chosen = PartyRelayResponse {
            party_id: PartyId::parse("0123456789abcdef").unwrap(),
            relay: Some(Relay {
                relay_id: RelayId::parse("y").unwrap(),
                public_ip: "198.51.100.1".parse().unwrap(),
                port: 3478,
                region: Region::parse("eu").unwrap(),
                capacity: 10,
                registered_at: Timestamp::from_micros(0),
            }),
            worst_pair_rtt_ms: Some(80),
            rtt_ms: BTreeMap::from([(peer("alice"), 40), (peer("bob"), 41)]),
            unmeasured: vec![peer("carol")],
            alternates: vec![RelayId::parse("x").unwrap()],
            reason: "better".into(),
            seq: 7,
        };
        let nothing = PartyRelayResponse {
            relay: None,
            worst_pair_rtt_ms: None,
            rtt_ms: BTreeMap::new(),
            unmeasured: vec![peer("alice"), peer("bob")],
            alternates: vec![],
            reason: "no measurements".into(),
            ..chosen.clone()
        };

        assert_eq!(
            party_relay_lines(&chosen),
            [
                "Party 0123456789abcdef: relay y at 198.51.100.1:3478, region eu (better)",
                "Worst pair through it: 80 ms",
                "Round trips to it: alice 40 ms, bob 41 ms",
                "Unmeasured: carol",
                "Alternates: x",
            ]
        );
        assert_eq!(
            party_relay_lines(&nothing),
            [
                "Party 0123456789abcdef: no relay recommended (no measurements).",
                "Unmeasured: alice, bob",
            ]
        );
        let y = RelayId::parse("y").unwrap();
        assert_eq!(
            recommendation_line(Some(&y), Some(80), "better"),
            "relay: y recommended (worst pair 80 ms; better)"
        );
        assert_eq!(
            recommendation_line(None, None, "no candidate"),
            "relay: none recommended (no candidate)"
        );
    }

    #[test]
    fn a_load_is_from_0_to_1() {
        assert_eq!(parse_load("0.5"), Ok(0.5));
        assert_eq!(parse_load("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "inf", "half", ""] {
            assert!(parse_load(bad).is_err(), "{bad}");
        }
    }
}
