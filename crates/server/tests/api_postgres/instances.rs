//! Several server instances on one PostgreSQL database.

use std::{collections::HashSet, net::Ipv4Addr};

use lanrage_proto::{PartyResponse, PeerId, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

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

/// Each instance serves party reads from memory for as long as a heartbeat
/// flush, here a minute: only the event feed can tell it of a change made
/// through another instance in time.
fn cache_for_a_minute(config: &mut lanrage_server::Config) {
    config.peer_timeout_secs = 600;
    config.heartbeat_flush_ms = Some(60_000);
}

/// Polls `instance`'s view of `party` until it has `members`; panics after
/// two seconds, far less than the cache would keep a stale entry.
async fn await_members(instance: &TestApp, party: &str, token: &str, members: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let seen = instance.read_party(party, token).await.party.peers.len();
        if seen == members {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the instance still shows {seen} members, not {members}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn party_reads_follow_changes_made_through_another_instance() {
    let a = spawn_app_with(cache_for_a_minute).await;
    let b = a.sibling(cache_for_a_minute).await;
    let (alice, party) = a.host_party("alice").await;
    assert_eq!(b.read_party(&party, &alice).await.party.peers.len(), 1);

    let (bob, _) = a.join(&party, "bob").await;
    await_members(&b, &party, &alice, 2).await;

    // The instance that made a change reads it at once, before its own
    // announcement comes back through the database.
    assert_eq!(a.read_party(&party, &alice).await.party.peers.len(), 2);
    b.leave(&party, "bob", &bob).await;
    assert_eq!(b.read_party(&party, &alice).await.party.peers.len(), 1);
    await_members(&a, &party, &alice, 1).await;
}

#[tokio::test]
async fn a_peer_that_joined_through_one_instance_reads_through_another_at_once() {
    let a = spawn_app_with(cache_for_a_minute).await;
    let b = a.sibling(cache_for_a_minute).await;
    let (alice, party) = a.host_party("alice").await;
    assert_eq!(b.read_party(&party, &alice).await.party.peers.len(), 1);

    // No waiting for the join's announcement to reach `b`: a reader its
    // cached view does not list is checked against the database.
    for round in 0..20 {
        let (token, _) = a.join(&party, &format!("peer{round}")).await;
        let read = b.read_party(&party, &token).await;
        assert_eq!(read.party.peers.len(), round + 2);
        let response = b
            .send(
                Method::GET,
                &format!("/parties/{party}/signals"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn party_reads_miss_no_change_while_the_event_feed_is_down() {
    let a = spawn_app_with(cache_for_a_minute).await;
    let b = a.sibling(cache_for_a_minute).await;
    let (alice, party) = a.host_party("alice").await;
    assert_eq!(a.read_party(&party, &alice).await.party.peers.len(), 1);

    // Cut every instance's notification connection; a change made now may
    // never be announced, so `a` must not trust what it cached before.
    let cut = a
        .sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .await;
    assert_eq!(cut, Some(2), "one notification connection per instance");
    b.join(&party, "bob").await;
    await_members(&a, &party, &alice, 2).await;

    // Once the feed is back, changes are followed again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    b.join(&party, "carol").await;
    await_members(&a, &party, &alice, 3).await;
}

#[tokio::test]
async fn a_key_challenge_from_one_instance_is_answered_on_another_once() {
    use lanrage_identity::{Purpose, WireGuardKey, derived_peer_id, prove, public_key_of};

    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let private = [42u8; 32];
    let key = public_key_of(&private);
    let challenge: Value = a
        .expect(
            Method::POST,
            "/auth/challenge",
            None,
            Some(json!({"public_key": key.as_str()})),
            StatusCode::OK,
        )
        .await;
    let id = challenge["challenge_id"].as_str().unwrap();
    let server_key = WireGuardKey::parse(challenge["server_key"].as_str().unwrap()).unwrap();
    let proof = prove(&private, &key, &server_key, Purpose::Register, id).unwrap();
    let body = json!({"challenge_id": id, "public_key": key.as_str(), "proof": proof});

    let token: Value = b
        .expect(
            Method::POST,
            "/auth/register/key",
            None,
            Some(body.clone()),
            StatusCode::OK,
        )
        .await;
    assert_eq!(token["peer_id"], derived_peer_id(&key).as_str());
    a.expect_error(
        Method::POST,
        "/auth/register/key",
        None,
        Some(body),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_token_revoked_through_one_instance_is_refused_by_the_others_at_once() {
    let a = spawn_app_with(|c| {
        c.admin_key = Some(crate::revocation::ADMIN_KEY.parse().unwrap());
    })
    .await;
    let b = a.sibling(|_| {}).await;
    let token = a.register("alice").await;
    let other = a.register("alice").await;
    // B has both cached, and a socket authenticated with the first.
    assert!(b.token_works(&token).await);
    assert!(b.token_works(&other).await);
    let mut socket = b.ws_as("alice", &token).await;

    assert_eq!(a.logout(&token).await.status(), StatusCode::OK);

    // The notification may still be on its way: B refuses within moments,
    // never after a cache lifetime (60 s).
    let refused_by_b = async {
        while b.token_works(&token).await {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), refused_by_b)
        .await
        .expect("B still accepts the revoked token");
    crate::revocation::expect_revoked_close(&mut socket).await;
    assert!(b.token_works(&other).await, "only the one token");

    // An admin revocation through A ends the rest on B too.
    let mut second = b.ws_as("alice", &other).await;
    let revoked: Value = a
        .expect(
            Method::POST,
            "/admin/peers/alice/revoke",
            Some(crate::revocation::ADMIN_KEY),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(revoked["tokens"], 1);
    crate::revocation::expect_revoked_close(&mut second).await;
    assert!(!b.token_works(&other).await);
}

#[tokio::test]
async fn a_revocation_made_while_the_event_feed_is_down_is_not_missed() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let token = a.register("alice").await;
    assert!(b.token_works(&token).await, "B has it cached");

    // Cut every notification connection: the revocation's announcement is
    // lost, so B must stop trusting its cache until the feed is back, and
    // empty it then.
    let cut = a
        .sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .await;
    assert_eq!(cut, Some(2), "one notification connection per instance");
    assert_eq!(a.logout(&token).await.status(), StatusCode::OK);

    let refused_by_b = async {
        while b.token_works(&token).await {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), refused_by_b)
        .await
        .expect("B still accepts a token revoked while its feed was down");
}
