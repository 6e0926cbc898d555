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

#[tokio::test]
async fn an_absent_host_watched_by_two_instances_is_replaced_once() {
    let a = spawn_app_with(|c| c.host_grace_secs = 1).await;
    let b = a.sibling(|c| c.host_grace_secs = 1).await;
    let alice = a.register("alice").await;
    let mut body = crate::helpers::create_body("LAN", crate::helpers::peer_info("alice"));
    body["settings"] = json!({"host_policy": "migrate"});
    let created: lanrage_proto::CreatePartyResponse = a
        .expect(
            Method::POST,
            "/parties",
            Some(&alice),
            Some(body),
            StatusCode::OK,
        )
        .await;
    let party = created.party_id.to_string();
    let host_on_a = a.ws_as("alice", &alice).await;
    let (bob, _) = b.join(&party, "bob").await;
    let (carol, _) = b.join(&party, "carol").await;
    let mut bob_on_b = b.ws_as("bob", &bob).await;
    let mut carol_on_a = a.ws_as("carol", &carol).await;

    // The host's socket closes; both instances look for absent hosts.
    drop(host_on_a);

    for socket in [&mut bob_on_b, &mut carol_on_a] {
        let changed = socket.expect("host_changed").await;
        assert_eq!(
            (
                changed["new_host_id"].as_str(),
                changed["host_epoch"].as_u64()
            ),
            (Some("bob"), Some(2))
        );
        assert_eq!(changed["reason"], "absent");
        socket.expect("party_update").await;
        socket
            .expect_silence(std::time::Duration::from_millis(1500))
            .await;
    }
    let read: PartyResponse = a.read_party(&party, &carol).await;
    assert_eq!(read.extras.host_epoch, Some(2), "one election");
    assert_eq!(read.party.host_id.as_str(), "bob");
}

#[tokio::test]
async fn a_code_redeemed_through_two_instances_at_once_admits_exactly_its_uses() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    let (alice, party) = a.host_party("alice").await;
    let made: lanrage_proto::InviteResponse = a
        .expect(
            Method::POST,
            &format!("/parties/{party}/invites"),
            Some(&alice),
            Some(json!({"max_uses": 5})),
            StatusCode::CREATED,
        )
        .await;
    let code = made.invite.code;
    let peers = a.register_numbered("p", 20).await;
    let path = format!("/invites/{code}/join");

    let redemptions = peers.iter().enumerate().map(|(i, (token, peer))| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.send(
            Method::POST,
            &path,
            Some(token),
            Some(json!({"peer_info": crate::helpers::peer_info(peer)})),
        )
    });
    let answers = futures_util::future::join_all(redemptions).await;

    let admitted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(admitted, 5);
    assert!(
        answers
            .iter()
            .all(|r| matches!(r.status(), StatusCode::OK | StatusCode::NOT_FOUND))
    );
    let read: PartyResponse = b.read_party(&party, &alice).await;
    assert_eq!(read.party.peers.len(), 6);
}

#[tokio::test]
async fn reports_through_two_instances_give_one_recommendation_and_one_event() {
    let a = spawn_app().await;
    let b = a.sibling(|_| {}).await;
    for relay in ["x", "y"] {
        a.register_relay(json!({"relay_id": relay, "public_ip": "198.51.100.1", "port": 1}))
            .await;
    }
    let party = a.party_of_two().await;
    let mut watcher = b.ws_as("bob", &party.bob).await;
    let body = json!({"rtts": {"x": 50, "y": 10}});
    let (alice_path, bob_path) = (
        format!("/parties/{}/peers/alice/relay-rtts", party.id),
        format!("/parties/{}/peers/bob/relay-rtts", party.id),
    );
    let (one, two) = tokio::join!(
        a.send(
            Method::PUT,
            &alice_path,
            Some(&party.alice),
            Some(body.clone())
        ),
        b.send(Method::PUT, &bob_path, Some(&party.bob), Some(body.clone())),
    );
    assert_eq!(
        (one.status(), two.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    let event = watcher.expect("relay_recommendation").await;
    assert_eq!(event["relay_id"], "y");
    watcher
        .expect_silence(std::time::Duration::from_millis(1500))
        .await;
    for app in [&a, &b] {
        let read: lanrage_proto::PartyRelayResponse = app
            .expect(
                Method::GET,
                &format!("/parties/{}/relay", party.id),
                Some(&party.alice),
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(read.relay.unwrap().relay_id.as_str(), "y");
        assert_eq!(read.worst_pair_rtt_ms, Some(20));
    }
}

#[tokio::test]
async fn path_statistics_fed_through_two_instances_give_one_plan() {
    let a = spawn_app_with(|c| c.path_min_samples = 4).await;
    let b = a.sibling(|c| c.path_min_samples = 4).await;
    let symmetric = |peer: &str, ip: &str| {
        let mut info = crate::helpers::peer_info(peer);
        info["nat_type"] = json!("symmetric");
        info["public_ip"] = json!(ip);
        info
    };
    let mut parties = Vec::new();
    for (i, app) in [&a, &b, &a].into_iter().enumerate() {
        let host = app.register(&format!("h{i}")).await;
        let created: lanrage_proto::CreatePartyResponse = app
            .expect(
                Method::POST,
                "/parties",
                Some(&host),
                Some(crate::helpers::create_body(
                    "LAN",
                    symmetric(&format!("h{i}"), "203.0.113.1"),
                )),
                StatusCode::OK,
            )
            .await;
        let party = created.party_id.to_string();
        let guest = app.register(&format!("g{i}")).await;
        app.join_as(&party, &guest, symmetric(&format!("g{i}"), "198.51.100.2"))
            .await;
        parties.push((party, host, i));
    }
    // Two outcomes through each instance for the first two parties.
    for (party, host, i) in &parties[..2] {
        for app in [&a, &b] {
            let response = app
                .send(
                    Method::POST,
                    &format!("/parties/{party}/paths"),
                    Some(host),
                    Some(json!({"reports": [{"peer_id": format!("g{i}"), "outcome": "direct"}]})),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    let (party, host, _) = &parties[2];
    for app in [&a, &b] {
        let paths: lanrage_proto::PathsResponse = app
            .expect(
                Method::GET,
                &format!("/parties/{party}/paths"),
                Some(host),
                None,
                StatusCode::OK,
            )
            .await;
        let pair = &paths.pairs[0];
        assert_eq!(
            (
                pair.plan.as_str(),
                serde_json::to_value(pair.basis).unwrap()
            ),
            ("direct", json!("statistics"))
        );
    }
}
