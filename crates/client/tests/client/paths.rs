//! The path plan through the client: a NAT report read from RFC 5780
//! results and connection outcomes change a pair's plan, members hear
//! `path_plan` on their socket, refusals carry the server's detail, and
//! what a plane without path plans or relay choice answers.

use lanrage_client::{
    ControlPlane, Event, Events, FilteringTest, MappingTest, PATH_PLAN_FEATURE, PeerDetails,
    RELAY_CHOICE_FEATURE, Rfc5780Results,
};
use lanrage_proto::{
    NatBehaviour, NatReport, NatType, PartyId, PathBasis, PathOutcome, PathPair, PathPlanKind,
    PathReport, PathsResponse, RelayStatusReport,
};

use crate::{
    helpers::{
        RELAY_KEY, assert_refusals, assert_unsupported, client, connected_plane, details, gave_up,
        hosting, name, next_event, peer_id, quitting_ws, refusal, remote_plane, spawn_server,
        v1_server,
    },
    relay_choice::{relay_id, rtts},
};

/// `id` behind a symmetric NAT, seen from the internet at `public_ip`.
fn symmetric(id: &str, public_ip: &str) -> PeerDetails {
    details(id)
        .with_nat_type(NatType::Symmetric)
        .with_public_endpoint(public_ip.parse().unwrap(), 40_000)
}

fn outcome(peer: &str, outcome: PathOutcome, rtt_ms: Option<f64>) -> PathReport {
    PathReport {
        peer_id: peer_id(peer),
        outcome,
        rtt_ms,
    }
}

/// The one pair of a party of two.
fn only(paths: &PathsResponse) -> &PathPair {
    assert_eq!(paths.pairs.len(), 1, "{paths:?}");
    &paths.pairs[0]
}

fn plan_of(pair: &PathPair) -> (PathPlanKind, f64, PathBasis) {
    (pair.plan, pair.confidence, pair.basis)
}

/// Skips to the next `path_plan`; its pairs and seq.
async fn path_plan(events: &mut Events) -> (Vec<PathPair>, u64) {
    next_event(events, |e| match e {
        Event::PathPlan { pairs, seq, .. } => Some((pairs.clone(), *seq)),
        _ => None,
    })
    .await
}

/// RFC 5780 results of a host behind a NAT that maps per address and
/// port and filters likewise, with a port opened by UPnP.
fn port_mapped_symmetric() -> Rfc5780Results {
    Rfc5780Results {
        mapping: Some(MappingTest {
            local: "192.168.1.20:51820".parse().unwrap(),
            primary: "198.51.100.2:40001".parse().unwrap(),
            alternate_ip: Some("198.51.100.2:40002".parse().unwrap()),
            alternate_ip_and_port: Some("198.51.100.2:40003".parse().unwrap()),
        }),
        filtering: Some(FilteringTest {
            change_ip_and_port: false,
            change_port: Some(false),
        }),
        port_mapping: true,
    }
}

#[tokio::test]
async fn nat_and_outcome_reports_change_the_plan_and_members_hear_of_it() {
    let server = spawn_server().await;
    let (alice, mut events) = connected_plane(&server.url(), "alice").await;
    let party_id = alice
        .register_party(name("Friday LAN"), symmetric("alice", "203.0.113.1"))
        .await
        .unwrap()
        .party
        .party_id;
    let bob = client(&server.url(), "bob");
    bob.join_party(&party_id, symmetric("bob", "198.51.100.2"))
        .await
        .unwrap();
    let table = alice.party_paths(&party_id).await.unwrap();

    let nat = port_mapped_symmetric().nat_report();
    bob.report_nat(&party_id, nat).await.unwrap();
    let (mapped_event, mapped_seq) = path_plan(&mut events).await;
    let mapped = bob.party_paths(&party_id).await.unwrap();
    alice
        .report_paths(
            &party_id,
            vec![outcome("bob", PathOutcome::Failed, Some(31.0))],
        )
        .await
        .unwrap();
    let (failed_event, failed_seq) = path_plan(&mut events).await;
    bob.report_paths(
        &party_id,
        vec![outcome("alice", PathOutcome::Relayed, Some(29.0))],
    )
    .await
    .unwrap();
    let observed = alice.party_paths(&party_id).await.unwrap();

    assert_eq!(table.party_id, party_id);
    let pair = only(&table);
    assert_eq!((pair.a.as_str(), pair.b.as_str()), ("alice", "bob"));
    assert_eq!(
        plan_of(pair),
        (PathPlanKind::Relay, 0.85, PathBasis::NatTable)
    );
    assert_eq!(
        (pair.rtt_ms, pair.observed, pair.observed_at),
        (None, None, None)
    );
    assert_eq!(
        nat,
        NatReport {
            mapping: NatBehaviour::AddressAndPortDependent,
            filtering: NatBehaviour::AddressAndPortDependent,
            port_mapping: true,
        }
    );
    // A port opened by UPnP counts as no NAT at all: reachable from anywhere.
    assert_eq!(
        plan_of(only(&mapped)),
        (PathPlanKind::Direct, 0.95, PathBasis::NatTable)
    );
    assert_eq!(mapped_event, mapped.pairs);
    assert_eq!(
        failed_event
            .iter()
            .map(|p| (p.plan, p.basis, p.observed))
            .collect::<Vec<_>>(),
        [(
            PathPlanKind::Relay,
            PathBasis::Observed,
            Some(PathOutcome::Failed)
        )]
    );
    assert!(failed_seq > mapped_seq);
    let pair = only(&observed);
    assert_eq!(
        plan_of(pair),
        (PathPlanKind::Relay, 1.0, PathBasis::Observed)
    );
    // Both directions fresh: their mean.
    assert_eq!(pair.rtt_ms, Some(30.0));
    assert_eq!(pair.observed, Some(PathOutcome::Relayed));
    assert!(pair.observed_at.is_some());
    assert_eq!(
        alice.socket().party().map(|view| view.seq >= failed_seq),
        Some(true),
        "the socket's view follows path_plan"
    );
    alice.close().await.unwrap();
}

