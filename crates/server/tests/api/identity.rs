//! Key-bound identity: `POST /auth/challenge`, `POST /auth/register/key`,
//! and what they change about v1 registration.

use lanrage_identity::{Purpose, WireGuardKey, derived_peer_id, prove, public_key_of};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::{TestApp, create_body, join_body, peer_info, spawn_app, spawn_app_with};

/// The exact shape of `POST /auth/register/key`'s answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyToken {
    pub token: String,
    pub peer_id: String,
    #[allow(dead_code)] // Checked by parsing.
    expires_at: String,
    pub key_bound: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub challenge_id: String,
    server_key: String,
    #[allow(dead_code)] // Checked by parsing.
    expires_at: String,
}

/// A WireGuard key pair made from `seed`.
pub struct KeyPair {
    private: [u8; 32],
    pub public: WireGuardKey,
}

impl KeyPair {
    pub fn new(seed: u8) -> Self {
        let private = [seed; 32];
        Self {
            private,
            public: public_key_of(&private),
        }
    }

    pub fn proof(&self, challenge: &Challenge) -> String {
        self.proof_for(challenge, Purpose::Register)
    }

    pub fn proof_for(&self, challenge: &Challenge, purpose: Purpose) -> String {
        let server_key = WireGuardKey::parse(&challenge.server_key).unwrap();
        prove(
            &self.private,
            &self.public,
            &server_key,
            purpose,
            &challenge.challenge_id,
        )
        .unwrap()
    }
}

impl TestApp {
    pub async fn challenge(&self, key: &str) -> Challenge {
        self.expect(
            Method::POST,
            "/auth/challenge",
            None,
            Some(json!({"public_key": key})),
            StatusCode::OK,
        )
        .await
    }

    async fn answer(&self, body: Value) -> reqwest::Response {
        self.send(Method::POST, "/auth/register/key", None, Some(body))
            .await
    }

    /// Proves `pair`'s key from challenge to token.
    pub async fn register_key(&self, pair: &KeyPair) -> KeyToken {
        let challenge = self.challenge(pair.public.as_str()).await;
        let body = json!({
            "challenge_id": challenge.challenge_id,
            "public_key": pair.public.as_str(),
            "proof": pair.proof(&challenge),
        });
        self.expect(
            Method::POST,
            "/auth/register/key",
            None,
            Some(body),
            StatusCode::OK,
        )
        .await
    }

    async fn refused_answer(&self, body: Value, status: StatusCode) -> String {
        self.expect_error(Method::POST, "/auth/register/key", None, Some(body), status)
            .await
    }
}

pub fn answer(challenge: &Challenge, key: &str, proof: &str) -> Value {
    json!({"challenge_id": challenge.challenge_id, "public_key": key, "proof": proof})
}

#[tokio::test]
async fn a_proven_key_gets_a_token_for_its_derived_peer_id_again_and_again() {
    let app = spawn_app().await;
    let pair = KeyPair::new(7);
    let first = app.register_key(&pair).await;
    assert!(first.key_bound);
    assert_eq!(first.peer_id, derived_peer_id(&pair.public).as_str());

    // Renewal needs nothing but the key; the earlier token stays valid.
    let second = app.register_key(&pair).await;
    assert_eq!(second.peer_id, first.peer_id);
    assert_ne!(second.token, first.token);
    for token in [&first.token, &second.token] {
        let mut host = peer_info(&first.peer_id);
        host["public_key"] = json!(pair.public.as_str());
        app.expect::<Value>(
            Method::POST,
            "/parties",
            Some(token),
            Some(create_body("key party", host)),
            StatusCode::OK,
        )
        .await;
    }
}

