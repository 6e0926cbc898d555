//! The socket: typed events, reconnect after a server restart with the
//! changes missed meanwhile replayed, token renewal, and the fall back to
//! the local plane when the server does not come back.

use std::time::Duration;

use lanrage_client::{
    Backoff, ControlPlane, HttpClient, LocalConfig, RemoteControlPlane, WsClient, WsConfig,
    WsEvent, WsState, ws_url,
};
use lanrage_proto::{ServerMessage, Timestamp, TokenResponse};

use crate::helpers::{
    client, http_config, name, next_event, patient_ws, peer_id, peer_info, spawn_server,
};

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
    let alice_http = client(&server.url(), "alice");
    let (alice, mut events) =
        RemoteControlPlane::connect(alice_http, patient_ws(), LocalConfig::new(peer_id("alice")))
            .await
            .unwrap();
    next_event(&mut events, |e| {
        matches!(
            e,
            WsEvent::Connected {
                reconnect: false,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let created = alice
        .register_party(name("Friday LAN"), peer_info("alice"))
        .await
        .unwrap();
    let party_id = created.party.party_id.clone();

    // Live: bob joins over HTTP and alice hears of it.
    client(&server.url(), "bob")
        .join_party(&party_id, peer_info("bob"))
        .await
        .unwrap();
    let bob_seq = next_event(&mut events, |e| match e {
        WsEvent::Message(ServerMessage::PeerJoined { peer, seq, .. })
            if peer.peer_id.as_str() == "bob" =>
        {
            Some(*seq)
        }
        _ => None,
    })
    .await;

    // The server goes away; while alice cannot reach it, carol joins
    // through another instance on the same database.
    let (other_addr, stop_other, other) = server.sibling().await;
    server.stop().await;
    next_event(&mut events, |e| {
        matches!(e, WsEvent::Disconnected { .. }).then_some(())
    })
    .await;
    client(&format!("http://{other_addr}"), "carol")
        .join_party(&party_id, peer_info("carol"))
        .await
        .unwrap();
    stop_other.send(()).unwrap();
    other.await.unwrap().unwrap();

    // The server is back on the same port: alice reconnects and resumes.
    server.start_again().await;
    next_event(&mut events, |e| {
        matches!(
            e,
            WsEvent::Connected {
                reconnect: true,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let carol_seq = next_event(&mut events, |e| match e {
        WsEvent::Message(ServerMessage::PeerJoined { peer, seq, .. })
            if peer.peer_id.as_str() == "carol" =>
        {
            Some(*seq)
        }
        WsEvent::Message(ServerMessage::PartyUpdate { party, seq, .. })
            if party.peers.contains_key(&peer_id("carol")) =>
        {
            Some(*seq)
        }
        _ => None,
    })
    .await;

    assert_eq!(carol_seq, bob_seq + 1);
    assert_eq!(alice.socket().state(), WsState::Connected);
    let view = alice.socket().party().unwrap();
    assert_eq!(view.seq, carol_seq);
    assert_eq!(
        view.party
            .peers
            .keys()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    // Live events flow again after the resume.
    client(&server.url(), "dave")
        .join_party(&party_id, peer_info("dave"))
        .await
        .unwrap();
    next_event(&mut events, |e| match e {
        WsEvent::Message(ServerMessage::PeerJoined { peer, seq, .. })
            if peer.peer_id.as_str() == "dave" =>
        {
            assert_eq!(*seq, carol_seq + 1);
            Some(())
        }
        _ => None,
    })
    .await;
    alice.close().await.unwrap();
    assert_eq!(alice.socket().state(), WsState::Closed);
}

#[tokio::test]
async fn signals_and_leaves_arrive_as_typed_events() {
    let server = spawn_server().await;
    let alice = client(&server.url(), "alice");
    let bob = client(&server.url(), "bob");
    let created = alice
        .register_party(name("Friday LAN"), peer_info("alice"))
        .await
        .unwrap();
    let party_id = created.party.party_id.clone();
    bob.join_party(&party_id, peer_info("bob")).await.unwrap();
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
        WsEvent::Message(ServerMessage::Signal { signal_data, .. }) => Some(signal_data.clone()),
        _ => None,
    })
    .await;
    alice
        .leave_party(&party_id, &peer_id("alice"))
        .await
        .unwrap();
    let reason = next_event(&mut events, |e| match e {
        WsEvent::Message(ServerMessage::PartyEnded { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;

    assert_eq!(data, offer);
    assert_eq!(reason, "host_left");
    assert!(socket.party().is_none());
    socket.close().await;
}

#[tokio::test]
async fn a_refused_socket_token_is_renewed() {
    let server = spawn_server().await;
    let mut config = http_config(&server.url(), "alice");
    config.token = Some(TokenResponse {
        token: "forgotten-by-the-server".into(),
        peer_id: peer_id("alice"),
        expires_at: Timestamp::now().plus_secs(3600),
    });
    let http = HttpClient::new(config).unwrap();

    let (socket, mut events) = WsClient::connect(http.clone(), patient_ws()).await.unwrap();

    let who = next_event(&mut events, |e| match e {
        WsEvent::Connected { peer_id, .. } => Some(peer_id.clone()),
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
    let ws = WsConfig {
        reconnect: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            max_attempts: 3,
        },
        ..WsConfig::default()
    };
    let (alice, mut events) = RemoteControlPlane::connect(
        client(&server.url(), "alice"),
        ws,
        LocalConfig::new(peer_id("alice")),
    )
    .await
    .unwrap();
    let created = alice
        .register_party(name("Friday LAN"), peer_info("alice"))
        .await
        .unwrap();
    let party_id = created.party.party_id.clone();
    client(&server.url(), "bob")
        .join_party(&party_id, peer_info("bob"))
        .await
        .unwrap();
    next_event(&mut events, |e| match e {
        WsEvent::Message(ServerMessage::PeerJoined { peer, .. })
            if peer.peer_id.as_str() == "bob" =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    assert!(!alice.is_local());

    server.stop().await;
    let attempts = next_event(&mut events, |e| match e {
        WsEvent::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    })
    .await;

    // The next call notices and is served locally, from the last view.
    let view = alice.get_party(&party_id).await.unwrap();
    assert!(alice.is_local());
    assert_eq!(attempts, 3);
    assert_eq!(
        view.party
            .peers
            .keys()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(alice.http().heartbeat_party(), None);
    // Local calls keep working: bob is still reachable for leaving.
    let outcome = alice
        .leave_party(&party_id, &peer_id("alice"))
        .await
        .unwrap();
    assert_eq!(outcome, lanrage_client::LeaveOutcome::PartyDeleted);
    alice.close().await.unwrap();
}
