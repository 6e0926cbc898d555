//! Ending tokens early: `POST /auth/logout`, the operator's
//! `POST /admin/peers/{peer_id}/revoke` and `DELETE /admin/peers/{peer_id}/ban`,
//! and key rotation (`POST /auth/rotate`).

use lanrage_identity::{Purpose, derived_peer_id};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{
    helpers::{TestApp, create_body, peer_info, spawn_app, spawn_app_with},
    identity::{KeyPair, KeyToken, answer},
    socket::Socket,
};

pub const ADMIN_KEY: &str = "admin-secret";

async fn admin_app() -> TestApp {
    spawn_app_with(|c| c.admin_key = Some(ADMIN_KEY.parse().unwrap())).await
}

impl TestApp {
    pub async fn logout(&self, token: &str) -> reqwest::Response {
        self.send(Method::POST, "/auth/logout", Some(token), None)
            .await
    }

    /// A route that needs a valid token: 200 or 401 tells whether it is.
    pub async fn token_works(&self, token: &str) -> bool {
        let status = self
            .send(Method::GET, "/relays", Some(token), None)
            .await
            .status();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{status}"
        );
        status == StatusCode::OK
    }

    async fn revoke(&self, peer: &str, body: Option<Value>) -> Value {
        self.expect(
            Method::POST,
            &format!("/admin/peers/{peer}/revoke"),
            Some(ADMIN_KEY),
            body,
            StatusCode::OK,
        )
        .await
    }

    async fn rotate(&self, token: &str, body: Value) -> reqwest::Response {
        self.send(Method::POST, "/auth/rotate", Some(token), Some(body))
            .await
    }

    /// Rotates the peer holding `token` to `pair`'s key.
    async fn rotate_to(&self, token: &str, pair: &KeyPair) -> reqwest::Response {
        let challenge = self.challenge(pair.public.as_str()).await;
        let proof = pair.proof_for(&challenge, Purpose::Rotate);
        self.rotate(token, answer(&challenge, pair.public.as_str(), &proof))
            .await
    }

    /// Creates a party hosted by a key-bound peer, announcing its key.
    async fn key_host(&self, token: &KeyToken, pair: &KeyPair) -> String {
        let mut host = peer_info(&token.peer_id);
        host["public_key"] = json!(pair.public.as_str());
        let created: Value = self
            .expect(
                Method::POST,
                "/parties",
                Some(&token.token),
                Some(create_body("keys", host)),
                StatusCode::OK,
            )
            .await;
        created["party_id"].as_str().unwrap().to_owned()
    }
}

/// Waits for the server to close `socket` because its token was revoked.
pub async fn expect_revoked_close(socket: &mut Socket) {
    let frame = socket.expect_close().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::from(4401), "{frame:?}");
    assert!(frame.reason.contains("revoked"), "{frame:?}");
}

#[tokio::test]
async fn logout_revokes_that_token_at_once_and_closes_its_socket() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let other = app.register("alice").await;
    let mut socket = app.ws_as("alice", &token).await;
    assert!(app.token_works(&token).await, "and now it is cached");

    let response = app.logout(&token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "revoked"}));

    assert!(!app.token_works(&token).await, "refused at once");
    assert!(
        app.token_works(&other).await,
        "the peer's other token stays"
    );
    let error = socket.expect("error").await;
    assert!(error["message"].as_str().unwrap().contains("revoked"));
    expect_revoked_close(&mut socket).await;
    // A revoked token logs out nothing, and no socket accepts it.
    assert_eq!(app.logout(&token).await.status(), StatusCode::UNAUTHORIZED);
    let mut again = app.ws().await;
    again
        .send(json!({"type": "auth", "peer_id": "alice", "token": token}))
        .await;
    socket_refused(&mut again).await;
}

