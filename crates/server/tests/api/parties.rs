//! Party routes and rules.

use std::{collections::HashSet, net::Ipv4Addr};

use lanrage_proto::{CreatePartyResponse, IpOrUnknown, NatType, PeerResponse, PeersResponse};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    Route::{Create, Heartbeat, Join, Leave, ListPeers, ReadParty, ReadPeer},
    create_body, join_body, key_for, peer_info, spawn_app,
};

/// A well-formed party id no party has.
const UNKNOWN_PARTY: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn create_returns_the_party_with_the_host_on_the_first_virtual_ip() {
    let app = spawn_app().await;

    let (_, created) = app.create_party("alice").await;

    assert_eq!(created.party_id, created.party.party_id);
    assert_eq!(created.party_id.as_str().len(), 32);
    assert_eq!(created.party.name.as_str(), "Friday LAN");
    assert_eq!(created.party.host_id.as_str(), "alice");
    assert_eq!(created.virtual_ip, Ipv4Addr::new(10, 66, 0, 1));
    assert_eq!(created.seq, 1);
    let host = &created.party.peers[&created.party.host_id];
    assert_eq!(host.public_ip, IpOrUnknown::Unknown);
    assert_eq!(host.public_port, 0);
    assert_eq!(host.nat_type, NatType::Unknown);
    assert_eq!(host.public_key.as_str(), key_for("alice"));
    // The server keeps the clock: the client's last_seen is not taken.
    assert!(host.last_seen >= created.party.created_at);
}

#[tokio::test]
async fn party_ids_are_unguessable() {
    let app = spawn_app().await;
    let (_, first) = app.create_party("alice").await;
    let (_, second) = app.create_party("bob").await;
    assert_ne!(first.party_id, second.party_id);
}

#[tokio::test]
async fn joiners_get_the_next_virtual_ips_and_everyone_sees_them() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();

    let (_, bob) = app.join(party, "bob").await;
    let (_, carol) = app.join(party, "carol").await;

    assert_eq!(bob.virtual_ip, Ipv4Addr::new(10, 66, 0, 2));
    assert_eq!(carol.virtual_ip, Ipv4Addr::new(10, 66, 0, 3));
    assert_eq!((bob.seq, carol.seq), (2, 3));
    assert_eq!(carol.party.peers.len(), 3);
    let read = app.read_party(party, &alice).await;
    assert_eq!(read.seq, 3);
    assert_eq!(read.party, carol.party);
    assert_eq!(read.virtual_ips.len(), 3);
    assert_eq!(
        read.virtual_ips[&created.party.host_id],
        Ipv4Addr::new(10, 66, 0, 1)
    );
}

#[tokio::test]
async fn joining_again_refreshes_info_and_keeps_the_virtual_ip() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;

    let mut info = peer_info("bob");
    info["public_ip"] = json!("203.0.113.9");
    info["public_port"] = json!(40000);
    info["nat_type"] = json!("full_cone");
    let again = app.join_as(&party.id, &party.bob, info).await;

    assert_eq!(again.virtual_ip, party.joined.virtual_ip);
    assert_eq!(again.seq, party.joined.seq + 1);
    let peer = again
        .party
        .peers
        .values()
        .find(|p| p.peer_id.as_str() == "bob")
        .unwrap();
    assert_eq!(peer.public_ip.to_string(), "203.0.113.9");
    assert_eq!(peer.public_port, 40000);
    assert_eq!(peer.nat_type, NatType::FullCone);
    assert_eq!(again.party.peers.len(), 2);
}

#[tokio::test]
async fn freed_virtual_ips_are_reused_lowest_first() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;
    app.join(&party, "carol").await;
    app.leave(&party, "bob", &bob).await;

    let (_, dave) = app.join(&party, "dave").await;

    assert_eq!(dave.virtual_ip, Ipv4Addr::new(10, 66, 0, 2));
}

#[tokio::test]
async fn joining_another_party_moves_the_peer() {
    let app = spawn_app().await;
    let first = app.party_of_two().await;
    let (_, second) = app.create_party("zed").await;

    let moved = app
        .join_with(second.party_id.as_str(), "bob", &first.bob)
        .await;

    assert!(moved.party.peers.keys().any(|p| p.as_str() == "bob"));
    let old = app.read_party(&first.id, &first.alice).await;
    assert!(!old.party.peers.keys().any(|p| p.as_str() == "bob"));
    assert_eq!(old.seq, 3, "joined, then left");
}

