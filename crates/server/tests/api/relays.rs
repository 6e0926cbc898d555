//! Relay registration (operator key) and listing (any peer).

use lanrage_proto::{RelayStatusResponse, RelaysResponse};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    RELAY_KEY,
    Route::{DeregisterRelay, RegisterRelay},
    spawn_app, spawn_app_with,
};

fn relay(id: &str, region: &str) -> Value {
    json!({"relay_id": id, "public_ip": "198.51.100.7", "port": 51820, "region": region, "capacity": 50})
}

#[tokio::test]
async fn operators_register_and_peers_list_relays_in_order() {
    let app = spawn_app().await;
    for (id, region) in [("r2", "us"), ("r1", "us"), ("r3", "eu")] {
        let done = app.register_relay(relay(id, region)).await;
        assert_eq!(
            (done.status.as_str(), done.relay_id.as_str()),
            ("registered", id)
        );
    }
    let peer = app.register("alice").await;

    let all = app.list_relays(None, &peer).await;
    let us = app.list_relays(Some("us"), &peer).await;
    let none = app.list_relays(Some("antarctica"), &peer).await;

    let ids = |r: &RelaysResponse| {
        r.relays
            .iter()
            .map(|r| r.relay_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&all), ["r3", "r1", "r2"]);
    assert_eq!(ids(&us), ["r1", "r2"]);
    assert!(none.relays.is_empty());
    assert_eq!(all.relays[0].capacity, 50);
    assert_eq!(all.relays[0].public_ip.to_string(), "198.51.100.7");
}

#[tokio::test]
async fn region_and_capacity_have_defaults() {
    let app = spawn_app().await;
    app.register_relay(json!({"relay_id": "r1", "public_ip": "2001:db8::1", "port": 3478}))
        .await;
    let peer = app.register("alice").await;

    let listed = app.list_relays(Some("unknown"), &peer).await;

    assert_eq!(listed.relays.len(), 1);
    assert_eq!(listed.relays[0].capacity, 100);
}

#[tokio::test]
async fn posting_again_refreshes_a_relay() {
    let app = spawn_app().await;
    app.register_relay(relay("r1", "eu")).await;
    let mut moved = relay("r1", "us");
    moved["port"] = json!(4000);
    app.register_relay(moved).await;
    let peer = app.register("alice").await;

    let all = app.list_relays(None, &peer).await;

    assert_eq!(all.relays.len(), 1);
    assert_eq!(
        (all.relays[0].region.as_str(), all.relays[0].port),
        ("us", 4000)
    );
}

#[tokio::test]
async fn relay_routes_need_the_operator_key() {
    let app = spawn_app().await;
    let peer = app.register("alice").await;

    let r1 = relay("r1", "eu");
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(peer.as_str()), StatusCode::FORBIDDEN),
        (Some("wrong"), StatusCode::FORBIDDEN),
    ] {
        let body = Some(r1.clone());
        app.expect_error(Method::POST, "/relays", token, body, status)
            .await;
    }
    app.register_relay(r1).await;
    for (token, status) in [
        (Some(peer.as_str()), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        app.expect_error(Method::DELETE, "/relays/r1", token, None, status)
            .await;
    }

    let all = app.list_relays(None, &peer).await;
    assert_eq!(all.relays.len(), 1);
}

#[tokio::test]
async fn without_a_relay_key_registration_is_refused_naming_the_setting() {
    let app = spawn_app_with(|c| c.relay_key = None).await;

    let register = RegisterRelay(relay("r1", "eu"));
    let detail = app
        .refused(register, "anything", StatusCode::FORBIDDEN)
        .await;

    assert!(detail.contains("LANRAGE_RELAY_KEY"), "{detail}");
}

#[tokio::test]
async fn deregistering_removes_a_relay() {
    let app = spawn_app().await;
    app.register_relay(relay("r1", "eu")).await;

    let done: RelayStatusResponse = app.call(DeregisterRelay("r1"), RELAY_KEY).await;

    assert_eq!(
        (done.status.as_str(), done.relay_id.as_str()),
        ("deregistered", "r1")
    );
    for gone in ["r1", "bad%20id"] {
        app.refused(DeregisterRelay(gone), RELAY_KEY, StatusCode::NOT_FOUND)
            .await;
    }
}

#[tokio::test]
async fn invalid_relays_are_refused() {
    let app = spawn_app().await;
    for body in [
        json!({"relay_id": "r1", "public_ip": "not-an-ip", "port": 1}),
        json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 70000}),
        json!({"relay_id": "r 1", "public_ip": "198.51.100.1", "port": 1}),
        json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1, "capacity": -1}),
        json!({"relay_id": "r1", "public_ip": "198.51.100.1"}),
        json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1, "region": "a/b"}),
    ] {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        app.refused(RegisterRelay(body), RELAY_KEY, status).await;
    }
    let peer = app.register("alice").await;
    let all = app.list_relays(None, &peer).await;
    assert!(all.relays.is_empty());
}
