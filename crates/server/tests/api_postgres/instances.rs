//! Several server instances on one PostgreSQL database.

use std::{collections::HashSet, net::Ipv4Addr};

use lanrage_proto::{PartyResponse, PeerId, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn concurrent_joins_through_two_instances_lose_nobody() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let (alice, party) = a.host_party("alice").await;
    let peers = a.register_numbered("peer", 30).await;

    let joins = peers.iter().enumerate().map(|(i, (token, peer))| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.join_with(&party, peer, token)
    });
    let joined = futures_util::future::join_all(joins).await;

    let ips: HashSet<Ipv4Addr> = joined.iter().map(|j| j.virtual_ip).collect();
    assert_eq!(ips.len(), 30, "no virtual IP handed out twice");
    let seqs: HashSet<u64> = joined.iter().map(|j| j.seq).collect();
    assert_eq!(seqs, (2..=31).collect(), "one event number per join");
    let read: PartyResponse = b
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(read.party.peers.len(), 31);
}

#[tokio::test]
async fn changes_through_one_instance_reach_sockets_on_another() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let (alice, party) = a.host_party("alice").await;
    let mut host_on_b = b.ws_as("alice", &alice).await;

    let (bob, joined) = a.join(&party, "bob").await;
    let event = host_on_b.expect("peer_joined").await;
    assert_eq!(
        (event["peer"]["peer_id"].as_str(), event["seq"].as_u64()),
        (Some("bob"), Some(joined.seq))
    );

    let response = a
        .send(
            Method::POST,
            &format!("/parties/{party}/signals"),
            Some(&bob),
            Some(json!({"to_peer_id": "alice", "signal_data": {"type": "offer"}})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let signal = host_on_b.expect("signal").await;
    assert_eq!(signal["from_peer_id"], "bob");

    let mut bob_on_a = a.ws_as("bob", &bob).await;
    host_on_b
        .send(json!({"type": "signal", "party_id": party, "from_peer_id": "alice", "to_peer_id": "bob",
                     "signal_data": {"type": "answer"}}))
        .await;
    host_on_b.expect("ack").await;
    assert_eq!(
        bob_on_a.expect("signal").await["signal_data"]["type"],
        "answer"
    );
}

#[tokio::test]
async fn cleanup_on_every_instance_at_once_removes_each_peer_once() {
    let a = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let b = a.sibling(|c| c.peer_timeout_secs = 60).await;
    let c = a.sibling(|c| c.peer_timeout_secs = 60).await;
    let (alice, created) = a.create_party("alice").await;
    let party = created.party_id.to_string();
    for i in 0..5 {
        a.join(&party, &format!("quiet{i}")).await;
    }
    let mut host = c.ws_as("alice", &alice).await;
    let later = Timestamp::now().plus_secs(61);
    a.service
        .store()
        .touch_member(&created.party_id, &PeerId::parse("alice").unwrap(), later)
        .await
        .unwrap();

    let (ra, rb, rc) = tokio::join!(
        a.service.cleanup_once(later),
        b.service.cleanup_once(later),
        c.service.cleanup_once(later)
    );

    let removed: u64 = [ra, rb, rc]
        .into_iter()
        .map(|r| r.unwrap().stale_peers)
        .sum();
    assert_eq!(removed, 5, "each stale peer removed exactly once");
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let left = host.expect("peer_left").await;
        seqs.push(left["seq"].as_u64().unwrap());
    }
    assert_eq!(
        seqs,
        (7..=11).collect::<Vec<_>>(),
        "in order, no gaps, no duplicates"
    );
}

#[tokio::test]
async fn only_one_instance_claims_each_cleanup_interval() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let now = Timestamp::now();

    let (first, second) = tokio::join!(
        a.service.store().claim_cleanup(now, 60),
        b.service.store().claim_cleanup(now, 60)
    );

    assert_eq!(
        [first.unwrap(), second.unwrap()]
            .iter()
            .filter(|c| **c)
            .count(),
        1
    );
    assert!(
        !a.service
            .store()
            .claim_cleanup(now.plus_secs(30), 60)
            .await
            .unwrap()
    );
    assert!(
        b.service
            .store()
            .claim_cleanup(now.plus_secs(60), 60)
            .await
            .unwrap()
    );
}
