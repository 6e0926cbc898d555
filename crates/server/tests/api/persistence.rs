//! State survives a restart; the database file and its folder are created;
//! a stopped server writes no more.

use std::time::Duration;

use lanrage_proto::{PeerId, PeerInfo};
use lanrage_server::{service, store::StoreError};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{peer_info, spawn_app};

#[tokio::test]
async fn parties_tokens_and_relays_survive_a_restart() {
    let app = spawn_app().await;
    assert!(
        crate::BACKEND != crate::helpers::Backend::Sqlite || app.db_path.exists(),
        "database file created with its folder"
    );
    let (alice, party) = app.host_party("alice").await;
    app.join(&party, "bob").await;
    let relay = json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1, "region": "eu"});
    app.register_relay(relay).await;
    let before = app.read_party(&party, &alice).await;

    let app = app.restart(|_| {}).await;

    let mut after = app.read_party(&party, &alice).await;
    // The downtime is not held against the members: last_seen moved to the restart.
    for (id, peer) in &mut after.party.peers {
        assert!(peer.last_seen >= before.party.peers[id].last_seen);
        peer.last_seen = before.party.peers[id].last_seen;
    }
    assert_eq!(after, before);
    let relays = app.list_relays(Some("eu"), &alice).await;
    assert_eq!(relays.relays.len(), 1);
    let (_, carol) = app.join(&party, "carol").await;
    assert_eq!(carol.seq, before.seq + 1, "event numbers continue");
}

#[tokio::test]
async fn health_reports_a_reachable_database() {
    let app = spawn_app().await;

    let health: lanrage_proto::StatusResponse = app
        .expect(Method::GET, "/health", None, None, StatusCode::OK)
        .await;

    assert_eq!(health.status, "ok");
}

/// The server owns the task that writes (SQLite's group-commit writer):
/// once the server has stopped, its service refuses a write at once
/// instead of leaving the caller waiting.
#[tokio::test]
async fn a_stopped_server_refuses_writes_at_once() {
    let mut app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let service = app.service.clone();

    tokio::time::timeout(Duration::from_secs(15), app.stop_server())
        .await
        .expect("the server stops");
    let bob: PeerInfo = serde_json::from_value(peer_info("bob")).unwrap();
    let caller = PeerId::parse("bob").unwrap();
    let join = service.join_party(&caller, &created.party_id, bob);
    let refused = tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("an answer, not a wait");

    assert!(
        matches!(
            refused,
            Err(service::Error::Store(StoreError::Unavailable(_)))
        ),
        "{refused:?}"
    );
}
