//! `GET /`, `/auth/register` and bearer authentication.

use lanrage_proto::{PeerId, ServiceInfo, Timestamp, TokenResponse};
use lanrage_server::{config::Secret, service::token_hash};
use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, spawn_app_behind_proxy, spawn_app_with, spawn_rate_limited_app};

#[tokio::test]
async fn root_reports_service_and_counts() {
    let app = spawn_app().await;
    app.create_party("alice").await;

    let info: ServiceInfo = app
        .expect(Method::GET, "/", None, None, StatusCode::OK)
        .await;

    assert_eq!(info.service, "LANrage Control Plane");
    assert_eq!(info.status, "ok");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!((info.parties, info.relays), (1, 0));
    assert_eq!(
        info.features,
        [
            "key-identity",
            "invites",
            "host-migration",
            "relay-choice",
            "path-plan"
        ]
    );
}

#[tokio::test]
async fn register_issues_a_256_bit_token_for_a_day() {
    let app = spawn_app().await;
    let before = Timestamp::now();

    let response: TokenResponse = app
        .expect(
            Method::POST,
            "/auth/register?peer_id=peer_0123456789ab",
            None,
            None,
            StatusCode::OK,
        )
        .await;

    assert_eq!(response.peer_id.as_str(), "peer_0123456789ab");
    // 32 bytes in unpadded URL-safe base64.
    assert_eq!(response.token.len(), 43);
    assert!(
        response
            .token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    let lifetime = response.expires_at.as_micros() - before.as_micros();
    assert!(
        (86_399_000_000..=86_401_000_000).contains(&lifetime),
        "lifetime {lifetime}us"
    );
    let second = app.register("peer_0123456789ab").await;
    assert_ne!(second, response.token);
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let store = app.service.store();

    assert!(store.token(&token).await.unwrap().is_none());
    let record = store.token(&token_hash(&token)).await.unwrap().unwrap();
    assert_eq!(record.peer_id.as_str(), "alice");
}

#[tokio::test]
async fn register_refuses_missing_or_invalid_peer_ids() {
    let app = spawn_app().await;
    for path in [
        "/auth/register",
        "/auth/register?peer_id=",
        "/auth/register?peer_id=has%20space",
        "/auth/register?peer_id=%C3%A9",
        &format!("/auth/register?peer_id={}", "x".repeat(65)),
    ] {
        app.expect_error(
            Method::POST,
            path,
            None,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
}

#[tokio::test]
async fn registration_key_is_required_when_configured() {
    let app =
        spawn_app_with(|c| c.registration_key = Some("pre-auth".parse::<Secret>().unwrap())).await;
    let url = app.url("/auth/register?peer_id=alice");

    for (key, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("guess"), StatusCode::FORBIDDEN),
        (Some("pre-auth"), StatusCode::OK),
    ] {
        let mut request = app.client.post(&url);
        if let Some(key) = key {
            request = request.header("X-Registration-Key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "key {key:?}");
    }
}

#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("alice").await;
    let routes = [
        (Method::POST, "/parties".to_owned()),
        (Method::GET, format!("/parties/{party}")),
        (Method::POST, format!("/parties/{party}/join")),
        (Method::GET, format!("/parties/{party}/peers")),
        (Method::GET, format!("/parties/{party}/peers/alice")),
        (Method::DELETE, format!("/parties/{party}/peers/alice")),
        (
            Method::POST,
            format!("/parties/{party}/peers/alice/heartbeat"),
        ),
        (Method::POST, format!("/parties/{party}/signals")),
        (Method::GET, format!("/parties/{party}/signals")),
        (Method::GET, "/relays".to_owned()),
        (Method::GET, "/relays/eu".to_owned()),
    ];
    for (method, path) in routes {
        for token in [None, Some("not-a-token"), Some("")] {
            let response = app.send(method.clone(), &path, token, None).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    // Nothing was changed by any of them.
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, created) = app.create_party("alice").await;
    let expired = "expired-token-of-alice";
    let past = Timestamp::now().plus_secs(-10);
    let stored = app
        .service
        .store()
        .insert_token(
            &token_hash(expired),
            &PeerId::parse("alice").unwrap(),
            past.plus_secs(-60),
            past,
        )
        .await
        .unwrap();
    assert!(stored);

    let detail = app
        .expect_error(
            Method::GET,
            &format!("/parties/{}", created.party_id),
            Some(expired),
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert!(detail.contains("expired"), "{detail}");
}

#[tokio::test]
async fn a_short_token_ttl_is_honoured() {
    let app = spawn_app_with(|c| c.token_ttl_secs = 60).await;
    let response: TokenResponse = app
        .expect(
            Method::POST,
            "/auth/register?peer_id=alice",
            None,
            None,
            StatusCode::OK,
        )
        .await;
    let lifetime = response.expires_at.as_micros() - Timestamp::now().as_micros();
    assert!(
        (58_000_000..=60_000_000).contains(&lifetime),
        "lifetime {lifetime}us"
    );
}

#[tokio::test]
async fn registration_floods_are_rate_limited_and_recover() {
    let app = spawn_rate_limited_app(|_| {}).await;
    let url = app.url("/auth/register?peer_id=flood");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(app.client.post(&url).send().await.unwrap());
    }

    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS);
    let limited = limited.expect("30 registrations at once were all accepted");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after));
    let error: lanrage_proto::ErrorBody = limited.json().await.unwrap();
    assert!(error.detail.contains("rate limit"));
    // Reads have their own, larger quota.
    let info = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    // The quota refills (5 per second).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        app.client.post(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_fresh_token_works_at_once_every_time() {
    // Reads and writes use different SQLite connections: a read must see
    // every write that completed before it.
    let app = spawn_app().await;
    for i in 0..50 {
        let token = app.register(&format!("peer{i}")).await;
        let response = app.send(Method::GET, "/relays", Some(&token), None).await;
        assert_eq!(response.status(), StatusCode::OK, "token {i}");
    }
}

#[tokio::test]
async fn each_token_has_its_own_quota() {
    let app = spawn_rate_limited_app(|c| c.rate_limit_token_per_sec = 5).await;
    let token = app.register("alice").await;
    let other = app.register("bob").await;

    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(
            app.send(Method::GET, "/relays", Some(&token), None)
                .await
                .status(),
        );
    }

    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        app.send(Method::GET, "/relays", Some(&other), None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited() {
    let app = spawn_app_behind_proxy().await;
    let mut first = Vec::new();
    for n in 0..6 {
        let response = app.register_from(&format!("p{n}"), "203.0.113.1").await;
        first.push(response.status());
    }
    let second = app.register_from("p99", "203.0.113.2").await.status();

    assert!(first.contains(&StatusCode::TOO_MANY_REQUESTS), "{first:?}");
    assert_eq!(
        second,
        StatusCode::OK,
        "another client behind the same proxy has its own quota"
    );
}
