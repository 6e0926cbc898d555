//! The cleanup loop: stale peers, orphaned parties, expired tokens, silent
//! relays. Passes are driven with a clock moved forward, plus one real loop.

use std::time::Duration;

use lanrage_proto::{PeerId, Timestamp};
use lanrage_server::service::token_hash;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Route::ReadParty, spawn_app, spawn_app_with};

/// A relay as its operator registers it.
fn relay_r1() -> Value {
    json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1})
}

#[tokio::test]
async fn silent_guests_are_removed_and_the_party_goes_on() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    app.join(&party, "bob").await;
    let later = Timestamp::now().plus_secs(61);
    // Alice keeps beating; Bob went quiet.
    app.touch(&created.party_id, "alice", later).await;

    let report = app.cleanup_at(later).await;

    assert_eq!((report.stale_peers, report.ended_parties), (1, 0));
    let read = app.read_party(&party, &alice).await;
    assert_eq!(read.party.peers.len(), 1);
    assert_eq!(read.seq, 3, "the removal is an event");
}

#[tokio::test]
async fn a_silent_host_ends_the_party() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (_, created) = app.create_party("alice").await;
    let (bob, _) = app.join(created.party_id.as_str(), "bob").await;

    let report = app.cleanup_at(Timestamp::now().plus_secs(61)).await;

    assert!(report.ended_parties == 1);
    assert_eq!(app.party_count().await, 0);
    let party = created.party_id.as_str();
    app.refused(ReadParty(party), &bob, StatusCode::NOT_FOUND)
        .await;
}

#[tokio::test]
async fn active_peers_survive_cleanup() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    app.create_party("alice").await;

    let report = app.cleanup_at(Timestamp::now().plus_secs(59)).await;

    assert_eq!(report.stale_peers, 0);
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn expired_tokens_are_deleted() {
    let app = spawn_app_with(|c| c.token_ttl_secs = 60).await;
    let token = app.register("alice").await;

    let report = app.cleanup_at(Timestamp::now().plus_secs(61)).await;

    assert_eq!(report.swept.tokens, 1);
    assert!(
        app.service
            .store()
            .token(&token_hash(&token))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn silent_relays_are_removed() {
    let app = spawn_app_with(|c| c.relay_timeout_secs = 120).await;
    app.register_relay(relay_r1()).await;

    let early = app.cleanup_at(Timestamp::now().plus_secs(100)).await;
    let late = app.cleanup_at(Timestamp::now().plus_secs(121)).await;

    assert_eq!((early.swept.relays, late.swept.relays), (0, 1));
}

#[tokio::test]
async fn the_loop_runs_on_its_interval() {
    let app = spawn_app_with(|c| {
        c.peer_timeout_secs = 1;
        c.cleanup_interval_secs = 1;
        c.heartbeat_flush_ms = Some(100);
    })
    .await;
    app.create_party("alice").await;

    // Real time: the peer goes stale after 1 s, the loop runs every 1 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.party_count().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "cleanup never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_restart_does_not_count_its_downtime_against_peers() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (_, created) = app.create_party("alice").await;
    // Alice was last heard of an hour ago: the server was down since.
    let mut alice = created.party.peers[&created.party.host_id].clone();
    alice.last_seen = Timestamp::now().plus_secs(-3600);
    app.store_member(&created.party_id, &alice).await;
    let app = app.restart(|c| c.peer_timeout_secs = 60).await;

    let soon = app.cleanup_at(Timestamp::now().plus_secs(30)).await;
    assert_eq!(soon.stale_peers, 0, "she gets one timeout from the restart");
    let later = app.cleanup_at(Timestamp::now().plus_secs(61)).await;
    assert_eq!(later.stale_peers, 1);
}

#[tokio::test]
async fn a_party_without_its_host_is_ended() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    app.join(created.party_id.as_str(), "bob").await;
    let mut tx = app.service.store().begin().await.unwrap();
    tx.delete_member(&created.party_id, &PeerId::parse("alice").unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let report = app.cleanup_at(Timestamp::now()).await;

    assert_eq!(report.ended_parties, 1);
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn reposting_keeps_a_relay_alive() {
    let app = spawn_app_with(|c| c.relay_timeout_secs = 120).await;
    app.register_relay(relay_r1()).await;
    let first = app.service.store().relays(None).await.unwrap().remove(0);
    let later = Timestamp::now().plus_secs(100);

    // The relay re-posts (its heartbeat) 100 s later; then 100 s more pass.
    app.service
        .store()
        .upsert_relay(&first, later)
        .await
        .unwrap();
    let report = app.cleanup_at(later.plus_secs(100)).await;

    assert_eq!(report.swept.relays, 0);
    let relays = app.service.store().relays(None).await.unwrap();
    assert_eq!(
        relays[0].registered_at, first.registered_at,
        "registered_at is kept"
    );
    let gone = app.cleanup_at(later.plus_secs(121)).await;
    assert_eq!(gone.swept.relays, 1);
}

#[tokio::test]
async fn a_restart_while_cleanup_was_running_forgives_nothing() {
    let app = spawn_app_with(|c| c.peer_timeout_secs = 60).await;
    let (_, created) = app.create_party("alice").await;
    let (_, _) = app.join(created.party_id.as_str(), "bob").await;
    let mut bob = app.stored_members(&created.party_id).await[1].peer.clone();
    bob.last_seen = Timestamp::now().plus_secs(-3600);
    app.store_member(&created.party_id, &bob).await;
    // Another instance (or this one, just before) ran cleanup a moment ago:
    // the service was not down.
    assert!(
        app.service
            .store()
            .claim_cleanup(Timestamp::now(), 60)
            .await
            .unwrap()
    );

    let app = app.restart(|c| c.peer_timeout_secs = 60).await;
    let report = app.cleanup_at(Timestamp::now()).await;

    assert_eq!(report.stale_peers, 1, "bob's silence still counts");
}