#[tokio::test]
async fn refusals_carry_the_servers_status_and_detail() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    client(&server.url(), "bob")
        .join_party(&party_id, details("bob"))
        .await
        .unwrap();
    let eve = client(&server.url(), "eve");
    let open = NatReport {
        mapping: NatBehaviour::None,
        filtering: NatBehaviour::None,
        port_mapping: false,
    };

    let direct = |peer, rtt_ms| vec![outcome(peer, PathOutcome::Direct, rtt_ms)];
    let many = (0..65)
        .map(|_| outcome("bob", PathOutcome::Direct, None))
        .collect();
    let refusals = [
        (
            "an outsider reads",
            refusal(eve.party_paths(&party_id).await),
            403,
            party_id.as_str(),
        ),
        (
            "an outsider reports its NAT",
            refusal(eve.report_nat(&party_id, open).await),
            403,
            party_id.as_str(),
        ),
        (
            "an outsider reports an outcome",
            refusal(eve.report_paths(&party_id, direct("bob", None)).await),
            403,
            party_id.as_str(),
        ),
        (
            "about itself",
            refusal(alice.report_paths(&party_id, direct("alice", None)).await),
            404,
            "alice is the reporter itself: report about other members",
        ),
        (
            "about a stranger",
            refusal(alice.report_paths(&party_id, direct("eve", None)).await),
            404,
            "eve",
        ),
        (
            "no time at all",
            refusal(
                alice
                    .report_paths(&party_id, direct("bob", Some(0.0)))
                    .await,
            ),
            422,
            "rtt_ms must be over 0 and at most 10000, not 0",
        ),
        (
            "too many",
            refusal(alice.report_paths(&party_id, many).await),
            422,
            "at most 64 reports at once, not 65",
        ),
        // Not sent: JSON cannot carry it (it would read as no round trip).
        (
            "a round trip that is no number",
            refusal(
                alice
                    .report_paths(&party_id, direct("bob", Some(f64::NAN)))
                    .await,
            ),
            422,
            "rtt_ms must be over 0 and at most 10000, not NaN",
        ),
    ];
    let nothing_recorded = alice.party_paths(&party_id).await.unwrap();

    assert_refusals(&refusals);
    assert_eq!(only(&nothing_recorded).observed, None);
}

/// The error of one call of each method of relay choice and path plans
/// on `$plane` (a client or a remote plane: they have the same methods),
/// with the feature it needs.
macro_rules! beyond_v1 {
    ($plane:expr, $party_id:expr) => {
        vec![
            (
                RELAY_CHOICE_FEATURE,
                $plane
                    .report_relay_rtts($party_id, rtts(&[("x", Some(5.0))]))
                    .await
                    .unwrap_err(),
            ),
            (
                RELAY_CHOICE_FEATURE,
                $plane.party_relay($party_id).await.unwrap_err(),
            ),
            // A v1 server would read `status` as a region and list nothing.
            (
                RELAY_CHOICE_FEATURE,
                $plane.relay_statuses().await.unwrap_err(),
            ),
            (
                PATH_PLAN_FEATURE,
                $plane
                    .report_nat($party_id, port_mapped_symmetric().nat_report())
                    .await
                    .unwrap_err(),
            ),
            (
                PATH_PLAN_FEATURE,
                $plane
                    .report_paths(
                        $party_id,
                        vec![outcome("alice", PathOutcome::Direct, Some(12.0))],
                    )
                    .await
                    .unwrap_err(),
            ),
            (
                PATH_PLAN_FEATURE,
                $plane.party_paths($party_id).await.unwrap_err(),
            ),
        ]
    };
}

#[tokio::test]
async fn a_server_without_relay_choice_or_path_plans_is_told_apart_before_anything_is_sent() {
    let (url, seen) = v1_server().await;
    let bob = client(&url, "bob");
    let party_id = PartyId::parse("0123456789abcdef").unwrap();

    let mut errors = beyond_v1!(bob, &party_id);
    let drain = RelayStatusReport {
        draining: Some(true),
        ..RelayStatusReport::default()
    };
    errors.push((
        RELAY_CHOICE_FEATURE,
        bob.report_relay_status(RELAY_KEY, &relay_id("x"), &drain)
            .await
            .unwrap_err(),
    ));

    for (feature, error) in &errors {
        assert_unsupported(error, feature, &url);
    }
    // `GET /` once, remembered; nothing else was sent.
    assert_eq!(*seen.lock(), ["GET / HTTP/1.1"]);
}

#[tokio::test]
async fn a_plane_that_fell_back_to_local_has_no_relay_choice_or_path_plans() {
    let mut server = spawn_server().await;
    let (_alice, party_id) = hosting(&server, "alice").await;
    let (bob, mut events) = remote_plane(&server.url(), "bob", quitting_ws()).await;
    bob.join_party(&party_id, details("bob")).await.unwrap();

    server.stop().await;
    gave_up(&mut events).await;
    let errors = beyond_v1!(bob, &party_id);

    for (feature, error) in &errors {
        assert_unsupported(error, feature, "local");
    }
    assert!(bob.is_local());
    bob.close().await.unwrap();
}
