//! Every operation of the HTTP client against the real server, tokens
//! renewed without the caller noticing, and the heartbeat task.

use std::time::Duration;

use lanrage_client::{ClientError, ControlPlane, HttpClient, LeaveOutcome};
use lanrage_proto::{PartyId, Region, RelayId, RelayRegistration, SignalData};
use serde_json::json;

use crate::helpers::{
    RELAY_KEY, client, client_with_unknown_token, create_party, details, eventually, host_party,
    hosting, http_config, peer_id, peer_ids, peer_info, spawn_server, spawn_server_with,
};

#[tokio::test]
async fn every_operation_works_against_the_server() {
    let server = spawn_server().await;
    let alice = client(&server.url(), "alice");
    let bob = client(&server.url(), "bob");

    // Create and join.
    let created = create_party(&alice).await;
    let party_id = created.party.party_id.clone();
    assert_eq!(created.party.host_id, peer_id("alice"));
    assert_eq!(created.virtual_ip.to_string(), "10.66.0.1");
    let joined = bob.join_party(&party_id, details("bob")).await.unwrap();
    assert_eq!(joined.virtual_ip.to_string(), "10.66.0.2");
    assert_eq!(joined.seq, created.seq + 1);

    // Read.
    let view = alice.get_party(&party_id).await.unwrap();
    assert_eq!(view.party.peers.len(), 2);
    assert_eq!(view.virtual_ips[&peer_id("bob")].to_string(), "10.66.0.2");
    let peers = bob.get_peers(&party_id).await.unwrap();
    assert_eq!(peer_ids(&peers), ["alice", "bob"]);
    let found = alice
        .discover_peer(&party_id, &peer_id("bob"))
        .await
        .unwrap();
    assert_eq!(found.public_key, peer_info("bob").public_key);

    // Heartbeat moves last_seen on (others may read it up to the server's
    // heartbeat flush interval late).
    let before = found.last_seen;
    tokio::time::sleep(Duration::from_millis(5)).await;
    bob.heartbeat(&party_id).await.unwrap();
    crate::helpers::eventually("bob's heartbeat shows", || async {
        let seen = alice
            .discover_peer(&party_id, &peer_id("bob"))
            .await
            .unwrap();
        (seen.last_seen > before).then_some(())
    })
    .await;

    // Signals.
    let offer =
        SignalData::parse(json!({"type": "offer", "endpoint": "198.51.100.4:51820"})).unwrap();
    alice
        .send_signal(&party_id, &peer_id("bob"), offer.clone())
        .await
        .unwrap();
    let signals = bob.poll_signals(&party_id).await.unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].from_peer_id, peer_id("alice"));
    assert_eq!(signals[0].signal_data, offer);
    assert!(bob.poll_signals(&party_id).await.unwrap().is_empty());

    // Relays: the operator registers, peers list.
    for (id, region) in [("us-1", "us"), ("eu-2", "eu"), ("eu-1", "eu")] {
        let registered = alice
            .register_relay(
                RELAY_KEY,
                &RelayRegistration {
                    relay_id: RelayId::parse(id).unwrap(),
                    public_ip: "198.51.100.10".parse().unwrap(),
                    port: 51820,
                    region: Region::parse(region).unwrap(),
                    capacity: 50,
                },
            )
            .await
            .unwrap();
        assert_eq!(registered.status, "registered");
    }
    let all: Vec<_> = bob.list_relays().await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.relay_id.as_str()).collect::<Vec<_>>(),
        ["eu-1", "eu-2", "us-1"]
    );
    let eu = bob
        .relays_by_region(&Region::parse("eu").unwrap())
        .await
        .unwrap();
    assert_eq!(eu.len(), 2);
    let gone = alice
        .deregister_relay(RELAY_KEY, &RelayId::parse("us-1").unwrap())
        .await
        .unwrap();
    assert_eq!(gone.status, "deregistered");

    // Leave: a member, then the host, which ends the party.
    assert_eq!(
        bob.leave_party(&party_id).await.unwrap(),
        LeaveOutcome::Left
    );
    assert_eq!(
        alice.leave_party(&party_id).await.unwrap(),
        LeaveOutcome::PartyDeleted
    );
    let error = alice.get_party(&party_id).await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert!(error.detail().unwrap().contains("not found"), "{error}");
}

