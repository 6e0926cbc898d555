//! Signals over HTTP.

use lanrage_proto::{Signal, StatusResponse, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PartyOfTwo, Route::DrainSignals, TestApp, spawn_app, spawn_app_with};

/// Alice's signal to Bob: the status it was answered with.
async fn alice_to_bob(app: &TestApp, party: &PartyOfTwo, data: Value) -> StatusCode {
    app.post_signal(&party.id, &party.alice, "bob", data)
        .await
        .status()
}

/// What waits for Bob, drained.
async fn drain_bob(app: &TestApp, party: &PartyOfTwo) -> Vec<Signal> {
    app.drain_signals(&party.id, &party.bob).await.signals
}

#[tokio::test]
async fn signals_are_queued_then_drained_in_order() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let before = Timestamp::now();

    for n in 0..3 {
        let candidate = json!({"type": "candidate", "n": n});
        let response = app
            .post_signal(&party.id, &party.alice, "bob", candidate)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: StatusResponse = response.json().await.unwrap();
        assert_eq!(body.status, "queued");
    }
    let received = drain_bob(&app, &party).await;

    assert_eq!(received.len(), 3);
    for (n, signal) in received.iter().enumerate() {
        assert_eq!(signal.party_id.as_str(), party.id);
        assert_eq!(signal.from_peer_id.as_str(), "alice");
        assert_eq!(signal.to_peer_id.as_str(), "bob");
        assert_eq!(signal.signal_data.as_map()["n"], json!(n));
        assert!(signal.sent_at >= before);
    }
    assert!(drain_bob(&app, &party).await.is_empty(), "drained on read");
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
    let party = app.party_of_two().await;
    let mallory = app.register("mallory").await;

    let unknown_party = "0123456789abcdef0123456789abcdef";
    for (party_id, from, to, status) in [
        (party.id.as_str(), &mallory, "bob", StatusCode::FORBIDDEN),
        (&party.id, &party.alice, "mallory", StatusCode::NOT_FOUND),
        (
            &party.id,
            &party.alice,
            "alice",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (unknown_party, &party.alice, "bob", StatusCode::NOT_FOUND),
    ] {
        let response = app.post_signal(party_id, from, to, json!({})).await;
        assert_eq!(response.status(), status, "{from} to {to} in {party_id}");
    }
    app.refused(DrainSignals(&party.id), &mallory, StatusCode::FORBIDDEN)
        .await;

    assert!(drain_bob(&app, &party).await.is_empty());
}

#[tokio::test]
async fn signal_data_must_be_a_small_object() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;

    for data in [
        json!([1, 2]),
        json!("offer"),
        json!(null),
        json!({"sdp": "x".repeat(16 * 1024)}),
    ] {
        let status = alice_to_bob(&app, &party, data).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let fits = json!({"sdp": "é".repeat(16_000)});
    assert_eq!(alice_to_bob(&app, &party, fits).await, StatusCode::ACCEPTED);

    assert_eq!(drain_bob(&app, &party).await.len(), 1);
}

#[tokio::test]
async fn a_full_queue_answers_429() {
    let app = spawn_app_with(|c| c.signal_queue_max = 3).await;
    let party = app.party_of_two().await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(alice_to_bob(&app, &party, json!({})).await);
    }
    drain_bob(&app, &party).await;
    statuses.push(alice_to_bob(&app, &party, json!({})).await);

    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::ACCEPTED
        ]
    );
}

#[tokio::test]
async fn expired_signals_are_never_delivered() {
    let app = spawn_app_with(|c| c.signal_ttl_secs = 30).await;
    let party = app.party_of_two().await;
    let offer = json!({"type": "offer"});
    assert_eq!(
        alice_to_bob(&app, &party, offer).await,
        StatusCode::ACCEPTED
    );

    let report = app.cleanup_at(Timestamp::now().plus_secs(31)).await;

    assert_eq!(report.swept.signals, 1);
    assert!(drain_bob(&app, &party).await.is_empty());
}

#[tokio::test]
async fn signals_read_on_a_socket_are_not_counted_as_expired() {
    let app = spawn_app_with(|c| c.signal_ttl_secs = 30).await;
    let party = app.party_of_two().await;
    let mut socket = app.ws_as("bob", &party.bob).await;
    let offer = json!({"type": "offer"});
    assert_eq!(
        alice_to_bob(&app, &party, offer).await,
        StatusCode::ACCEPTED
    );
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

    let report = app.cleanup_at(Timestamp::now().plus_secs(31)).await;

    assert_eq!(
        (report.swept.signals, report.swept.delivered_signals),
        (0, 1)
    );
}

#[tokio::test]
async fn a_peer_leaving_drops_the_signals_waiting_for_it() {
    let app = spawn_app().await;
    let party = app.party_of_two().await;
    let offer = json!({"type": "offer"});
    assert_eq!(
        alice_to_bob(&app, &party, offer).await,
        StatusCode::ACCEPTED
    );
    app.leave(&party.id, "bob", &party.bob).await;

    app.join_with(&party.id, "bob", &party.bob).await;

    assert!(drain_bob(&app, &party).await.is_empty());
}
