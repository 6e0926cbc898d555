//! Retries against a real listener that fails before it lets requests
//! through to the real server: dropped connections, 503, 429 with
//! `Retry-After`, and a 4xx that must not be retried; exact attempt counts,
//! and requests that must not be applied twice.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lanrage_client::{ClientError, ControlPlane, HttpClient, LeaveOutcome, TransportKind};
use lanrage_proto::SignalData;
use parking_lot::Mutex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{
    client, create_party, details, host_party, http_config, name, peer_id, read_request,
    spawn_server,
};

/// What the flaky front does with one connection.
#[derive(Debug, Clone)]
enum Act {
    /// Accept, then close without a word.
    Drop,
    /// Read the request, answer with this status, `Retry-After` and detail.
    Answer(u16, Option<u64>, &'static str),
    /// Pass the connection through to the real server.
    Proxy,
    /// Pass one request to the real server (which acts on it), then cut
    /// the connection before its answer gets back.
    ProxyThenDrop,
    /// Pass one request to the real server, then answer this status with
    /// `Retry-After: 0` instead of its answer.
    ProxyThenAnswer(u16),
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
                let act = script.lock().pop_front().unwrap_or(Act::Proxy);
                tokio::spawn(play(stream, act, upstream));
            }
        });
        Self { addr, connections }
    }

    /// A front whose first `connections` connections are answered with
    /// a 503 that asks for a retry at once.
    async fn unavailable(upstream: SocketAddr, connections: usize) -> Self {
        let refusal = Act::Answer(503, Some(0), "database unavailable");
        Self::start(upstream, vec![refusal; connections]).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Sends `request` to the real server and waits for the start of its answer.
async fn forward(request: &[u8], upstream: SocketAddr) -> Option<()> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(request).await.ok()?;
    let mut buf = [0u8; 1024];
    match server.read(&mut buf).await {
        Ok(n) if n > 0 => Some(()),
        _ => None,
    }
}

