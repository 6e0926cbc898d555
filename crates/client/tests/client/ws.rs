//! The socket: typed events, reconnect after a server restart with the
//! changes missed meanwhile replayed, token renewal, and the fall back to
//! the local plane when the server does not come back.

use std::time::Duration;

use lanrage_client::{
    ControlPlane, Event, Events, LocalConfig, RemoteControlPlane, WsClient, WsConfig, WsState,
    ws_url,
};

use crate::helpers::{
    TestServer, client, client_with_unknown_token, connected, details, disconnected, gave_up,
    host_party, hosting, join_as, next_event, party_ended, patient_ws, peer_id, peer_ids,
    peer_joined, quitting_ws, spawn_server,
};

/// Alice's plane on `server`, falling back to the local plane as `local`
/// says, and its socket's events.
async fn alice_remote_plane(
    server: &TestServer,
    ws: WsConfig,
    local: LocalConfig,
) -> (RemoteControlPlane, Events) {
    RemoteControlPlane::connect(client(&server.url(), "alice"), ws, local)
        .await
        .unwrap()
}

#[test]
fn socket_urls_follow_the_server_url() {
    assert_eq!(
        ws_url("http://127.0.0.1:8667").unwrap(),
        "ws://127.0.0.1:8667/ws"
    );
    assert_eq!(
        ws_url("https://cp.example/").unwrap(),
        "wss://cp.example/ws"
    );
    assert_eq!(
        ws_url("https://cp.example/lanrage").unwrap(),
        "wss://cp.example/lanrage/ws"
    );
    assert!(ws_url("ftp://cp.example").is_err());
    assert!(ws_url("http://").is_err());
}

#[tokio::test]
async fn resumes_after_a_restart_and_replays_what_it_missed() {
    let mut server = spawn_server().await;
    let (alice, mut events) =
        alice_remote_plane(&server, patient_ws(), LocalConfig::new(peer_id("alice"))).await;
    connected(&mut events, false).await;
    let party_id = host_party(&alice).await;

    // Live: bob joins over HTTP and alice hears of it.
    join_as(&server.url(), "bob", &party_id).await;
    let bob_seq = peer_joined(&mut events, "bob").await;

    // The server goes away; while alice cannot reach it, carol joins
    // through another instance on the same database.
    let mut other = server.sibling().await;
    server.stop().await;
    disconnected(&mut events).await;
    join_as(&other.url(), "carol", &party_id).await;
    other.stop().await;

    // The server is back on the same port: alice reconnects and resumes.
    server.start_again().await;
    connected(&mut events, true).await;
    let carol_seq = next_event(&mut events, |e| match e {
        Event::PeerJoined { peer, seq, .. } if peer.peer_id.as_str() == "carol" => Some(*seq),
        Event::PartyUpdated { party, seq, .. } if party.peers.contains_key(&peer_id("carol")) => {
            Some(*seq)
        }
        _ => None,
    })
    .await;

    assert_eq!(carol_seq, bob_seq + 1);
    assert_eq!(alice.socket().state(), WsState::Connected);
    let view = alice.socket().party().unwrap();
    assert_eq!(view.seq, carol_seq);
    assert_eq!(peer_ids(&view.party.peers), ["alice", "bob", "carol"]);
    // Live events flow again after the resume.
    join_as(&server.url(), "dave", &party_id).await;
    assert_eq!(peer_joined(&mut events, "dave").await, carol_seq + 1);
    alice.close().await.unwrap();
    assert_eq!(alice.socket().state(), WsState::Closed);
}

#[tokio::test]
async fn signals_and_leaves_arrive_as_typed_events() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let bob = client(&server.url(), "bob");
    bob.join_party(&party_id, details("bob")).await.unwrap();
    let (socket, mut events) = WsClient::connect(bob.clone(), patient_ws()).await.unwrap();
    socket
        .track_party(bob.get_party(&party_id).await.unwrap())
        .await
        .unwrap();

    let offer = lanrage_proto::SignalData::parse(serde_json::json!({"type": "offer"})).unwrap();
    alice
        .send_signal(&party_id, &peer_id("bob"), offer.clone())
        .await
        .unwrap();
    let data = next_event(&mut events, |e| match e {
        Event::Signal(signal) => Some(signal.signal_data.clone()),
        _ => None,
    })
    .await;
    alice.leave_party(&party_id).await.unwrap();
    let reason = party_ended(&mut events).await;

    assert_eq!(data, offer);
    assert_eq!(reason, "host_left");
    assert!(socket.party().is_none());
    // Taken from the events, it is not handed out again.
    assert!(socket.take_signals(&party_id).is_empty());
    socket.close().await;
}

