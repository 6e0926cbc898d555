//! Starting real servers (and restarting them on the same port and
//! database), typed peers, and event-driven waits.

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lanrage_client::{
    Backoff, ClientError, ControlPlane, Event, Events, HttpClient, HttpConfig, LocalConfig,
    PeerDetails, RemoteControlPlane, WsConfig,
};
use lanrage_proto::{
    IpOrUnknown, JoinPartyResponse, Name, NatType, PartyId, PeerId, PeerInfo, PublicKey, Timestamp,
    TokenResponse,
};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
    service::Service,
};
use parking_lot::Mutex;
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::oneshot, task::JoinHandle};

pub const RELAY_KEY: &str = "relay-operator-secret";

/// A generous bound for anything that should happen "soon" on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A real server over a SQLite file in a temporary folder.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    /// The folder of the database; a sibling borrows its first server's.
    _dir: Option<tempfile::TempDir>,
}

pub fn server_config(db_path: &Path, listen: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = listen.into();
    config.database_url = Some(format!("sqlite://{}", db_path.display()));
    config.rate_limit = Switch::Off;
    config.relay_key = Some(RELAY_KEY.parse::<Secret>().unwrap());
    config
}

pub async fn spawn_server() -> TestServer {
    spawn_server_with(|_| {}).await
}

pub async fn spawn_server_with(configure: impl FnOnce(&mut Config)) -> TestServer {
    spawn_server_with_service(configure).await.0
}

/// A real server, and its service for what no request does (a cleanup
/// pass at a chosen time).
pub async fn spawn_server_with_service(
    configure: impl FnOnce(&mut Config),
) -> (TestServer, Service) {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("control.db");
    let mut config = server_config(&db_path, "127.0.0.1:0");
    configure(&mut config);
    let ((addr, stop, handle), service) = start_with_service(config).await;
    let server = TestServer {
        addr,
        db_path,
        stop: Some(stop),
        handle: Some(handle),
        _dir: Some(dir),
    };
    (server, service)
}

type Running = (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
);

async fn start(config: Config) -> Running {
    start_with_service(config).await.0
}

async fn start_with_service(config: Config) -> (Running, Service) {
    let server = Server::start(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let service = server.service().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    ((addr, stop, handle), service)
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully (sockets get a close frame).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }

    /// Starts the server again on the same address and database.
    pub async fn start_again(&mut self) {
        assert!(self.stop.is_none(), "stop it first");
        let config = server_config(&self.db_path, &self.addr.to_string());
        let (addr, stop, handle) = start(config).await;
        assert_eq!(addr, self.addr);
        self.stop = Some(stop);
        self.handle = Some(handle);
    }

    /// A second server on the same database, on another port.
    pub async fn sibling(&self) -> TestServer {
        let (addr, stop, handle) = start(server_config(&self.db_path, "127.0.0.1:0")).await;
        TestServer {
            addr,
            db_path: self.db_path.clone(),
            stop: Some(stop),
            handle: Some(handle),
            _dir: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn peer_id(id: &str) -> PeerId {
    PeerId::parse(id).unwrap()
}

pub fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

/// How `id` describes itself; its key is derived from its id.
pub fn peer_info(id: &str) -> PeerInfo {
    let mut key = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        key[i % 32] ^= b;
    }
    PeerInfo {
        peer_id: peer_id(id),
        name: name(&format!("{id}'s rig")),
        public_key: PublicKey::from_bytes(&key),
        nat_type: NatType::FullCone,
        public_ip: IpOrUnknown::Unknown,
        public_port: 0,
        local_ip: "192.168.1.20".parse().unwrap(),
        local_port: 51820,
    }
}

/// How `id` shows itself to a party its plane creates or joins.
pub fn details(id: &str) -> PeerDetails {
    peer_info(id).into()
}

/// Client settings with short retry waits, so failure tests stay quick.
pub fn http_config(url: &str, id: &str) -> HttpConfig {
    let mut config = HttpConfig::new(url, peer_id(id));
    config.retry = Backoff::new(Duration::from_millis(20), Duration::from_millis(200), 5);
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(15);
    config
}

pub fn client(url: &str, id: &str) -> HttpClient {
    HttpClient::new(http_config(url, id)).unwrap()
}

/// A client for `id` that starts out holding `token`, valid for `secs`
/// more by its own account, which the server never issued (it was
/// revoked, or the server's database was reset since).
pub fn client_with_unknown_token(url: &str, id: &str, token: &str, secs: i64) -> HttpClient {
    let mut config = http_config(url, id);
    config.token = Some(TokenResponse {
        token: token.into(),
        peer_id: peer_id(id),
        expires_at: Timestamp::now().plus_secs(secs),
    });
    HttpClient::new(config).unwrap()
}

/// Creates the party "Friday LAN" hosted by `plane`'s own peer, which must
/// succeed.
pub async fn create_party(plane: &(impl ControlPlane + ?Sized)) -> JoinPartyResponse {
    let host = details(plane.peer_id().as_str());
    plane
        .register_party(name("Friday LAN"), host)
        .await
        .unwrap()
}

/// [`create_party`], for a test that needs only the party's id.
pub async fn host_party(plane: &(impl ControlPlane + ?Sized)) -> PartyId {
    create_party(plane).await.party.party_id
}

/// A client for `host` on `server`, and the party it created.
pub async fn hosting(server: &TestServer, host: &str) -> (HttpClient, PartyId) {
    let plane = client(&server.url(), host);
    let party_id = host_party(&plane).await;
    (plane, party_id)
}

/// `peer` joins `party_id` through a client of its own on the server at
/// `url`, which must succeed.
pub async fn join_as(url: &str, peer: &str, party_id: &PartyId) -> JoinPartyResponse {
    client(url, peer)
        .join_party(party_id, details(peer))
        .await
        .unwrap()
}

/// [`join_as`] over HTTPS, trusting as `tls` says.
pub async fn join_as_over(
    url: &str,
    tls: lanrage_client::TlsConfig,
    peer: &str,
    party_id: &PartyId,
) -> JoinPartyResponse {
    HttpClient::new(http_config(url, peer).with_tls(tls))
        .unwrap()
        .join_party(party_id, details(peer))
        .await
        .unwrap()
}

/// The members' ids, in order.
pub fn peer_ids<V>(peers: &BTreeMap<PeerId, V>) -> Vec<&str> {
    peers.keys().map(PeerId::as_str).collect()
}

/// A remote plane for `peer` on the server at `url`, its socket set up
/// by `ws`.
pub async fn remote_plane(url: &str, peer: &str, ws: WsConfig) -> (RemoteControlPlane, Events) {
    RemoteControlPlane::connect(client(url, peer), ws, LocalConfig::new(peer_id(peer)))
        .await
        .unwrap()
}

/// A remote plane for `peer` whose socket is connected, reconnecting
/// patiently.
pub async fn connected_plane(url: &str, peer: &str) -> (RemoteControlPlane, Events) {
    let (plane, mut events) = remote_plane(url, peer, patient_ws()).await;
    connected(&mut events, false).await;
    (plane, events)
}

/// Reconnects quickly and keeps trying for a long while.
pub fn patient_ws() -> WsConfig {
    WsConfig::default().with_reconnect(Backoff::new(
        Duration::from_millis(50),
        Duration::from_millis(300),
        10_000,
    ))
}

/// Reconnects quickly and gives up after three attempts, so a test can
/// reach the fall back to the local plane.
pub fn quitting_ws() -> WsConfig {
    WsConfig::default().with_reconnect(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(100),
        3,
    ))
}

/// The first event `pick` accepts, skipping others (listed on failure).
pub async fn next_event<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(&event) {
                return Some(found);
            }
            seen.push(event);
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("events ended; saw {seen:#?}"),
        Err(_) => panic!("expected event never came; saw {seen:#?}"),
    }
}

