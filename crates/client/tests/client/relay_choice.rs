//! Relay choice through the client: members report round trips and read
//! the party's relay, `relay_recommendation` on the socket, the relay
//! operator's status report and everyone's view of relays' state, and
//! refusals with the server's detail. What a plane without relay choice
//! answers is in `paths.rs`, with path plans.

use std::collections::BTreeMap;

use lanrage_client::{ControlPlane, Event, Events, HttpClient};
use lanrage_proto::{
    PartyRelayResponse, PeerId, Region, RelayId, RelayRegistration, RelayRttsResponse, RelayStatus,
    RelayStatusReport,
};

use crate::helpers::{
    RELAY_KEY, assert_refusals, client, connected_plane, details, host_party, hosting, next_event,
    refusal, spawn_server,
};

pub fn relay_id(id: &str) -> RelayId {
    RelayId::parse(id).unwrap()
}

/// Registers relay `id` with the relay key, through `operator`.
async fn register(operator: &HttpClient, id: &str) {
    operator
        .register_relay(
            RELAY_KEY,
            &RelayRegistration {
                relay_id: relay_id(id),
                public_ip: "198.51.100.1".parse().unwrap(),
                port: 3478,
                region: Region::default(),
                capacity: 10,
            },
        )
        .await
        .unwrap();
}

/// A report of round trips: `None` for unreachable.
pub fn rtts(entries: &[(&str, Option<f64>)]) -> BTreeMap<RelayId, Option<f64>> {
    entries
        .iter()
        .map(|(relay, ms)| (relay_id(relay), *ms))
        .collect()
}

/// Skips to the `relay_recommendation` of `relay`; its worst pair, reason
/// and seq.
async fn recommended(events: &mut Events, relay: &str) -> (Option<u32>, String, u64) {
    next_event(events, |e| match e {
        Event::RelayRecommended {
            relay_id: Some(chosen),
            worst_pair_rtt_ms,
            reason,
            seq,
            ..
        } if chosen.as_str() == relay => Some((*worst_pair_rtt_ms, reason.clone(), *seq)),
        _ => None,
    })
    .await
}

fn ids(list: &[PeerId]) -> Vec<&str> {
    list.iter().map(PeerId::as_str).collect()
}

#[tokio::test]
async fn members_report_round_trips_and_hear_of_the_relay_their_worst_pair_needs() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    register(&alice, "x").await;
    register(&alice, "y").await;
    let (bob, mut events) = connected_plane(&server.url(), "bob").await;
    bob.join_party(&party_id, details("bob")).await.unwrap();
    let carol = client(&server.url(), "carol");
    carol.join_party(&party_id, details("carol")).await.unwrap();

    let before: PartyRelayResponse = bob.party_relay(&party_id).await.unwrap();
    // x is 10/10/90 ms away, y 40 from everyone: y's worst pair is 80,
    // x's 100 (DESIGN's example).
    let alice_said: RelayRttsResponse = alice
        .report_relay_rtts(
            &party_id,
            rtts(&[("x", Some(10.0)), ("y", Some(40.0)), ("ghost", Some(5.0))]),
        )
        .await
        .unwrap();
    let bob_said = bob
        .report_relay_rtts(&party_id, rtts(&[("x", Some(9.2)), ("y", Some(40.0))]))
        .await
        .unwrap();
    carol
        .report_relay_rtts(&party_id, rtts(&[("x", Some(90.0)), ("y", Some(40.0))]))
        .await
        .unwrap();
    let heard = recommended(&mut events, "y").await;
    let choice = bob.party_relay(&party_id).await.unwrap();

    assert_eq!(
        (before.relay, before.reason.as_str()),
        (None, "no measurements")
    );
    assert_eq!(ids(&before.unmeasured), ["alice", "bob", "carol"]);
    assert_eq!(alice_said.status, "ok");
    assert_eq!(alice_said.ignored, [relay_id("ghost")]);
    assert!(bob_said.ignored.is_empty());
    assert_eq!(choice.party_id, party_id);
    assert_eq!(choice.relay.map(|r| r.relay_id), Some(relay_id("y")));
    assert_eq!(choice.worst_pair_rtt_ms, Some(80));
    let each: Vec<(&str, u32)> = choice
        .rtt_ms
        .iter()
        .map(|(peer, ms)| (peer.as_str(), *ms))
        .collect();
    assert_eq!(each, [("alice", 40), ("bob", 40), ("carol", 40)]);
    assert!(choice.unmeasured.is_empty());
    assert_eq!(choice.alternates, [relay_id("x")]);
    assert_eq!(choice.reason, "better");
    assert_eq!(heard.0, Some(80));
    assert_eq!(heard.1, "better");
    assert_eq!(
        bob.socket().party().map(|view| view.seq >= heard.2),
        Some(true),
        "the socket's view follows relay_recommendation"
    );
    bob.close().await.unwrap();
}

