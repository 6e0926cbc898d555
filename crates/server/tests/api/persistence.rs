//! State survives a restart; the database file and its folder are created.

use lanrage_proto::{PartyResponse, RelaysResponse};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{RELAY_KEY, spawn_app};

#[tokio::test]
async fn parties_tokens_and_relays_survive_a_restart() {
    let app = spawn_app().await;
    assert!(
        crate::BACKEND != crate::helpers::Backend::Sqlite || app.db_path.exists(),
        "database file created with its folder"
    );
    let (alice, created) = app.create_party("alice").await;
    let party = created.party_id.to_string();
    app.join(&party, "bob").await;
    let relay = json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1, "region": "eu"});
    app.expect::<Value>(
        Method::POST,
        "/relays",
        Some(RELAY_KEY),
        Some(relay),
        StatusCode::OK,
    )
    .await;
    let before: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;

    let app = app.restart(|_| {}).await;

    let mut after: PartyResponse = app
        .expect(
            Method::GET,
            &format!("/parties/{party}"),
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
    // The downtime is not held against the members: last_seen moved to the restart.
    for (id, peer) in &mut after.party.peers {
        assert!(peer.last_seen >= before.party.peers[id].last_seen);
        peer.last_seen = before.party.peers[id].last_seen;
    }
    assert_eq!(after, before);
    let relays: RelaysResponse = app
        .expect(
            Method::GET,
            "/relays/eu",
            Some(&alice),
            None,
            StatusCode::OK,
        )
        .await;
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