#[tokio::test]
async fn refusals_carry_the_servers_detail() {
    let server = spawn_server().await;
    let (alice, party_id) = hosting(&server, "alice").await;
    let mallory = client(&server.url(), "mallory");

    let forbidden = mallory.get_party(&party_id).await.unwrap_err();
    let stranger_leaving = mallory.leave_party(&party_id).await.unwrap_err();
    let unknown = alice
        .get_party(&PartyId::parse("feedface").unwrap())
        .await
        .unwrap_err();
    let wrong_key = alice
        .register_relay(
            "not-the-key",
            &RelayRegistration {
                relay_id: RelayId::parse("r1").unwrap(),
                public_ip: "198.51.100.1".parse().unwrap(),
                port: 3478,
                region: Region::default(),
                capacity: 10,
            },
        )
        .await
        .unwrap_err();

    assert_eq!(forbidden.status(), Some(403));
    assert_eq!(stranger_leaving.status(), Some(404));
    assert_eq!(unknown.status(), Some(404));
    assert_eq!(wrong_key.status(), Some(403));
    for error in [&forbidden, &stranger_leaving, &unknown, &wrong_key] {
        assert!(matches!(error, ClientError::Refused { .. }));
        assert!(!error.is_retryable());
        assert!(!error.detail().unwrap().is_empty());
        // The message shows the server's own words.
        assert!(error.to_string().contains(error.detail().unwrap()));
    }
}

#[tokio::test]
async fn an_expired_token_is_renewed_before_use() {
    let server = spawn_server_with(|config| config.token_ttl_secs = 1).await;
    let alice = client(&server.url(), "alice");
    let created = create_party(&alice).await;
    assert_eq!(alice.registrations(), 1);
    let first = alice.current_token().await.unwrap();

    // Let the one-second token lapse.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let view = alice.get_party(&created.party.party_id).await.unwrap();

    assert_eq!(view.party.party_id, created.party.party_id);
    assert_eq!(alice.registrations(), 2);
    assert_ne!(alice.current_token().await.unwrap().token, first.token);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_call_goes_on() {
    let server = spawn_server().await;
    // A token from an earlier run that this server does not know (its
    // database was reset, or the token was revoked).
    let stale = "stale-token-from-a-previous-life";
    let alice = client_with_unknown_token(&server.url(), "alice", stale, 86_400);

    let relays = alice.list_relays().await.unwrap();

    assert!(relays.is_empty());
    assert_eq!(alice.registrations(), 1);
    assert_ne!(
        alice.current_token().await.unwrap().token,
        "stale-token-from-a-previous-life"
    );
}

#[tokio::test]
async fn create_and_join_start_the_heartbeat_and_leave_and_close_stop_it() {
    let server = spawn_server().await;
    let mut config = http_config(&server.url(), "alice");
    config.heartbeat_interval = Duration::from_millis(100);
    let alice = HttpClient::new(config).unwrap();
    let mut config = http_config(&server.url(), "bob");
    config.heartbeat_interval = Duration::from_millis(100);
    let bob = HttpClient::new(config).unwrap();
    assert_eq!(alice.heartbeat_party(), None);

    let party_id = host_party(&alice).await;
    bob.join_party(&party_id, details("bob")).await.unwrap();
    let joined_at = alice
        .discover_peer(&party_id, &peer_id("bob"))
        .await
        .unwrap()
        .last_seen;

    assert_eq!(alice.heartbeat_party(), Some(party_id.clone()));
    assert_eq!(bob.heartbeat_party(), Some(party_id.clone()));
    eventually("bob's heartbeats refresh last_seen", || async {
        let peer = alice.discover_peer(&party_id, &peer_id("bob")).await.ok()?;
        (bob.heartbeats_sent() >= 2 && peer.last_seen > joined_at).then_some(())
    })
    .await;

    bob.leave_party(&party_id).await.unwrap();
    assert_eq!(bob.heartbeat_party(), None);
    let sent = bob.heartbeats_sent();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bob.heartbeats_sent(), sent, "no heartbeat after leaving");

    alice.close().await.unwrap();
    assert_eq!(alice.heartbeat_party(), None);
}