#[tokio::test]
async fn the_operator_reports_relays_status_and_a_draining_relay_is_left() {
    let server = spawn_server().await;
    let (alice, mut events) = connected_plane(&server.url(), "alice").await;
    let party_id = host_party(&alice).await;
    let operator = client(&server.url(), "operator");
    register(&operator, "a").await;
    register(&operator, "b").await;
    alice
        .report_relay_rtts(&party_id, rtts(&[("a", Some(10.0)), ("b", Some(50.0))]))
        .await
        .unwrap();
    let first = alice.party_relay(&party_id).await.unwrap();

    let busy = RelayStatusReport {
        sessions: Some(3),
        load: Some(0.25),
        draining: None,
    };
    operator
        .report_relay_status(RELAY_KEY, &relay_id("b"), &busy)
        .await
        .unwrap();
    let drain = RelayStatusReport {
        draining: Some(true),
        ..RelayStatusReport::default()
    };
    operator
        .report_relay_status(RELAY_KEY, &relay_id("a"), &drain)
        .await
        .unwrap();
    let moved = recommended(&mut events, "b").await;
    let statuses: Vec<RelayStatus> = alice.relay_statuses().await.unwrap();
    let load = |load| RelayStatusReport {
        load: Some(load),
        ..RelayStatusReport::default()
    };
    let report = |key, id, report| {
        let operator = &operator;
        async move {
            refusal(
                operator
                    .report_relay_status(key, &relay_id(id), &report)
                    .await,
            )
        }
    };
    let refusals = [
        (
            "a wrong key",
            report("not-the-key", "a", drain).await,
            403,
            "",
        ),
        (
            "an unknown relay",
            report(RELAY_KEY, "nowhere", drain).await,
            404,
            "relay nowhere not found",
        ),
        (
            "an empty report",
            report(RELAY_KEY, "a", RelayStatusReport::default()).await,
            422,
            "a status needs at least one of sessions, load, draining",
        ),
        (
            "a load over 1",
            report(RELAY_KEY, "a", load(1.5)).await,
            422,
            "load must be from 0 to 1, not 1.5",
        ),
        // Not sent: JSON has no NaN.
        (
            "a load that is no number",
            report(RELAY_KEY, "a", load(f64::NAN)).await,
            422,
            "load must be from 0 to 1, not NaN",
        ),
    ];

    assert_eq!(first.relay.map(|r| r.relay_id), Some(relay_id("a")));
    assert_eq!(moved.1, "current draining");
    let seen: Vec<(&str, &str, Option<u32>, Option<f64>)> = statuses
        .iter()
        .map(|s| (s.relay_id.as_str(), s.state.as_str(), s.sessions, s.load))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "draining", None, None),
            ("b", "active", Some(3), Some(0.25))
        ]
    );
    assert!(statuses.iter().all(|s| s.last_status_at.is_some()));
    assert_refusals(&refusals);
    alice.close().await.unwrap();
}

#[tokio::test]
async fn refusals_carry_the_servers_status_and_detail() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    register(&alice, "x").await;
    let eve = client(&server.url(), "eve");

    let many: BTreeMap<RelayId, Option<f64>> = (0..65)
        .map(|i| (relay_id(&format!("r{i}")), Some(5.0)))
        .collect();
    let refusals = [
        (
            "an outsider reads",
            refusal(eve.party_relay(&party_id).await),
            403,
            party_id.as_str(),
        ),
        (
            "an outsider reports",
            refusal(
                eve.report_relay_rtts(&party_id, rtts(&[("x", Some(5.0))]))
                    .await,
            ),
            403,
            party_id.as_str(),
        ),
        (
            "no time at all",
            refusal(
                alice
                    .report_relay_rtts(&party_id, rtts(&[("x", Some(0.0))]))
                    .await,
            ),
            422,
            "the round trip to x must be over 0 and at most 10000 ms, or null, not 0",
        ),
        (
            "too many relays",
            refusal(alice.report_relay_rtts(&party_id, many).await),
            422,
            "a report names at most 64 relays, not 65",
        ),
        // Not sent: JSON cannot carry it (it would read as unreachable).
        (
            "an endless round trip",
            refusal(
                alice
                    .report_relay_rtts(&party_id, rtts(&[("x", Some(f64::INFINITY))]))
                    .await,
            ),
            422,
            "the round trip to x must be over 0 and at most 10000 ms, or null, not inf",
        ),
    ];
    let nothing_counted = alice.party_relay(&party_id).await.unwrap();

    assert_refusals(&refusals);
    assert_eq!(nothing_counted.reason, "no measurements");
}
