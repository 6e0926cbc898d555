//! Key-bound identity against the real server: registration by proving the
//! WireGuard key, renewal by proving it again, rotation, logout.

use lanrage_client::{ClientError, ControlPlane, HttpClient, HttpConfig, PeerDetails, PrivateKey};
use lanrage_server::config::IdentityMode;

use crate::helpers::{TestServer, client, name, spawn_server_with};

/// The private key of the test vector in DESIGN (section 1).
const VECTOR_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A server where v1 registration is refused, so a token shows that the
/// client proved its key rather than falling back.
async fn key_only_server() -> TestServer {
    spawn_server_with(|config| config.identity_mode = IdentityMode::KeyOnly).await
}

fn key_client(url: &str, key: &PrivateKey) -> HttpClient {
    let base = crate::helpers::http_config(url, "unused");
    let mut config = HttpConfig::key_bound(url, key.clone());
    config.retry = base.retry;
    HttpClient::new(config).unwrap()
}

fn key(byte: u8) -> PrivateKey {
    PrivateKey::from_bytes([byte; 32])
}

/// How the holder of `key` shows itself: with the key's public half, as
/// the server requires of a key-bound peer.
fn details_for(key: &PrivateKey) -> PeerDetails {
    PeerDetails::new(name("keyed rig"), key.public_key())
        .with_local_endpoint("192.168.1.30".parse().unwrap(), 51820)
}

#[tokio::test]
async fn a_key_bound_client_is_the_peer_derived_from_its_key() {
    let server = key_only_server().await;
    let key = PrivateKey::parse(VECTOR_KEY).unwrap();
    let alice = key_client(&server.url(), &key);

    assert!(alice.is_key_bound().await.unwrap());
    let token = alice.register_peer().await.unwrap();

    assert_eq!(token.peer_id.as_str(), "lr1iziobfutsit7rhehsccqtw7rai");
    assert_eq!(alice.peer_id(), &token.peer_id);
    let created = alice
        .register_party(name("Friday LAN"), details_for(&key))
        .await
        .unwrap();
    assert_eq!(created.party.host_id, token.peer_id);
    assert_eq!(alice.registrations(), 1);
}

#[tokio::test]
async fn a_client_with_a_peer_id_alone_keeps_v1_registration() {
    let server = spawn_server_with(|_| {}).await;
    let bob = client(&server.url(), "bob");

    assert!(!bob.is_key_bound().await.unwrap());
    assert_eq!(bob.register_peer().await.unwrap().peer_id.as_str(), "bob");

    // The same client against a key-only server is refused, not upgraded.
    let strict = key_only_server().await;
    let refused = client(&strict.url(), "bob").register_peer().await;
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 403, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_revoked_token_is_renewed_by_proving_the_key_again() {
    let server = key_only_server().await;
    let key = key(3);
    let alice = key_client(&server.url(), &key);
    let party = alice
        .register_party(name("Friday LAN"), details_for(&key))
        .await
        .unwrap()
        .party
        .party_id;
    let revoked = alice.current_token().await.unwrap();

    // Another process holding the same token logs it out.
    let mut other = HttpConfig::key_bound(server.url(), key.clone());
    other.token = Some(revoked.clone());
    HttpClient::new(other).unwrap().logout().await.unwrap();

    // Alice's token is refused now; the call goes on with a new proof.
    let view = alice.get_party(&party).await.unwrap();
    assert_eq!(view.party.host_id, revoked.peer_id);
    assert_eq!(alice.registrations(), 2);
    let renewed = alice.current_token().await.unwrap();
    assert_ne!(renewed.token, revoked.token);
    assert_eq!(renewed.peer_id, revoked.peer_id);
}

#[tokio::test]
async fn after_a_rotation_calls_go_on_as_the_same_peer_with_the_new_key() {
    let server = key_only_server().await;
    let (old_key, new_key) = (key(5), key(6));
    let alice = key_client(&server.url(), &old_key);
    let party = alice
        .register_party(name("Friday LAN"), details_for(&old_key))
        .await
        .unwrap()
        .party
        .party_id;
    let me = alice.peer_id().clone();
    let before = alice.current_token().await.unwrap();

    let rotated = alice.rotate(new_key.clone()).await.unwrap();

    assert_eq!(rotated.peer_id, me);
    assert_ne!(rotated.token, before.token);
    assert_eq!(alice.peer_id(), &me);
    let view = alice.get_party(&party).await.unwrap();
    assert_eq!(view.party.peers[&me].public_key, new_key.public_key());
    alice.heartbeat(&party).await.unwrap();
    alice
        .join_party(&party, details_for(&new_key))
        .await
        .unwrap();

    // Renewal proves the new key: a fresh client with it is the same peer,
    // though the ID derived from the new key differs.
    let later = key_client(&server.url(), &new_key);
    assert_ne!(new_key.derived_peer_id(), me);
    assert_eq!(later.register_peer().await.unwrap().peer_id, me);
    assert_eq!(later.peer_id(), &me);
    assert_eq!(later.get_party(&party).await.unwrap().party.host_id, me);

    // The retired key proves nothing any more.
    let retired = key_client(&server.url(), &old_key).register_peer().await;
    assert!(
        matches!(retired, Err(ClientError::Refused { status: 403, .. })),
        "{retired:?}"
    );
}

#[tokio::test]
async fn rotation_needs_a_key_bound_client() {
    let server = spawn_server_with(|_| {}).await;
    let bob = client(&server.url(), "bob");
    let refused = bob.rotate(key(7)).await;
    assert!(
        matches!(refused, Err(ClientError::Config(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn logout_without_a_token_sends_nothing_and_with_one_revokes_it() {
    let server = key_only_server().await;
    let key = key(9);
    let alice = key_client(&server.url(), &key);
    alice.logout().await.unwrap();
    assert_eq!(alice.registrations(), 0);
    assert_eq!(alice.current_token().await, None);

    let first = alice.register_peer().await.unwrap();
    alice.logout().await.unwrap();
    assert_eq!(alice.current_token().await, None);

    // Someone still holding the logged-out token gets it refused: a client
    // with the token and no key cannot renew, so the 401 shows through
    // as v1 registration's 403 on a key-only server.
    let mut holder = crate::helpers::http_config(&server.url(), first.peer_id.as_str());
    holder.token = Some(first.clone());
    let refused = HttpClient::new(holder).unwrap().list_relays().await;
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 403, .. })),
        "{refused:?}"
    );
}
