//! Party routes and rules.

use std::{collections::HashSet, net::Ipv4Addr};

use lanrage_proto::{
    IpOrUnknown, JoinPartyResponse, NatType, PartyResponse, PeerResponse, PeersResponse,
    StatusResponse,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{key_for, peer_info, spawn_app};

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
    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
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
    let (_, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let (bob, first) = app.join(party, "bob").await;

    let mut info = peer_info("bob");
    info["public_ip"] = json!("203.0.113.9");
    info["public_port"] = json!(40000);
    info["nat_type"] = json!("full_cone");
    let again: JoinPartyResponse = app
        .expect(
            Method::POST,
            &format!("/parties/{party}/join"),
            Some(&bob),
            Some(json!({"party_id": party, "peer_info": info})),
            StatusCode::OK,
        )
        .await;

    assert_eq!(again.virtual_ip, first.virtual_ip);
    assert_eq!(again.seq, first.seq + 1);
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
    let (_, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let (bob, _) = app.join(party, "bob").await;
    app.join(party, "carol").await;
    app.expect::<StatusResponse>(
        Method::DELETE,
        &format!("/parties/{party}/peers/bob"),
        Some(&bob),
        None,
        StatusCode::OK,
    )
    .await;

    let (_, dave) = app.join(party, "dave").await;

    assert_eq!(dave.virtual_ip, Ipv4Addr::new(10, 66, 0, 2));
}

#[tokio::test]
async fn joining_another_party_moves_the_peer() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (_, second) = app.create_party("zed").await;
    let (bob, _) = app.join(first.party_id.as_str(), "bob").await;

    let moved = app.join_with(second.party_id.as_str(), "bob", &bob).await;

    assert!(moved.party.peers.keys().any(|p| p.as_str() == "bob"));
    let old: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{}", first.party_id),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
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

    app.expect_error(
        Method::GET,
        &format!("/parties/{}", first.party_id),
        Some(&alice),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn creating_a_party_moves_the_creator_out_of_its_old_one() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (bob, _) = app.join(first.party_id.as_str(), "bob").await;

    let _: serde_json::Value = app
        .expect(
            Method::POST,
            "/parties",
            Some(&bob),
            Some(json!({"name": "Bob's", "host_peer_info": peer_info("bob")})),
            StatusCode::OK,
        )
        .await;

    let old: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{}", first.party_id),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(old.party.peers.len(), 1);
}

#[tokio::test]
async fn members_list_and_discover_each_other() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    app.join(party, "bob").await;

    let peers: PeersResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}/peers"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    let bob: PeerResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}/peers/bob"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;

    assert_eq!(peers.peers.len(), 2);
    assert_eq!(bob.peer.peer_id.as_str(), "bob");
    assert_eq!(peers.peers[&bob.peer.peer_id], bob.peer);
    app.expect_error(
        Method::GET,
        &format!("/parties/{party}/peers/nobody"),
        Some(&alice),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn only_members_read_a_party() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let mallory = app.register("mallory").await;

    for path in [
        format!("/parties/{party}"),
        format!("/parties/{party}/peers"),
        format!("/parties/{party}/peers/alice"),
    ] {
        app.expect_error(
            Method::GET,
            &path,
            Some(&mallory),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    for path in [
        "/parties/0123456789abcdef0123456789abcdef",
        "/parties/0123456789abcdef0123456789abcdef/peers",
    ] {
        app.expect_error(
            Method::GET,
            path,
            Some(&mallory),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

#[tokio::test]
async fn peers_act_only_as_themselves() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let (bob, _) = app.join(party, "bob").await;
    let mallory = app.register("mallory").await;

    app.expect_error(
        Method::POST,
        "/parties",
        Some(&mallory),
        Some(json!({"name": "x", "host_peer_info": peer_info("alice")})),
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect_error(
        Method::POST,
        &format!("/parties/{party}/join"),
        Some(&mallory),
        Some(json!({"party_id": party, "peer_info": peer_info("bob")})),
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect_error(
        Method::DELETE,
        &format!("/parties/{party}/peers/alice"),
        Some(&bob),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect_error(
        Method::POST,
        &format!("/parties/{party}/peers/alice/heartbeat"),
        Some(&bob),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;

    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(read.party.peers.len(), 2);
    assert_eq!(read.seq, 2);
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn joining_an_unknown_party_is_not_found() {
    let app = spawn_app().await;
    let bob = app.register("bob").await;
    for party in ["0123456789abcdef0123456789abcdef", "no-such-party"] {
        app.expect_error(
            Method::POST,
            &format!("/parties/{party}/join"),
            Some(&bob),
            Some(json!({"party_id": party, "peer_info": peer_info("bob")})),
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

#[tokio::test]
async fn the_body_party_id_must_match_the_path() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let bob = app.register("bob").await;

    app.expect_error(
        Method::POST,
        &format!("/parties/{}/join", created.party_id),
        Some(&bob),
        Some(json!({"party_id": "other", "peer_info": peer_info("bob")})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn a_guest_leaving_leaves_the_party_running() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let (bob, _) = app.join(party, "bob").await;

    let left: StatusResponse = app
        .expect(
            Method::DELETE,
            &format!("/parties/{party}/peers/bob"),
            Some(&bob),
            None,
            StatusCode::OK,
        )
        .await;

    assert_eq!(left.status, "left");
    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(read.party.peers.len(), 1);
    app.expect_error(
        Method::DELETE,
        &format!("/parties/{party}/peers/bob"),
        Some(&bob),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.expect_error(
        Method::GET,
        &format!("/parties/{party}"),
        Some(&bob),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn the_host_leaving_deletes_the_party() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let (bob, _) = app.join(party, "bob").await;

    let left: StatusResponse = app
        .expect(
            Method::DELETE,
            &format!("/parties/{party}/peers/alice"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;

    assert_eq!(left.status, "party_deleted");
    assert_eq!(app.party_count().await, 0);
    app.expect_error(
        Method::GET,
        &format!("/parties/{party}"),
        Some(&bob),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Bob is free to create his own party now.
    app.expect_error(
        Method::POST,
        &format!("/parties/{party}/peers/bob/heartbeat"),
        Some(&bob),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn heartbeats_refresh_last_seen() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.as_str();
    let before = created.party.peers[&created.party.host_id].last_seen;

    let ok: StatusResponse = app
        .expect(
            Method::POST,
            &format!("/parties/{party}/peers/alice/heartbeat"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;

    assert_eq!(ok.status, "ok");
    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert!(read.party.peers[&created.party.host_id].last_seen > before);
}

#[tokio::test]
async fn heartbeats_outside_a_party_are_not_found() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let bob = app.register("bob").await;

    app.expect_error(
        Method::POST,
        &format!("/parties/{}/peers/bob/heartbeat", created.party_id),
        Some(&bob),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.expect_error(
        Method::POST,
        "/parties/0123456789abcdef0123456789abcdef/peers/bob/heartbeat",
        Some(&bob),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn concurrent_joins_lose_nobody_and_never_share_an_ip() {
    let app = spawn_app().await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let mut tokens = Vec::new();
    for i in 0..40 {
        let peer = format!("peer{i}");
        tokens.push((app.register(&peer).await, peer));
    }

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
    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(read.party.peers.len(), 41);
    let stored: HashSet<_> = read.virtual_ips.values().collect();
    assert_eq!(stored.len(), 41);
}

#[tokio::test]
async fn a_refused_move_leaves_the_peer_where_it_was() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let party = first.party_id.to_string();
    let (bob, joined) = app.join(&party, "bob").await;

    for (target, body, status) in [
        (
            "0123456789abcdef0123456789abcdef",
            json!({"party_id": "0123456789abcdef0123456789abcdef", "peer_info": peer_info("bob")}),
            StatusCode::NOT_FOUND,
        ),
        (
            "other",
            json!({"party_id": "mismatch", "peer_info": peer_info("bob")}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "other",
            json!({"party_id": "other", "peer_info": {"peer_id": "bob"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        app.expect_error(
            Method::POST,
            &format!("/parties/{target}/join"),
            Some(&bob),
            Some(body),
            status,
        )
        .await;
    }

    let read: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert!(read.party.peers.keys().any(|p| p.as_str() == "bob"));
    assert_eq!(read.seq, joined.seq, "no event was logged");
}

#[tokio::test]
async fn concurrent_moves_and_leaves_keep_every_peer_in_one_party() {
    let app = spawn_app().await;
    let (alice, first) = app.create_party("alice").await;
    let (zed, second) = app.create_party("zed").await;
    let parties = [first.party_id.to_string(), second.party_id.to_string()];
    let mut peers = Vec::new();
    for i in 0..12 {
        let peer = format!("mover{i}");
        peers.push((app.register(&peer).await, peer));
    }

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
        let read: PartyResponse = app
            .expect(
                Method::GET,
                &format!("/parties/{party}"),
                Some(token),
                None,
                StatusCode::OK,
            )
            .await;
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
    let party = created.party_id.to_string();
    let beat = format!("/parties/{party}/peers/alice/heartbeat");
    app.expect::<StatusResponse>(Method::POST, &beat, Some(&alice), None, StatusCode::OK)
        .await;
    let first = app
        .service
        .store()
        .snapshot(&created.party_id)
        .await
        .unwrap()
        .unwrap()
        .1[0]
        .peer
        .last_seen;

    app.expect::<StatusResponse>(Method::POST, &beat, Some(&alice), None, StatusCode::OK)
        .await;
    let (_, members) = app
        .service
        .store()
        .snapshot(&created.party_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        members[0].peer.last_seen, first,
        "the second heartbeat waits in memory"
    );
    app.service.flush_heartbeats().await.unwrap();

    let second = app
        .service
        .store()
        .snapshot(&created.party_id)
        .await
        .unwrap()
        .unwrap()
        .1[0]
        .peer
        .last_seen;
    assert!(second > first, "the coalesced heartbeat was stored");
}

#[tokio::test]
async fn a_heartbeat_after_leaving_is_not_found() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    let (bob, _) = app.join(&party, "bob").await;
    let beat = format!("/parties/{party}/peers/bob/heartbeat");
    app.expect::<StatusResponse>(Method::POST, &beat, Some(&bob), None, StatusCode::OK)
        .await;

    app.expect::<StatusResponse>(
        Method::DELETE,
        &format!("/parties/{party}/peers/bob"),
        Some(&bob),
        None,
        StatusCode::OK,
    )
    .await;

    app.expect_error(Method::POST, &beat, Some(&bob), None, StatusCode::NOT_FOUND)
        .await;
}