#[tokio::test]
async fn a_host_joining_another_party_ends_its_own() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (_, second) = app.create_party("zed").await;

    app.join_with(second.party_id.as_str(), "alice", &alice)
        .await;

    let first = first.party_id.as_str();
    app.refused(ReadParty(first), &alice, StatusCode::NOT_FOUND)
        .await;
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn creating_a_party_moves_the_creator_out_of_its_old_one() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (bob, _) = app.join(first.party_id.as_str(), "bob").await;

    let bobs = create_body("Bob's", peer_info("bob"));
    let _: CreatePartyResponse = app.call(Create(bobs), &bob).await;

    let old = app.read_party(first.party_id.as_str(), &alice).await;
    assert_eq!(old.party.peers.len(), 1);
}

#[tokio::test]
async fn members_list_and_discover_each_other() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    app.join(&party, "bob").await;

    let peers: PeersResponse = app.call(ListPeers(&party), &alice).await;
    let bob: PeerResponse = app.call(ReadPeer(&party, "bob"), &alice).await;

    assert_eq!(peers.peers.len(), 2);
    assert_eq!(bob.peer.peer_id.as_str(), "bob");
    assert_eq!(peers.peers[&bob.peer.peer_id], bob.peer);
    app.refused(ReadPeer(&party, "nobody"), &alice, StatusCode::NOT_FOUND)
        .await;
}

#[tokio::test]
async fn only_members_read_a_party() {
    let app = spawn_app().await;
    let (party, mallory) = app.party_and_outsider("mallory").await;

    for (route, status) in [
        (ReadParty(&party), StatusCode::FORBIDDEN),
        (ListPeers(&party), StatusCode::FORBIDDEN),
        (ReadPeer(&party, "alice"), StatusCode::FORBIDDEN),
        (ReadParty(UNKNOWN_PARTY), StatusCode::NOT_FOUND),
        (ListPeers(UNKNOWN_PARTY), StatusCode::NOT_FOUND),
    ] {
        app.refused(route, &mallory, status).await;
    }
}

#[tokio::test]
async fn peers_act_only_as_themselves() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let mallory = app.register("mallory").await;
    let forbidden = StatusCode::FORBIDDEN;

    let as_alice = create_body("x", peer_info("alice"));
    app.refused(Create(as_alice), &mallory, forbidden).await;
    let as_bob = join_body(&party.id, peer_info("bob"));
    app.refused(Join(&party.id, as_bob), &mallory, forbidden)
        .await;
    app.refused(Leave(&party.id, "alice"), &party.bob, forbidden)
        .await;
    app.refused(Heartbeat(&party.id, "alice"), &party.bob, forbidden)
        .await;

    let read = app.read_party(&party.id, &party.alice).await;
    assert_eq!(read.party.peers.len(), 2);
    assert_eq!(read.seq, 2);
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn joining_an_unknown_party_is_not_found() {
    let app = spawn_app().await;
    let bob = app.register("bob").await;
    for party in [UNKNOWN_PARTY, "no-such-party"] {
        let body = join_body(party, peer_info("bob"));
        app.refused(Join(party, body), &bob, StatusCode::NOT_FOUND)
            .await;
    }
}

#[tokio::test]
async fn the_body_party_id_must_match_the_path() {
    let app = spawn_app().await;
    let (party, bob) = app.party_and_outsider("bob").await;

    let body = join_body("other", peer_info("bob"));
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    app.refused(Join(&party, body), &bob, status).await;
}

