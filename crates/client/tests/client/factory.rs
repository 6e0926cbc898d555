//! The factory: server configured and up gives the remote plane, nothing
//! configured or nothing listening gives the local plane.

use lanrage_client::{
    Backoff, ControlPlane, LocalReason, SelectedPlane, Settings, create_control_plane,
};
use std::time::Duration;

use crate::helpers::{create_party, dead_address, details, name, peer_id, spawn_server};

#[tokio::test]
async fn a_reachable_server_gives_the_remote_plane() {
    let server = spawn_server().await;

    let selected = create_control_plane(Settings::new(Some(server.url()), peer_id("alice")))
        .await
        .unwrap();

    assert!(selected.is_remote());
    let plane = selected.control_plane();
    let created = create_party(plane).await;
    let SelectedPlane::Remote { plane, .. } = &selected else {
        unreachable!()
    };
    // It is the server's party, not a local one.
    let direct = crate::helpers::client(&server.url(), "alice");
    assert!(direct.get_party(&created.party.party_id).await.is_ok());
    plane.close().await.unwrap();
}

#[tokio::test]
async fn no_server_configured_gives_the_local_plane() {
    let selected = create_control_plane(Settings::new(None, peer_id("alice")))
        .await
        .unwrap();

    assert!(matches!(
        selected,
        SelectedPlane::Local {
            reason: LocalReason::NoServerConfigured,
            ..
        }
    ));
    let created = selected
        .control_plane()
        .register_party(name("Offline"), details("alice"))
        .await
        .unwrap();
    assert_eq!(created.party.peers.len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_gives_the_local_plane_with_the_reason() {
    let address = dead_address().await;
    let mut settings = Settings::new(Some(format!("http://{address}")), peer_id("alice"));
    if let Some(server) = settings.server.as_mut() {
        server.http.retry = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            max_attempts: 2,
        };
    }

    let selected = create_control_plane(settings).await.unwrap();

    let SelectedPlane::Local {
        plane,
        reason: LocalReason::ServerUnreachable(error),
    } = selected
    else {
        panic!("expected the local plane, got {selected:?}");
    };
    assert!(error.is_unreachable(), "{error:?}");
    plane
        .register_party(name("Offline"), details("alice"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_malformed_url_is_an_error_not_a_fallback() {
    let error = create_control_plane(Settings::new(
        Some("localhost:8667".into()),
        peer_id("alice"),
    ))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("http://"), "{error}");
}
