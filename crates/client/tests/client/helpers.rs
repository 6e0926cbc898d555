//! Starting real servers (and restarting them on the same port and
//! database), typed peers, and event-driven waits.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use lanrage_client::{Backoff, HttpClient, HttpConfig, WsConfig, WsEvent, WsEvents};
use lanrage_proto::{IpOrUnknown, Name, NatType, PeerId, PeerInfo, PublicKey};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
    service::Service,
};
use tokio::{sync::oneshot, task::JoinHandle};

pub const RELAY_KEY: &str = "relay-operator-secret";

/// A generous bound for anything that should happen "soon" on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A real server over a SQLite file in a temporary folder.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
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
        _dir: dir,
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
    pub async fn sibling(
        &self,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        JoinHandle<std::io::Result<()>>,
    ) {
        start(server_config(&self.db_path, "127.0.0.1:0")).await
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

/// Client settings with short retry waits, so failure tests stay quick.
pub fn http_config(url: &str, id: &str) -> HttpConfig {
    let mut config = HttpConfig::new(url, peer_id(id));
    config.retry = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        max_attempts: 5,
    };
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(15);
    config
}

pub fn client(url: &str, id: &str) -> HttpClient {
    HttpClient::new(http_config(url, id)).unwrap()
}

/// Reconnects quickly and keeps trying for a long while.
pub fn patient_ws() -> WsConfig {
    WsConfig {
        reconnect: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
            max_attempts: 10_000,
        },
        ..WsConfig::default()
    }
}

/// The first event `pick` accepts, skipping others (listed on failure).
pub async fn next_event<T>(
    events: &mut WsEvents,
    mut pick: impl FnMut(&WsEvent) -> Option<T>,
) -> T {
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
