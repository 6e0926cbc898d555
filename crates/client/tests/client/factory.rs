//! The factory: server configured and up gives the remote plane, nothing
//! configured or nothing listening gives the local plane.

use lanrage_client::{
    Backoff, ClientError, ControlPlane, LocalReason, SelectedPlane, Settings, create_control_plane,
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
        server.http.retry = Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 2);
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

#[tokio::test]
async fn a_server_that_never_answers_gives_the_local_plane_after_the_first_contact_timeout() {
    // Accepts connections, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let settings = Settings::new(Some(format!("http://{address}")), peer_id("alice"))
        .with_first_contact_timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();

    let selected = create_control_plane(settings).await.unwrap();

    let SelectedPlane::Local {
        reason: LocalReason::ServerUnreachable(error),
        ..
    } = selected
    else {
        panic!("expected the local plane, got {selected:?}");
    };
    assert!(
        matches!(error, ClientError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(error.to_string().contains("first contact"), "{error}");
    // One attempt, not the request timeout times the retries.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_first_contact_is_short_by_default() {
    let settings = Settings::new(Some("http://127.0.0.1:8667".into()), peer_id("alice"));
    let server = settings.server.unwrap();
    assert!(server.first_contact_timeout <= Duration::from_secs(5));
    assert!(server.first_contact_timeout < server.http.request_timeout);
}

#[tokio::test]
async fn the_parts_of_a_remote_plane_move_into_tasks() {
    let server = spawn_server().await;
    let selected = create_control_plane(Settings::new(Some(server.url()), peer_id("alice")))
        .await
        .unwrap();

    let (plane, events) = selected.into_parts();
    let mut events = events.expect("the remote plane has events");
    let creator = tokio::spawn({
        let plane = plane.clone();
        async move { create_party(plane.as_ref()).await }
    });
    let created = creator.await.unwrap();
    crate::helpers::join_as(&server.url(), "bob", &created.party.party_id).await;

    assert_eq!(
        crate::helpers::peer_joined(&mut events, "bob").await,
        created.seq + 1
    );
    plane.close().await.unwrap();
}
