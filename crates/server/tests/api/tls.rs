//! Built-in TLS: HTTPS and WSS from PEM files, reloaded when they change.

use std::{path::Path, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app_with;

/// Writes a fresh self-signed certificate for localhost; returns its DER.
pub(crate) fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    // Written beside, then renamed: the server never reads half a file.
    std::fs::write(dir.join("cert.tmp"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.tmp"), signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
    cert.der().clone()
}

/// A TLS connection to the server at `addr` trusting only `trusted`.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    trusted: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn https_and_wss_are_served_and_the_certificate_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_certificate(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let app = spawn_app_with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;

    // HTTPS.
    let mut https = connect(app.addr, &first).await.unwrap();
    https
        .write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    https.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // WSS: register over HTTPS is not needed, the token comes from the API.
    let token = {
        let mut tls = connect(app.addr, &first).await.unwrap();
        tls.write_all(b"POST /auth/register?peer_id=alice HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        tls.read_to_string(&mut reply).await.unwrap();
        let body = reply.split("\r\n\r\n").nth(1).unwrap().to_owned();
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        body["token"].as_str().unwrap().to_owned()
    };
    let tls = connect(app.addr, &first).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .unwrap();
    socket
        .send(Message::Text(
            serde_json::json!({"type": "auth", "peer_id": "alice", "token": token})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let Some(Ok(Message::Text(ok))) = socket.next().await else {
        panic!("no auth_ok")
    };
    assert!(ok.contains("auth_ok"), "{ok}");

    // Plain HTTP on the TLS port is refused.
    let mut plain = TcpStream::connect(app.addr).await.unwrap();
    plain
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(15), plain.read(&mut buffer))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));

    // A renewed certificate is picked up without a restart.
    let second = write_certificate(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while connect(app.addr, &second).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        connect(app.addr, &first).await.is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn a_bad_certificate_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let mut config =
        crate::helpers::test_config(&format!("sqlite://{}", dir.path().join("t.db").display()));
    config.tls_cert = Some(dir.path().join("cert.pem"));
    config.tls_key = Some(dir.path().join("key.pem"));

    let error = lanrage_server::Server::start(config).await.unwrap_err();

    assert!(error.to_string().contains("TLS"), "{error}");
}