#[tokio::test]
async fn a_refused_socket_token_is_renewed() {
    let server = spawn_server().await;
    let http = client_with_unknown_token(&server.url(), "alice", "forgotten-by-the-server", 3600);

    let (socket, mut events) = WsClient::connect(http.clone(), patient_ws()).await.unwrap();

    let who = next_event(&mut events, |e| match e {
        Event::Connected { peer_id, .. } => Some(peer_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(who.as_str(), "alice");
    assert_eq!(http.registrations(), 1);
    socket.close().await;
}

#[tokio::test]
async fn falls_back_to_the_local_plane_when_the_server_stays_away() {
    let mut server = spawn_server().await;
    let (alice, mut events) =
        alice_remote_plane(&server, quitting_ws(), LocalConfig::new(peer_id("alice"))).await;
    let party_id = host_party(&alice).await;
    join_as(&server.url(), "bob", &party_id).await;
    peer_joined(&mut events, "bob").await;
    assert!(!alice.is_local());

    server.stop().await;
    let attempts = gave_up(&mut events).await;
    // Local from the moment the socket gave up, before any call.
    assert!(alice.is_local());

    // The next call is served locally, from the last view.
    let view = alice.get_party(&party_id).await.unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(peer_ids(&view.party.peers), ["alice", "bob"]);
    assert_eq!(alice.http().heartbeat_party(), None);
    // Local calls keep working: bob is still reachable for leaving.
    let outcome = alice.leave_party(&party_id).await.unwrap();
    assert_eq!(outcome, lanrage_client::LeaveOutcome::PartyDeleted);
    alice.close().await.unwrap();
}

/// The party events among `events`, as (seq, type) pairs.
fn party_seqs(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(party_seq).collect()
}

/// The seq of a party event.
fn party_seq(event: &Event) -> Option<u64> {
    match event {
        Event::PeerJoined { seq, .. }
        | Event::PeerLeft { seq, .. }
        | Event::PartyUpdated { seq, .. }
        | Event::PartyEnded { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// Reads events until `until` accepts one (kept), for at most PATIENCE.
async fn collect_until(events: &mut Events, mut until: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    let done = tokio::time::timeout(crate::helpers::PATIENCE, async {
        while let Some(event) = events.recv().await {
            let stop = until(&event);
            seen.push(event);
            if stop {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(done, Ok(true)), "never came; saw {seen:#?}");
    seen
}

/// Everything left once the socket is closed.
async fn rest(events: &mut Events) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(crate::helpers::PATIENCE, events.recv()).await
    {
        seen.push(event);
    }
    seen
}

fn has_seq(e: &Event, wanted: u64) -> bool {
    party_seq(e) == Some(wanted)
}

#[test]
fn the_client_gives_up_on_a_silent_socket_before_the_server_does() {
    // The server closes a socket silent for 2 × 20 s + 5 s.
    assert!(WsConfig::default().idle_timeout < Duration::from_secs(45));
    assert!(WsConfig::default().idle_timeout > Duration::from_secs(20));
}

#[tokio::test]
async fn no_event_is_lost_or_repeated_across_a_reconnect() {
    let mut server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    join_as(&server.url(), "bob", &party_id).await;
    let snapshot = alice.get_party(&party_id).await.unwrap();
    assert_eq!(snapshot.seq, 2);
    let (socket, mut events) = WsClient::connect_tracking(alice.clone(), patient_ws(), snapshot)
        .await
        .unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    let mut seen = collect_until(&mut events, |e| has_seq(e, 3)).await;

    // Down: dave joins and bob leaves elsewhere, and bob signals alice.
    let mut other = server.sibling().await;
    server.stop().await;
    seen.extend(collect_until(&mut events, |e| matches!(e, Event::Disconnected { .. })).await);
    join_as(&other.url(), "dave", &party_id).await;
    let bob_elsewhere = client(&other.url(), "bob");
    let knock = lanrage_proto::SignalData::parse(serde_json::json!({"type": "knock"})).unwrap();
    bob_elsewhere
        .send_signal(&party_id, &peer_id("alice"), knock.clone())
        .await
        .unwrap();
    bob_elsewhere.leave_party(&party_id).await.unwrap();
    other.stop().await;

    // Back: the missed events are replayed, the queued signal fetched,
    // and live events follow.
    server.start_again().await;
    let (mut replayed, mut signalled) = (false, false);
    seen.extend(
        collect_until(&mut events, |e| {
            replayed |= has_seq(e, 5);
            signalled |= matches!(e, Event::Signal(_));
            replayed && signalled
        })
        .await,
    );
    let signals: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Signal(signal) => {
                Some((signal.from_peer_id.clone(), signal.signal_data.clone()))
            }
            _ => None,
        })
        .collect();
    join_as(&server.url(), "erin", &party_id).await;
    seen.extend(collect_until(&mut events, |e| has_seq(e, 6)).await);
    socket.close().await;
    seen.extend(rest(&mut events).await);

    assert_eq!(party_seqs(&seen), [3, 4, 5, 6], "{seen:#?}");
    assert_eq!(signals, [(peer_id("bob"), knock)]);
    let view = socket.party().unwrap();
    assert_eq!(view.seq, 6);
    assert_eq!(
        peer_ids(&view.party.peers),
        ["alice", "carol", "dave", "erin"]
    );
}

#[tokio::test]
async fn following_a_known_party_from_the_start_repeats_nothing() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    // What `party watch` does: the snapshot first, then the socket; bob
    // joins in between, carol after.
    let snapshot = alice.get_party(&party_id).await.unwrap();
    join_as(&server.url(), "bob", &party_id).await;
    let (socket, mut events) = WsClient::connect_tracking(alice.clone(), patient_ws(), snapshot)
        .await
        .unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    let mut seen = collect_until(&mut events, |e| has_seq(e, 3)).await;
    socket.close().await;
    seen.extend(rest(&mut events).await);

    assert_eq!(party_seqs(&seen), [2, 3], "{seen:#?}");
}

#[tokio::test]
async fn tracking_after_events_went_out_does_not_repeat_them() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let snapshot = alice.get_party(&party_id).await.unwrap();
    let (socket, mut events) = WsClient::connect(alice.clone(), patient_ws())
        .await
        .unwrap();
    join_as(&server.url(), "bob", &party_id).await;
    let mut seen = collect_until(&mut events, |e| has_seq(e, 2)).await;

    // The resume this asks for replays bob's join: it is not shown again.
    socket.track_party(snapshot).await.unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    seen.extend(collect_until(&mut events, |e| has_seq(e, 3)).await);
    socket.close().await;
    seen.extend(rest(&mut events).await);

    assert_eq!(party_seqs(&seen), [2, 3], "{seen:#?}");
    assert_eq!(socket.party().unwrap().seq, 3);
}

#[tokio::test]
async fn joining_over_http_brings_the_whole_party_to_the_socket() {
    let server = spawn_server().await;
    let (_alice, party_id) = hosting(&server, "alice").await;
    let bob = client(&server.url(), "bob");
    let config = patient_ws().with_event_buffer(1);
    let (socket, mut events) = WsClient::connect(bob.clone(), config).await.unwrap();

    // Bob joins over HTTP and carol right after, while bob's application
    // is not reading yet.
    bob.join_party(&party_id, details("bob")).await.unwrap();
    join_as(&server.url(), "carol", &party_id).await;
    crate::helpers::eventually("the socket's view has carol", || async {
        socket
            .party()
            .filter(|v| v.party.peers.contains_key(&peer_id("carol")))
            .map(|_| ())
    })
    .await;
    socket.close().await;
    let seen = rest(&mut events).await;

    let seqs = party_seqs(&seen);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seen:#?}");
    let carol_shown = seen.iter().any(|e| match e {
        Event::PeerJoined { peer, .. } => peer.peer_id.as_str() == "carol",
        Event::PartyUpdated { party, .. } => party.peers.contains_key(&peer_id("carol")),
        _ => false,
    });
    assert!(
        carol_shown,
        "carol's join never reached the application: {seen:#?}"
    );
    assert_eq!(seqs.last(), Some(&3), "{seen:#?}");
}

#[tokio::test]
async fn a_reader_that_falls_behind_gets_the_party_as_it_is() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let snapshot = alice.get_party(&party_id).await.unwrap();
    let config = patient_ws().with_event_buffer(2);
    let (socket, mut events) = WsClient::connect_tracking(alice.clone(), config, snapshot)
        .await
        .unwrap();

    // Ten joins while the application reads nothing: the socket keeps up.
    let guests: Vec<String> = (0..10).map(|i| format!("guest-{i}")).collect();
    for guest in &guests {
        join_as(&server.url(), guest, &party_id).await;
    }
    crate::helpers::eventually("the socket's view has every guest", || async {
        socket.party().filter(|v| v.seq == 11).map(|_| ())
    })
    .await;
    let seen = collect_until(&mut events, |e| has_seq(e, 11)).await;

    let lagged = seen
        .iter()
        .position(|e| matches!(e, Event::Lagged { .. }))
        .unwrap_or_else(|| panic!("no Lagged: {seen:#?}"));
    match &seen[lagged + 1] {
        Event::PartyUpdated { party, seq, .. } => {
            assert_eq!(*seq, 11);
            assert_eq!(party.peers.len(), 11);
        }
        other => panic!("expected the party after Lagged, got {other:?}"),
    }
    let seqs = party_seqs(&seen);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seen:#?}");
    socket.close().await;
}

#[tokio::test]
async fn a_fallback_keeps_a_party_older_than_the_local_peer_timeout() {
    let mut server = spawn_server().await;
    let mut local = LocalConfig::new(peer_id("alice"));
    local.peer_timeout = Duration::from_secs(1);
    let (alice, mut events) = alice_remote_plane(&server, quitting_ws(), local).await;
    let party_id = host_party(&alice).await;
    join_as(&server.url(), "bob", &party_id).await;
    peer_joined(&mut events, "bob").await;
    // The party has run longer than the local plane's peer timeout.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    server.stop().await;
    gave_up(&mut events).await;

    let first = alice.get_party(&party_id).await.unwrap();
    let removed = alice.local().cleanup_now().await.unwrap();
    let later = alice.get_party(&party_id).await.unwrap();

    assert!(alice.is_local());
    assert_eq!(removed, 0);
    assert_eq!(first.party.peers.len(), 2);
    assert_eq!(later.party.peers.len(), 2);
    // The local plane keeps alice alive from now on.
    assert_eq!(alice.local().heartbeat_party(), Some(party_id));
    alice.close().await.unwrap();
}

#[tokio::test]
async fn signals_reach_an_application_that_only_polls() {
    let server = spawn_server().await;
    let (alice, mut events) =
        alice_remote_plane(&server, patient_ws(), LocalConfig::new(peer_id("alice"))).await;
    let party_id = host_party(&alice).await;
    join_as(&server.url(), "bob", &party_id).await;
    // The socket follows the party: bob's join reaches it (unread).
    crate::helpers::eventually("the socket sees bob", || async {
        alice
            .socket()
            .party()
            .filter(|v| v.party.peers.contains_key(&peer_id("bob")))
            .map(|_| ())
    })
    .await;
    let bob = client(&server.url(), "bob");
    let offers: Vec<_> = (0..3)
        .map(|n| lanrage_proto::SignalData::parse(serde_json::json!({ "n": n })).unwrap())
        .collect();

    // The application never reads its events; the server marks each
    // signal delivered once written to alice's socket.
    for offer in &offers {
        bob.send_signal(&party_id, &peer_id("alice"), offer.clone())
            .await
            .unwrap();
    }
    let mut polled = Vec::new();
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while polled.len() < offers.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polled only {polled:#?}"
        );
        polled.extend(alice.poll_signals(&party_id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    alice.close().await.unwrap();
    let later = rest(&mut events).await;

    let data: Vec<_> = polled.iter().map(|s| s.signal_data.clone()).collect();
    assert_eq!(data, offers);
    // Taken by polling, none comes again on the events.
    assert!(
        !later.iter().any(|e| matches!(e, Event::Signal(_))),
        "{later:#?}"
    );
}

#[tokio::test]
async fn signals_read_from_the_events_are_not_polled_again() {
    let server = spawn_server().await;
    let (alice, mut events) =
        alice_remote_plane(&server, patient_ws(), LocalConfig::new(peer_id("alice"))).await;
    let party_id = host_party(&alice).await;
    join_as(&server.url(), "bob", &party_id).await;
    peer_joined(&mut events, "bob").await;
    let offer = lanrage_proto::SignalData::parse(serde_json::json!({"type": "offer"})).unwrap();

    client(&server.url(), "bob")
        .send_signal(&party_id, &peer_id("alice"), offer.clone())
        .await
        .unwrap();
    let received = next_event(&mut events, |e| match e {
        Event::Signal(signal) => Some(signal.clone()),
        _ => None,
    })
    .await;

    assert_eq!(received.signal_data, offer);
    assert_eq!(received.from_peer_id, peer_id("bob"));
    assert!(alice.poll_signals(&party_id).await.unwrap().is_empty());
    alice.close().await.unwrap();
}
