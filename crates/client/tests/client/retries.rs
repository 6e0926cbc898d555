//! Retries against a real listener that fails before it lets requests
//! through to the real server: dropped connections, 503, 429 with
//! `Retry-After`, and a 4xx that must not be retried.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lanrage_client::{ClientError, ControlPlane, HttpClient, TransportKind};
use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{client, http_config, name, peer_info, spawn_server};

/// What the flaky front does with one connection.
#[derive(Debug, Clone)]
enum Act {
    /// Accept, then close without a word.
    Drop,
    /// Read the request, answer with this status, `Retry-After` and detail.
    Answer(u16, Option<u64>, &'static str),
    /// Pass the connection through to the real server.
    Proxy,
}

/// A TCP listener that plays `script` one act per connection, then proxies.
struct FlakyFront {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl FlakyFront {
    async fn start(upstream: SocketAddr, script: Vec<Act>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let act = script.lock().unwrap().pop_front().unwrap_or(Act::Proxy);
                tokio::spawn(play(stream, act, upstream));
            }
        });
        Self { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn play(mut stream: TcpStream, act: Act, upstream: SocketAddr) {
    match act {
        Act::Drop => drop(stream),
        Act::Answer(status, retry_after, detail) => {
            // Read the request head; these tests send no bodies.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!("{{\"detail\":\"{detail}\"}}");
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Act::Proxy => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut server).await;
        }
    }
}

#[tokio::test]
async fn dropped_connections_and_503_are_retried_until_the_server_answers() {
    let server = spawn_server().await;
    let front = FlakyFront::start(
        server.addr,
        vec![
            Act::Drop,
            Act::Answer(503, Some(0), "database unavailable"),
            Act::Drop,
        ],
    )
    .await;
    let alice = client(&front.url(), "alice");

    let info = alice.service_info().await.unwrap();

    assert_eq!(info.service, "LANrage Control Plane");
    assert_eq!(front.connections(), 4);
}

#[tokio::test]
async fn authenticated_calls_survive_failures_too() {
    let server = spawn_server().await;
    // Registration and the create both meet failures.
    let front = FlakyFront::start(
        server.addr,
        vec![
            Act::Answer(502, None, "bad gateway"),
            Act::Proxy,
            Act::Drop,
            Act::Answer(503, Some(0), "database unavailable"),
        ],
    )
    .await;
    let mut config = http_config(&front.url(), "alice");
    // One connection per request, so each request meets the next act.
    config.pool_max_idle = 0;
    let alice = HttpClient::new(config).unwrap();

    let created = alice
        .register_party(name("Friday LAN"), peer_info("alice"))
        .await
        .unwrap();

    let direct = client(&server.url(), "alice");
    let view = direct.get_party(&created.party.party_id).await.unwrap();
    assert_eq!(view.party.name.as_str(), "Friday LAN");
    assert!(front.connections() >= 5, "{}", front.connections());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = spawn_server().await;
    let front = FlakyFront::start(server.addr, vec![Act::Answer(429, Some(1), "slow down")]).await;
    let alice = client(&front.url(), "alice");
    let started = Instant::now();

    alice.service_info().await.unwrap();

    // Our own backoff is at most 200 ms: the wait came from Retry-After.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(front.connections(), 2);
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    let server = spawn_server().await;
    let front = FlakyFront::start(server.addr, vec![Act::Answer(409, None, "already there")]).await;
    let alice = client(&front.url(), "alice");

    let error = alice.service_info().await.unwrap_err();

    assert_eq!(error.status(), Some(StatusCode::CONFLICT));
    assert_eq!(error.detail(), Some("already there"));
    assert_eq!(front.connections(), 1);
}

#[tokio::test]
async fn a_server_that_keeps_failing_fails_the_call_after_the_attempts() {
    let server = spawn_server().await;
    let front = FlakyFront::start(
        server.addr,
        vec![Act::Answer(503, Some(0), "database unavailable"); 10],
    )
    .await;
    let alice = client(&front.url(), "alice");

    let error = alice.service_info().await.unwrap_err();

    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(error.detail(), Some("database unavailable"));
    // http_config allows 5 attempts.
    assert_eq!(front.connections(), 5);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let address = crate::helpers::dead_address().await;
    let alice = client(&format!("http://{address}"), "alice");

    let error = alice.service_info().await.unwrap_err();

    assert!(
        matches!(
            error,
            ClientError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_unreachable());
}