#[tokio::test]
async fn a_challenge_is_used_up_by_its_first_answer_whatever_it_is() {
    let app = spawn_app().await;
    let pair = KeyPair::new(1);
    let key = pair.public.as_str();

    let challenge = app.challenge(key).await;
    let good = pair.proof(&challenge);
    let wrong = KeyPair::new(2).proof(&challenge);
    let generic = app
        .refused_answer(answer(&challenge, key, &wrong), StatusCode::UNAUTHORIZED)
        .await;
    let again = app
        .refused_answer(answer(&challenge, key, &good), StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(again, generic, "one detail for every failed proof");

    // A good answer uses it up too.
    let challenge = app.challenge(key).await;
    let body = answer(&challenge, key, &pair.proof(&challenge));
    assert_eq!(app.answer(body.clone()).await.status(), StatusCode::OK);
    assert_eq!(
        app.refused_answer(body, StatusCode::UNAUTHORIZED).await,
        generic
    );

    // Unknown, and issued for another key (which uses it up as well).
    let unknown = json!({"challenge_id": "ch_nope", "public_key": key, "proof": good});
    assert_eq!(
        app.refused_answer(unknown, StatusCode::UNAUTHORIZED).await,
        generic
    );
    let other = KeyPair::new(3);
    let challenge = app.challenge(other.public.as_str()).await;
    let stolen = answer(&challenge, key, &pair.proof(&challenge));
    assert_eq!(
        app.refused_answer(stolen, StatusCode::UNAUTHORIZED).await,
        generic
    );
    let late = answer(&challenge, other.public.as_str(), &other.proof(&challenge));
    assert_eq!(
        app.refused_answer(late, StatusCode::UNAUTHORIZED).await,
        generic
    );
}

#[tokio::test]
async fn an_expired_challenge_proves_nothing() {
    let app = spawn_app_with(|c| c.challenge_ttl_secs = 1).await;
    let pair = KeyPair::new(4);
    let challenge = app.challenge(pair.public.as_str()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body = answer(&challenge, pair.public.as_str(), &pair.proof(&challenge));
    app.refused_answer(body, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn malformed_and_low_order_keys_are_422_and_touch_no_challenge() {
    let app = spawn_app().await;
    let canonical = KeyPair::new(5).public.to_string();
    // The same 32 bytes spelled with non-zero trailing bits.
    let mut sloppy = canonical.clone().into_bytes();
    sloppy[42] = if sloppy[42] == b'A' { b'B' } else { b'A' };
    let sloppy = String::from_utf8(sloppy).unwrap();
    for bad in [
        json!({"public_key": "not a key"}),
        json!({"public_key": canonical.trim_end_matches('=')}),
        json!({"public_key": 42}),
        json!({}),
    ] {
        app.expect_error(
            Method::POST,
            "/auth/challenge",
            None,
            Some(bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if WireGuardKey::parse(&sloppy).is_err() {
        app.expect_error(
            Method::POST,
            "/auth/challenge",
            None,
            Some(json!({"public_key": sloppy})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // The all-zero point and the point 1 have low order.
    let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let one = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for low in [zero, one] {
        let detail = app
            .expect_error(
                Method::POST,
                "/auth/challenge",
                None,
                Some(json!({"public_key": low})),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(detail.contains("low-order"), "{detail}");
    }

    // A malformed key is refused before the challenge is looked at: the
    // challenge still works afterwards.
    let pair = KeyPair::new(6);
    let challenge = app.challenge(pair.public.as_str()).await;
    let proof = pair.proof(&challenge);
    app.refused_answer(
        answer(&challenge, "not a key", &proof),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        app.answer(answer(&challenge, pair.public.as_str(), &proof))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn derived_ids_cannot_be_registered_the_v1_way() {
    let app = spawn_app().await;
    let pair = KeyPair::new(8);
    let derived = derived_peer_id(&pair.public);
    let detail = app
        .expect_error(
            Method::POST,
            &format!("/auth/register?peer_id={derived}"),
            None,
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(detail.contains("/auth/challenge"), "{detail}");
    // Other IDs still register as before.
    app.register("lr1-not-derived").await;
}

#[tokio::test]
async fn key_only_mode_refuses_v1_registration_and_keeps_key_registration() {
    let app = spawn_app_with(|c| {
        c.identity_mode = lanrage_server::config::IdentityMode::KeyOnly;
    })
    .await;
    let detail = app
        .expect_error(
            Method::POST,
            "/auth/register?peer_id=alice",
            None,
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(detail.contains("LANRAGE_IDENTITY_MODE"), "{detail}");
    assert!(app.register_key(&KeyPair::new(9)).await.key_bound);
}

#[tokio::test]
async fn the_registration_key_guards_key_registration_too() {
    let app = spawn_app_with(|c| c.registration_key = Some("letmein".parse().unwrap())).await;
    let pair = KeyPair::new(10);
    let body = json!({"public_key": pair.public.as_str()});
    app.expect_error(
        Method::POST,
        "/auth/challenge",
        None,
        Some(body.clone()),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let response = app
        .client
        .post(app.url("/auth/challenge"))
        .header("X-Registration-Key", "letmein")
        .json(&body)
        .send()
        .await
        .unwrap();
    let challenge: Challenge = crate::helpers::read(response, StatusCode::OK, "challenge").await;
    app.refused_answer(
        answer(&challenge, pair.public.as_str(), &pair.proof(&challenge)),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_unanswered_challenges() {
    let app = spawn_app().await;
    let pair = KeyPair::new(11);
    let mut held = 0;
    loop {
        let response = app
            .send(
                Method::POST,
                "/auth/challenge",
                None,
                Some(json!({"public_key": pair.public.as_str()})),
            )
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        held += 1;
        assert!(held <= 64, "challenges are not bounded");
    }
    assert_eq!(held, 32);
}

#[tokio::test]
async fn a_bound_key_is_announced_by_its_peer_only() {
    let app = spawn_app().await;
    let pair = KeyPair::new(12);
    let bound = app.register_key(&pair).await;
    let bound_info = |key: &str| {
        let mut info = peer_info(&bound.peer_id);
        info["public_key"] = json!(key);
        info
    };

    // The key-bound peer announces its own key only, creating or joining.
    let other_key = KeyPair::new(13).public.to_string();
    app.expect_error(
        Method::POST,
        "/parties",
        Some(&bound.token),
        Some(create_body("mine", bound_info(&other_key))),
        StatusCode::FORBIDDEN,
    )
    .await;
    let (host, party) = app.host_party("host").await;
    let join = format!("/parties/{party}/join");
    app.expect_error(
        Method::POST,
        &join,
        Some(&bound.token),
        Some(join_body(&party, bound_info(&other_key))),
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect::<Value>(
        Method::POST,
        &join,
        Some(&bound.token),
        Some(join_body(&party, bound_info(pair.public.as_str()))),
        StatusCode::OK,
    )
    .await;
    // Refreshing its info with another key is refused too, and changes
    // nothing.
    app.expect_error(
        Method::POST,
        &join,
        Some(&bound.token),
        Some(join_body(&party, bound_info(&other_key))),
        StatusCode::FORBIDDEN,
    )
    .await;
    let read = app.read_party(&party, &host).await;
    let announced = read
        .party
        .peers
        .values()
        .find(|peer| peer.peer_id.as_str() == bound.peer_id)
        .unwrap();
    assert_eq!(announced.public_key.as_str(), pair.public.as_str());

    // Nobody else may announce the bound key.
    let mallory = app.register("mallory").await;
    let mut stolen = peer_info("mallory");
    stolen["public_key"] = json!(pair.public.as_str());
    app.expect_error(
        Method::POST,
        "/parties",
        Some(&mallory),
        Some(create_body("stolen", stolen.clone())),
        StatusCode::CONFLICT,
    )
    .await;
    app.expect_error(
        Method::POST,
        &join,
        Some(&mallory),
        Some(join_body(&party, stolen)),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(app.read_party(&party, &host).await.party.peers.len(), 2);
}

#[tokio::test]
async fn party_reads_say_who_proved_their_key() {
    let app = spawn_app().await;
    let pair = KeyPair::new(14);
    let bound = app.register_key(&pair).await;
    let mut host = peer_info(&bound.peer_id);
    host["public_key"] = json!(pair.public.as_str());
    let created: lanrage_proto::CreatePartyResponse = app
        .expect(
            Method::POST,
            "/parties",
            Some(&bound.token),
            Some(create_body("verified", host)),
            StatusCode::OK,
        )
        .await;
    let me = lanrage_proto::PeerId::parse(bound.peer_id.as_str()).unwrap();
    assert_eq!(created.extras.verified, [(me.clone(), true)].into());

    let party = created.party_id.to_string();
    let (bob, joined) = app.join(&party, "bob").await;
    let bob_id = lanrage_proto::PeerId::parse("bob").unwrap();
    assert_eq!(
        joined.extras.verified,
        [(me.clone(), true), (bob_id.clone(), false)].into()
    );
    for token in [&bound.token, &bob] {
        let read = app.read_party(&party, token).await;
        assert_eq!(
            read.extras.verified,
            [(me.clone(), true), (bob_id.clone(), false)].into()
        );
    }
}