async fn answer(stream: &mut TcpStream, status: u16, retry_after: Option<u64>, detail: &str) {
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

async fn play(mut stream: TcpStream, act: Act, upstream: SocketAddr) {
    match act {
        Act::Drop => drop(stream),
        Act::ProxyThenDrop => {
            if let Some(request) = read_request(&mut stream).await {
                forward(&request, upstream).await;
            }
            drop(stream);
        }
        Act::ProxyThenAnswer(status) => {
            if let Some(request) = read_request(&mut stream).await
                && forward(&request, upstream).await.is_some()
            {
                answer(&mut stream, status, Some(0), "answer lost").await;
            }
        }
        Act::Answer(status, retry_after, detail) => {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            answer(&mut stream, status, retry_after, detail).await;
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

/// A client whose every request opens its own connection, so that each
/// request meets the next act of the script.
fn one_connection_per_request(url: &str, id: &str) -> HttpClient {
    let mut config = http_config(url, id);
    config.pool_max_idle = 0;
    HttpClient::new(config).unwrap()
}

#[tokio::test]
async fn authenticated_calls_survive_failures_too() {
    let server = spawn_server().await;
    // Registration and the read both meet failures.
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
    let alice = one_connection_per_request(&front.url(), "alice");

    let relays = alice.list_relays().await.unwrap();

    assert!(relays.is_empty());
    // 502, registered, dropped, 503, answered: one attempt each, no more.
    assert_eq!(front.connections(), 5);
    assert_eq!(alice.registrations(), 1);
}

#[tokio::test]
async fn registration_is_not_a_retry_loop_inside_the_retry_loop() {
    let server = spawn_server().await;
    let front = FlakyFront::unavailable(server.addr, 50).await;
    let alice = one_connection_per_request(&front.url(), "alice");

    let error = alice.list_relays().await.unwrap_err();

    assert_eq!(error.status(), Some(503));
    // http_config allows 5 attempts in all, registration included.
    assert_eq!(front.connections(), 5);
}

#[tokio::test]
async fn a_signal_whose_answer_is_lost_is_not_sent_again() {
    let server = spawn_server().await;
    let party_id = host_party(&client(&server.url(), "alice")).await;
    let bob = client(&server.url(), "bob");
    bob.join_party(&party_id, details("bob")).await.unwrap();
    // Alice registers through the front, then her signal reaches the
    // server but its answer does not reach her.
    let front = FlakyFront::start(server.addr, vec![Act::Proxy, Act::ProxyThenDrop]).await;
    let alice = one_connection_per_request(&front.url(), "alice");
    let offer = SignalData::parse(serde_json::json!({"type": "offer"})).unwrap();

    let error = alice
        .send_signal(&party_id, &peer_id("bob"), offer)
        .await
        .unwrap_err();

    assert!(matches!(error, ClientError::Transport { .. }), "{error:?}");
    assert!(!error.is_retryable_unsent());
    assert_eq!(front.connections(), 2);
    assert_eq!(bob.poll_signals(&party_id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_create_is_retried_only_when_the_server_did_not_act() {
    let server = spawn_server().await;
    // 503 with Retry-After: not acted on, retried. 503 without: maybe
    // acted on, not retried.
    let front = FlakyFront::start(
        server.addr,
        vec![
            Act::Proxy,
            Act::Answer(503, Some(0), "database unavailable"),
            Act::Proxy,
            Act::Answer(503, None, "who knows"),
        ],
    )
    .await;
    let alice = one_connection_per_request(&front.url(), "alice");

    let created = create_party(&alice).await;
    let connections_after_create = front.connections();
    let error = alice
        .register_party(name("Saturday LAN"), details("alice"))
        .await
        .unwrap_err();

    assert_eq!(created.party.name.as_str(), "Friday LAN");
    assert_eq!(connections_after_create, 3);
    assert_eq!(error.detail(), Some("who knows"));
    assert_eq!(front.connections(), 4);
}

#[tokio::test]
async fn a_leave_that_the_retry_finds_done_is_a_success() {
    let server = spawn_server().await;
    let direct = client(&server.url(), "alice");
    let party_id = host_party(&direct).await;
    direct.close().await.unwrap();
    // The leave reaches the server, but alice is told 503: she tries again
    // and hears 404, since she is already out.
    let front = FlakyFront::start(server.addr, vec![Act::Proxy, Act::ProxyThenAnswer(503)]).await;
    let alice = one_connection_per_request(&front.url(), "alice");

    let outcome = alice.leave_party(&party_id).await.unwrap();

    // The host left: the party ended.
    assert_eq!(outcome, LeaveOutcome::PartyDeleted);
    let gone = client(&server.url(), "alice")
        .get_party(&party_id)
        .await
        .unwrap_err();
    assert_eq!(gone.status(), Some(404));
}

#[tokio::test]
async fn a_join_by_code_whose_answer_is_lost_spends_one_use_only() {
    let server = spawn_server().await;
    let host = client(&server.url(), "alice");
    let party_id = host_party(&host).await;
    let code = host
        .create_invite(&party_id, Some(5), None)
        .await
        .unwrap()
        .code;
    // `GET /` (the feature check) and registration pass; the join reaches
    // the server, but its answer does not reach bob.
    let front = FlakyFront::start(
        server.addr,
        vec![Act::Proxy, Act::Proxy, Act::ProxyThenDrop],
    )
    .await;
    let bob = one_connection_per_request(&front.url(), "bob");

    let error = bob.join_by_code(&code, details("bob")).await.unwrap_err();

    assert!(matches!(error, ClientError::Transport { .. }), "{error:?}");
    assert_eq!(front.connections(), 3, "not sent again");
    let invites = host.invites(&party_id).await.unwrap();
    assert_eq!(invites[0].uses, 1);
    let members = host.get_party(&party_id).await.unwrap().party.peers;
    assert!(members.contains_key(&peer_id("bob")));
}

#[tokio::test]
async fn a_revocation_whose_answer_is_lost_is_retried_and_found_done() {
    let server = spawn_server().await;
    let direct = client(&server.url(), "alice");
    let party_id = host_party(&direct).await;
    let nameplate = direct
        .create_invite(&party_id, None, None)
        .await
        .unwrap()
        .nameplate;
    direct.close().await.unwrap();
    // The revocation reaches the server and its answer is cut: unlike a
    // leave, it is sent again, and the 404 it meets means done.
    let front = FlakyFront::start(
        server.addr,
        vec![Act::Proxy, Act::Proxy, Act::ProxyThenDrop],
    )
    .await;
    let alice = one_connection_per_request(&front.url(), "alice");

    alice.revoke_invite(&party_id, &nameplate).await.unwrap();

    assert_eq!(front.connections(), 4);
    assert!(direct.invites(&party_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_malformed_server_url_is_a_settings_error_at_once() {
    let started = Instant::now();

    let error = HttpClient::new(http_config("http://exa mple", "alice")).unwrap_err();

    assert!(matches!(error, ClientError::Config(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(1));
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

    assert_eq!(error.status(), Some(409));
    assert_eq!(error.detail(), Some("already there"));
    assert_eq!(front.connections(), 1);
}

#[tokio::test]
async fn a_server_that_keeps_failing_fails_the_call_after_the_attempts() {
    let server = spawn_server().await;
    let front = FlakyFront::unavailable(server.addr, 10).await;
    let alice = client(&front.url(), "alice");

    let error = alice.service_info().await.unwrap_err();

    assert_eq!(error.status(), Some(503));
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