#[tokio::test]
async fn a_guest_leaving_leaves_the_party_running() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let (id, bob) = (party.id.as_str(), party.bob.as_str());

    let left = app.leave(id, "bob", bob).await;

    assert_eq!(left.status, "left");
    let read = app.read_party(id, &party.alice).await;
    assert_eq!(read.party.peers.len(), 1);
    app.refused(Leave(id, "bob"), bob, StatusCode::NOT_FOUND)
        .await;
    app.refused(ReadParty(id), bob, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn the_host_leaving_deletes_the_party() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;

    let left = app.leave(&party.id, "alice", &party.alice).await;

    assert_eq!(left.status, "party_deleted");
    assert_eq!(app.party_count().await, 0);
    // The party is gone, and Bob is free to create his own.
    for route in [ReadParty(&party.id), Heartbeat(&party.id, "bob")] {
        app.refused(route, &party.bob, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn heartbeats_refresh_last_seen() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let before = created.party.peers[&created.party.host_id].last_seen;

    let ok = app.heartbeat(party, "alice", &alice).await;

    assert_eq!(ok.status, "ok");
    let read = app.read_party(party, &alice).await;
    assert!(read.party.peers[&created.party.host_id].last_seen > before);
}

#[tokio::test]
async fn heartbeats_outside_a_party_are_not_found() {
    let app = spawn_app().await;
    let (party, bob) = app.party_and_outsider("bob").await;

    for party in [party.as_str(), UNKNOWN_PARTY] {
        app.refused(Heartbeat(party, "bob"), &bob, StatusCode::NOT_FOUND)
            .await;
    }
}

#[tokio::test]
async fn concurrent_joins_lose_nobody_and_never_share_an_ip() {
    let app = spawn_app().await;
    let (alice, party) = app.host_party("alice").await;
    let tokens = app.register_numbered("peer", 40).await;

    let joins = tokens
        .iter()
        .map(|(token, peer)| app.join_with(&party, peer, token));
    let results = futures_util::future::join_all(joins).await;

    let ips: HashSet<_> = results.iter().map(|r| r.virtual_ip).collect();
    assert_eq!(ips.len(), 40);
    assert!(!ips.contains(&Ipv4Addr::new(10, 66, 0, 1)));
    let seqs: HashSet<_> = results.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (2..=41).collect(),
        "every join got its own event number"
    );
    let read = app.read_party(&party, &alice).await;
    assert_eq!(read.party.peers.len(), 41);
    let stored: HashSet<_> = read.virtual_ips.values().collect();
    assert_eq!(stored.len(), 41);
}

#[tokio::test]
async fn a_refused_move_leaves_the_peer_where_it_was() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;

    for (target, body, status) in [
        (
            UNKNOWN_PARTY,
            join_body(UNKNOWN_PARTY, peer_info("bob")),
            StatusCode::NOT_FOUND,
        ),
        (
            "other",
            join_body("mismatch", peer_info("bob")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "other",
            join_body("other", json!({"peer_id": "bob"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        app.refused(Join(target, body), &party.bob, status).await;
    }

    let read = app.read_party(&party.id, &party.alice).await;
    assert!(read.party.peers.keys().any(|p| p.as_str() == "bob"));
    assert_eq!(read.seq, party.joined.seq, "no event was logged");
}

#[tokio::test]
async fn concurrent_moves_and_leaves_keep_every_peer_in_one_party() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (zed, second) = app.create_party("zed").await;
    let parties = [first.party_id.to_string(), second.party_id.to_string()];
    let peers = app.register_numbered("mover", 12).await;

    let storm = peers.iter().enumerate().map(|(i, (token, peer))| {
        let app = &app;
        let parties = &parties;
        async move {
            for round in 0..6 {
                let party = &parties[(i + round) % 2];
                if (i + round) % 3 == 2 {
                    let response = app
                        .send(
                            Method::DELETE,
                            &format!("/parties/{party}/peers/{peer}"),
                            Some(token),
                            None,
                        )
                        .await;
                    assert!(matches!(
                        response.status(),
                        StatusCode::OK | StatusCode::NOT_FOUND
                    ));
                } else {
                    app.join_with(party, peer, token).await;
                }
            }
        }
    });
    futures_util::future::join_all(storm).await;

    let mut seen = HashSet::new();
    for (token, party) in [(&alice, &parties[0]), (&zed, &parties[1])] {
        let read = app.read_party(party, token).await;
        let ips: HashSet<_> = read.virtual_ips.values().collect();
        assert_eq!(ips.len(), read.party.peers.len(), "virtual IPs unique");
        for peer in read.party.peers.keys() {
            assert!(seen.insert(peer.clone()), "{peer} is in both parties");
        }
    }
}

#[tokio::test]
async fn repeated_heartbeats_are_coalesced_and_stored_on_flush() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    app.heartbeat(party, "alice", &alice).await;
    let first = app.stored_members(&created.party_id).await[0]
        .peer
        .last_seen;

    app.heartbeat(party, "alice", &alice).await;
    let members = app.stored_members(&created.party_id).await;
    assert_eq!(
        members[0].peer.last_seen, first,
        "the second heartbeat waits in memory"
    );
    app.service.flush_heartbeats().await.unwrap();

    let second = app.stored_members(&created.party_id).await[0]
        .peer
        .last_seen;
    assert!(second > first, "the coalesced heartbeat was stored");
}

#[tokio::test]
async fn a_heartbeat_after_leaving_is_not_found() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let (id, bob) = (party.id.as_str(), party.bob.as_str());
    app.heartbeat(id, "bob", bob).await;

    app.leave(id, "bob", bob).await;

    app.refused(Heartbeat(id, "bob"), bob, StatusCode::NOT_FOUND)
        .await;
}
