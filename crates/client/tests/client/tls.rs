//! HTTPS and WSS against the server's own TLS, with a certificate made
//! for the test: trusted as a root, pinned, and refused (never a fallback).

use std::path::Path;

use lanrage_client::{
    ClientError, Event, SelectedPlane, Settings, TlsConfig, TransportKind, create_control_plane,
};
use sha2::{Digest, Sha256};

use crate::helpers::{
    TestServer, details, join_as_over, name, next_event, peer_id, spawn_server_with,
};

/// A server on HTTPS and WSS with a fresh self-signed certificate for
/// localhost and 127.0.0.1; the certificate's PEM and DER.
async fn tls_server(dir: &Path) -> (TestServer, String, Vec<u8>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let server = spawn_server_with(|config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
    })
    .await;
    (server, cert.pem(), cert.der().to_vec())
}

fn https_url(server: &TestServer) -> String {
    format!("https://localhost:{}", server.addr.port())
}

/// Alice's plane on `url` trusting as `tls` says.
async fn alice_over(url: &str, tls: TlsConfig) -> Result<SelectedPlane, ClientError> {
    create_control_plane(Settings::new(Some(url.into()), peer_id("alice")).with_tls(tls)).await
}

/// Creates a party as alice, has bob join it over HTTPS, and sees bob's
/// arrival on alice's WSS events.
async fn party_over_tls(selected: SelectedPlane, url: &str, tls: TlsConfig) {
    let (alice, events) = selected.into_parts();
    let mut events = events.expect("the remote plane");
    let created = alice
        .register_party(name("Secure LAN"), details("alice"))
        .await
        .unwrap();
    join_as_over(url, tls, "bob", &created.party.party_id).await;
    next_event(&mut events, |e| {
        matches!(e, Event::PeerJoined { peer, .. } if peer.peer_id.as_str() == "bob").then_some(())
    })
    .await;
    alice.close().await.unwrap();
}

#[tokio::test]
async fn https_and_wss_work_with_the_servers_certificate_as_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pem, _) = tls_server(dir.path()).await;
    let url = https_url(&server);
    let tls = TlsConfig::default()
        .without_platform_roots()
        .with_root_pem(pem.as_bytes())
        .unwrap();

    let selected = alice_over(&url, tls.clone()).await.unwrap();

    assert!(selected.is_remote(), "{selected:?}");
    let SelectedPlane::Remote { plane, .. } = &selected else {
        unreachable!()
    };
    assert!(plane.socket().url().starts_with("wss://"));
    party_over_tls(selected, &url, tls).await;
}

#[tokio::test]
async fn a_pinned_certificate_is_accepted_whatever_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, der) = tls_server(dir.path()).await;
    // By IP: the pin alone vouches for the server.
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let pin: [u8; 32] = Sha256::digest(&der).into();
    let tls = TlsConfig::default().with_pinned_sha256(pin);

    let selected = alice_over(&url, tls.clone()).await.unwrap();

    assert!(selected.is_remote(), "{selected:?}");
    party_over_tls(selected, &url, tls).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_an_error_never_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = tls_server(dir.path()).await;
    let url = https_url(&server);

    let unknown_issuer = alice_over(&url, TlsConfig::default()).await;
    let wrong_pin = alice_over(&url, TlsConfig::default().with_pinned_sha256([7; 32])).await;

    for outcome in [unknown_issuer, wrong_pin] {
        match outcome {
            Err(ClientError::Transport { kind, .. }) => assert_eq!(kind, TransportKind::Tls),
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_scheme_the_client_cannot_serve_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pem, _) = tls_server(dir.path()).await;
    let tls = TlsConfig::default().with_root_pem(pem.as_bytes()).unwrap();

    let outcome = alice_over(&format!("wss://localhost:{}", server.addr.port()), tls).await;

    assert!(
        matches!(outcome, Err(ClientError::Config(_))),
        "{outcome:?}"
    );
}