async fn socket_refused(socket: &mut Socket) {
    let error = socket.expect("error").await;
    assert!(!error["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn logout_without_a_valid_token_is_401() {
    let app = spawn_app().await;
    let missing = app
        .expect_error(
            Method::POST,
            "/auth/logout",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert!(missing.contains("Bearer"), "{missing}");
    assert_eq!(app.logout("no-such-token").await.status(), 401);
}

#[tokio::test]
async fn admin_routes_need_the_configured_admin_key() {
    let unset = spawn_app().await;
    let detail = unset
        .expect_error(
            Method::POST,
            "/admin/peers/alice/revoke",
            Some(ADMIN_KEY),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(detail.contains("LANRAGE_ADMIN_KEY"), "{detail}");

    let app = admin_app().await;
    let peer_token = app.register("alice").await;
    for (path, method) in [
        ("/admin/peers/alice/revoke", Method::POST),
        ("/admin/peers/alice/ban", Method::DELETE),
    ] {
        for key in [peer_token.as_str(), "wrong-key"] {
            app.expect_error(method.clone(), path, Some(key), None, StatusCode::FORBIDDEN)
                .await;
        }
        app.expect_error(method, path, None, None, StatusCode::UNAUTHORIZED)
            .await;
    }
    assert!(app.token_works(&peer_token).await, "nothing was revoked");
}

#[tokio::test]
async fn admin_revoke_ends_every_token_takes_the_peer_out_and_bans_on_request() {
    let app = admin_app().await;
    let (host, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;
    let bob_again = app.register("bob").await;
    let mut bob_socket = app.ws_as("bob", &bob).await;
    let mut host_socket = app.ws_as("alice", &host).await;

    let answer = app.revoke("bob", Some(json!({"ban": true}))).await;

    assert_eq!(
        answer,
        json!({"status": "revoked", "tokens": 2, "banned": true})
    );
    assert!(!app.token_works(&bob).await);
    assert!(!app.token_works(&bob_again).await);
    expect_revoked_close(&mut bob_socket).await;
    let left = host_socket.expect("peer_left").await;
    assert_eq!(left["peer_id"], "bob");
    assert_eq!(app.read_party(&party, &host).await.party.peers.len(), 1);
    let banned = app
        .expect_error(
            Method::POST,
            "/auth/register?peer_id=bob",
            None,
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(banned.contains("banned"), "{banned}");

    let lifted: Value = app
        .expect(
            Method::DELETE,
            "/admin/peers/bob/ban",
            Some(ADMIN_KEY),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(lifted, json!({"status": "unbanned"}));
    app.register("bob").await;
    app.expect_error(
        Method::DELETE,
        "/admin/peers/bob/ban",
        Some(ADMIN_KEY),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn admin_revoke_of_a_host_ends_its_party_and_needs_no_body() {
    let app = admin_app().await;
    let (_, party) = app.host_party("alice").await;
    let (bob, _) = app.join(&party, "bob").await;
    let mut bob_socket = app.ws_as("bob", &bob).await;

    let answer = app.revoke("alice", None).await;

    assert_eq!(
        answer,
        json!({"status": "revoked", "tokens": 1, "banned": false})
    );
    bob_socket.expect("party_ended").await;
    assert_eq!(app.party_count().await, 0);
    app.register("alice").await;
    // A peer with nothing to revoke: nothing revoked, and still 200.
    let none = app.revoke("nobody", Some(json!({}))).await;
    assert_eq!(none["tokens"], 0);
    // JSON null, as the document's optional body allows, is no body.
    let null = app.revoke("alice", Some(Value::Null)).await;
    assert_eq!(
        (null["tokens"].clone(), null["banned"].clone()),
        (json!(1), json!(false))
    );
}

#[tokio::test]
async fn admin_revoke_refuses_bad_input_and_changes_nothing() {
    let app = admin_app().await;
    let token = app.register("alice").await;
    for body in [json!({"ban": "yes"}), json!([true]), json!({"ban": null})] {
        app.expect_error(
            Method::POST,
            "/admin/peers/alice/revoke",
            Some(ADMIN_KEY),
            Some(body),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let path = format!("/admin/peers/{}/revoke", "x".repeat(300));
    app.expect_error(
        Method::POST,
        &path,
        Some(ADMIN_KEY),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(app.token_works(&token).await);
}

#[tokio::test]
async fn a_banned_key_gets_no_challenge_and_no_token() {
    let app = admin_app().await;
    let pair = KeyPair::new(21);
    let token = app.register_key(&pair).await;
    let pending = app.challenge(pair.public.as_str()).await;

    app.revoke(&token.peer_id, Some(json!({"ban": true}))).await;

    assert!(!app.token_works(&token.token).await);
    let key = pair.public.as_str();
    app.expect_error(
        Method::POST,
        "/auth/challenge",
        None,
        Some(json!({"public_key": key})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let proof = pair.proof(&pending);
    app.expect_error(
        Method::POST,
        "/auth/register/key",
        None,
        Some(answer(&pending, key, &proof)),
        StatusCode::FORBIDDEN,
    )
    .await;
    let path = format!("/admin/peers/{}/ban", token.peer_id);
    app.expect::<Value>(Method::DELETE, &path, Some(ADMIN_KEY), None, StatusCode::OK)
        .await;
    app.register_key(&pair).await;
}

#[tokio::test]
async fn rotation_moves_the_binding_revokes_the_rest_and_tells_the_party() {
    let app = spawn_app().await;
    let old = KeyPair::new(31);
    let new = KeyPair::new(32);
    let first = app.register_key(&old).await;
    let second = app.register_key(&old).await;
    let party = app.key_host(&first, &old).await;
    let (bob, _) = app.join(&party, "bob").await;
    let mut bob_socket = app.ws_as("bob", &bob).await;
    let mut old_socket = app.ws_as(&first.peer_id, &second.token).await;

    let response = app.rotate_to(&first.token, &new).await;

    assert_eq!(response.status(), StatusCode::OK);
    let rotated: KeyToken = response.json().await.unwrap();
    assert_eq!(rotated.peer_id, first.peer_id);
    assert!(rotated.key_bound);
    assert!(!app.token_works(&first.token).await, "the asking token too");
    assert!(!app.token_works(&second.token).await);
    assert!(app.token_works(&rotated.token).await);
    expect_revoked_close(&mut old_socket).await;
    let update = bob_socket.expect("party_update").await;
    let host = &update["party"]["peers"][&first.peer_id];
    assert_eq!(host["public_key"], new.public.as_str(), "{update}");
    let read = app.read_party(&party, &bob).await;
    let member = &read.party.peers[&lanrage_proto::PeerId::parse(&first.peer_id).unwrap()];
    assert_eq!(member.public_key.as_str(), new.public.as_str());

    // The new key renews the same peer; the retired one registers nobody.
    let renewed = app.register_key(&new).await;
    assert_eq!(renewed.peer_id, first.peer_id);
    assert_ne!(renewed.peer_id, derived_peer_id(&new.public).as_str());
    let challenge = app.challenge(old.public.as_str()).await;
    let proof = old.proof(&challenge);
    app.expect_error(
        Method::POST,
        "/auth/register/key",
        None,
        Some(answer(&challenge, old.public.as_str(), &proof)),
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn rotation_refusals_change_nothing() {
    let app = spawn_app().await;
    let own = KeyPair::new(41);
    let taken = KeyPair::new(42);
    let fresh = KeyPair::new(43);
    let peer = app.register_key(&own).await;
    app.register_key(&taken).await;
    let legacy = app.register("carol").await;

    // A peer registered by name alone has no key to rotate.
    let refused = app.rotate_to(&legacy, &fresh).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // A key bound to another peer.
    assert_eq!(
        app.rotate_to(&peer.token, &taken).await.status(),
        StatusCode::CONFLICT
    );
    // A proof made for registration, not rotation: the generic 401.
    let challenge = app.challenge(fresh.public.as_str()).await;
    let wrong_purpose = fresh.proof(&challenge);
    let failed = app
        .rotate(
            &peer.token,
            answer(&challenge, fresh.public.as_str(), &wrong_purpose),
        )
        .await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    // A malformed key, and no token at all.
    let challenge = app.challenge(fresh.public.as_str()).await;
    let bad = app
        .rotate(&peer.token, answer(&challenge, "not-a-key", "proof"))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = app
        .send(
            Method::POST,
            "/auth/rotate",
            None,
            Some(answer(&challenge, fresh.public.as_str(), "proof")),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    assert!(app.token_works(&peer.token).await, "still valid");
    assert!(app.token_works(&legacy).await);
    assert_eq!(app.register_key(&own).await.peer_id, peer.peer_id);
    // The fresh key was never bound: it registers its own derived peer.
    let own_peer = app.register_key(&fresh).await;
    assert_eq!(own_peer.peer_id, derived_peer_id(&fresh.public).as_str());
}
