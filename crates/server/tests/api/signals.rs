//! Signals over HTTP.

use lanrage_proto::{StatusResponse, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

struct Party {
    id: String,
    alice: String,
    bob: String,
}

async fn party_of_two(app: &TestApp) -> Party {
    let (alice, created) = app.create_party("alice").await;
    let id = created.party_id.to_string();
    let (bob, _) = app.join(&id, "bob").await;
    Party { id, alice, bob }
}

async fn send(
    app: &TestApp,
    party: &str,
    token: &str,
    to: &str,
    data: Value,
    status: StatusCode,
) -> reqwest::Response {
    let response = app
        .send(
            Method::POST,
            &format!("/parties/{party}/signals"),
            Some(token),
            Some(json!({"to_peer_id": to, "signal_data": data})),
        )
        .await;
    assert_eq!(response.status(), status);
    response
}

#[tokio::test]
async fn signals_are_queued_then_drained_in_order() {
    let app = spawn_app().await;
    let party = party_of_two(&app).await;
    let before = Timestamp::now();

    for n in 0..3 {
        let response = send(
            &app,
            &party.id,
            &party.alice,
            "bob",
            json!({"type": "candidate", "n": n}),
            StatusCode::ACCEPTED,
        )
        .await;
        let body: StatusResponse = response.json().await.unwrap();
        assert_eq!(body.status, "queued");
    }
    let received = app.drain_signals(&party.id, &party.bob).await;

    assert_eq!(received.signals.len(), 3);
    for (n, signal) in received.signals.iter().enumerate() {
        assert_eq!(signal.party_id.as_str(), party.id);
        assert_eq!(signal.from_peer_id.as_str(), "alice");
        assert_eq!(signal.to_peer_id.as_str(), "bob");
        assert_eq!(signal.signal_data.as_map()["n"], json!(n));
        assert!(signal.sent_at >= before);
    }
    assert!(
        app.drain_signals(&party.id, &party.bob)
            .await
            .signals
            .is_empty(),
        "drained on read"
    );
    assert!(
        app.drain_signals(&party.id, &party.alice)
            .await
            .signals
            .is_empty(),
        "only the target's"
    );
}

#[tokio::test]
async fn only_members_signal_and_only_to_members() {
    let app = spawn_app().await;
    let party = party_of_two(&app).await;
    let mallory = app.register("mallory").await;

    send(
        &app,
        &party.id,
        &mallory,
        "bob",
        json!({}),
        StatusCode::FORBIDDEN,
    )
    .await;
    send(
        &app,
        &party.id,
        &party.alice,
        "mallory",
        json!({}),
        StatusCode::NOT_FOUND,
    )
    .await;
    send(
        &app,
        &party.id,
        &party.alice,
        "alice",
        json!({}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    send(
        &app,
        "0123456789abcdef0123456789abcdef",
        &party.alice,
        "bob",
        json!({}),
        StatusCode::NOT_FOUND,
    )
    .await;
    app.expect_error(
        Method::GET,
        &format!("/parties/{}/signals", party.id),
        Some(&mallory),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;

    assert!(
        app.drain_signals(&party.id, &party.bob)
            .await
            .signals
            .is_empty()
    );
}

#[tokio::test]
async fn signal_data_must_be_a_small_object() {
    let app = spawn_app().await;
    let party = party_of_two(&app).await;

    for data in [
        json!([1, 2]),
        json!("offer"),
        json!(null),
        json!({"sdp": "x".repeat(16 * 1024)}),
    ] {
        send(
            &app,
            &party.id,
            &party.alice,
            "bob",
            data,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({"sdp": "é".repeat(16_000)}),
        StatusCode::ACCEPTED,
    )
    .await;

    assert_eq!(
        app.drain_signals(&party.id, &party.bob).await.signals.len(),
        1
    );
}

#[tokio::test]
async fn a_full_queue_answers_429() {
    let app = spawn_app_with(|c| c.signal_queue_max = 3).await;
    let party = party_of_two(&app).await;

    for _ in 0..3 {
        send(
            &app,
            &party.id,
            &party.alice,
            "bob",
            json!({}),
            StatusCode::ACCEPTED,
        )
        .await;
    }
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({}),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    app.drain_signals(&party.id, &party.bob).await;
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({}),
        StatusCode::ACCEPTED,
    )
    .await;
}

#[tokio::test]
async fn expired_signals_are_never_delivered() {
    let app = spawn_app_with(|c| c.signal_ttl_secs = 30).await;
    let party = party_of_two(&app).await;
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({"type": "offer"}),
        StatusCode::ACCEPTED,
    )
    .await;

    let report = app
        .service
        .cleanup_once(Timestamp::now().plus_secs(31))
        .await
        .unwrap();

    assert_eq!(report.swept.signals, 1);
    assert!(
        app.drain_signals(&party.id, &party.bob)
            .await
            .signals
            .is_empty()
    );
}

#[tokio::test]
async fn signals_read_on_a_socket_are_not_counted_as_expired() {
    let app = spawn_app_with(|c| c.signal_ttl_secs = 30).await;
    let party = party_of_two(&app).await;
    let mut socket = app.ws_as("bob", &party.bob).await;
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({"type": "offer"}),
        StatusCode::ACCEPTED,
    )
    .await;
    socket.expect("signal").await;
    // The socket's write is recorded in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.service.metrics().signals_delivered.get() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "never marked delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let report = app
        .service
        .cleanup_once(Timestamp::now().plus_secs(31))
        .await
        .unwrap();

    assert_eq!(
        (report.swept.signals, report.swept.delivered_signals),
        (0, 1)
    );
}

#[tokio::test]
async fn a_peer_leaving_drops_the_signals_waiting_for_it() {
    let app = spawn_app().await;
    let party = party_of_two(&app).await;
    send(
        &app,
        &party.id,
        &party.alice,
        "bob",
        json!({"type": "offer"}),
        StatusCode::ACCEPTED,
    )
    .await;
    app.expect::<StatusResponse>(
        Method::DELETE,
        &format!("/parties/{}/peers/bob", party.id),
        Some(&party.bob),
        None,
        StatusCode::OK,
    )
    .await;

    app.join_with(&party.id, "bob", &party.bob).await;

    assert!(
        app.drain_signals(&party.id, &party.bob)
            .await
            .signals
            .is_empty()
    );
}