/// Skips to `Connected`, of a first connection or of a reconnection.
pub async fn connected(events: &mut Events, reconnect: bool) {
    next_event(events, |e| {
        matches!(e, Event::Connected { reconnect: again, .. } if *again == reconnect).then_some(())
    })
    .await;
}

/// Skips to `Disconnected`.
pub async fn disconnected(events: &mut Events) {
    next_event(events, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
}

/// Skips to `GaveUp`; the attempts it made.
pub async fn gave_up(events: &mut Events) -> u32 {
    next_event(events, |e| match e {
        Event::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    })
    .await
}

/// Skips to `party_ended`; its reason.
pub async fn party_ended(events: &mut Events) -> String {
    next_event(events, |e| match e {
        Event::PartyEnded { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Skips to `peer_joined` about `peer`; its seq.
pub async fn peer_joined(events: &mut Events, peer: &str) -> u64 {
    next_event(events, |e| match e {
        Event::PeerJoined {
            peer: joined, seq, ..
        } if joined.peer_id.as_str() == peer => Some(*seq),
        _ => None,
    })
    .await
}

/// Polls `check` until it returns something, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An address nothing listens on.
pub async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Reads one whole request (head, and a body of `content-length`).
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Some(request);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and detail of a refusal, which `result` must be.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, detail, .. }) => (status, detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// What a refusal should be: what was tried, the refusal it got (from
/// [`refusal`]), the status, and a part of the detail (`""`: any).
pub type ExpectedRefusal<'a> = (&'a str, (u16, String), u16, &'a str);

/// Asserts each refusal's status and detail.
pub fn assert_refusals(refusals: &[ExpectedRefusal<'_>]) {
    for (what, (status, detail), expected_status, expected_detail) in refusals {
        assert_eq!(status, expected_status, "{what}: {detail}");
        assert!(detail.contains(expected_detail), "{what}: {detail}");
    }
}

/// Asserts that `error` says `feature` is missing, in `place` (the
/// server's URL, or `local`), and that nothing would retry it.
pub fn assert_unsupported(error: &ClientError, feature: &str, place: &str) {
    assert!(
        matches!(error, ClientError::Unsupported { feature: missing, .. } if missing == feature),
        "{error:?}"
    );
    assert!(error.to_string().contains(place), "{error}");
    assert_eq!(error.status(), None);
    assert!(!error.is_retryable());
}

/// A server from before the capabilities beyond v1: `GET /` lists no
/// features, and every other route is unknown. It records the request lines it gets.
pub async fn v1_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = if line.starts_with("GET / ") {
                    (
                        200,
                        r#"{"service":"LANrage Control Plane","version":"0.1.0","status":"ok","parties":0,"relays":0}"#,
                    )
                } else {
                    (404, r#"{"detail":"Not Found"}"#)
                };
                log.lock().push(line);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}
