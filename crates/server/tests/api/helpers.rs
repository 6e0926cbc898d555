//! `spawn_app()` and typed request helpers.

use std::{net::SocketAddr, path::PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_proto::{
    CreatePartyResponse, ErrorBody, JoinPartyResponse, PartyId, PartyResponse, Peer, PeerId,
    RelayStatusResponse, RelaysResponse, SignalsResponse, StatusResponse, Timestamp, TokenResponse,
};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
    service::{CleanupReport, Service},
    store::MemberRecord,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub const RELAY_KEY: &str = "relay-operator-secret";

/// Which storage backend a test binary runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub service: Service,
    /// The SQLite file (SQLite runs only).
    pub db_path: PathBuf,
    database_url: String,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last: the database lives in it (or is dropped by it).
    dir: Option<tempfile::TempDir>,
    scratch_database: Option<ScratchDatabase>,
}

/// Settings for tests: the given database, port 0, no rate limiting.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = Some(database_url.to_owned());
    config.rate_limit = Switch::Off;
    config.relay_key = Some(RELAY_KEY.parse::<Secret>().unwrap());
    config.registration_key = None;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server that rate-limits, as in production (tests turn it off by
/// default), configured further by `configure`.
pub async fn spawn_rate_limited_app(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        config.rate_limit = Switch::On;
        configure(config);
    })
    .await
}

/// A rate-limited server (one write a second) behind a proxy it trusts,
/// at 127.0.0.1: clients are told apart by `X-Forwarded-For`
/// ([`TestApp::register_from`]).
#[allow(dead_code)] // Not every suite sits behind a proxy.
pub async fn spawn_app_behind_proxy() -> TestApp {
    spawn_rate_limited_app(|config| {
        config.rate_limit_writes_per_sec = 1;
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: the server must create it.
    let db_path = dir.path().join("state").join("control.db");
    let (database_url, scratch_database) = match crate::BACKEND {
        Backend::Sqlite => (format!("sqlite://{}", db_path.display()), None),
        Backend::Postgres => {
            let scratch = ScratchDatabase::create().await;
            (scratch.url.clone(), Some(scratch))
        }
    };
    let mut config = test_config(&database_url);
    configure(&mut config);
    let mut app = start(config, db_path, database_url).await;
    app.dir = Some(dir);
    app.scratch_database = scratch_database;
    app
}

async fn start(config: Config, db_path: PathBuf, database_url: String) -> TestApp {
    install_tls_provider();
    let server = Server::start(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let service = server.service().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        service,
        db_path,
        database_url,
        stop: Some(stop),
        handle: Some(handle),
        dir: None,
        scratch_database: None,
    }
}

/// The PostgreSQL server tests create their databases on.
fn postgres_admin_url() -> String {
    std::env::var("LANRAGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, dropped with it.
pub struct ScratchDatabase {
    pub url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates the database, or ends the test binary with a clear message
    /// when PostgreSQL is unreachable (a failure when
    /// `LANRAGE_REQUIRE_POSTGRES=1`, as in CI).
    pub async fn create() -> Self {
        use sqlx::{Connection, Executor};

        let admin_url = postgres_admin_url();
        let connect = sqlx::PgConnection::connect(&admin_url);
        let mut admin = match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await
        {
            Ok(Ok(admin)) => admin,
            failure => {
                let why = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                if std::env::var("LANRAGE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!(
                        "PostgreSQL is required (LANRAGE_REQUIRE_POSTGRES=1) but {admin_url} is unreachable: {why}"
                    );
                }
                eprintln!(
                    "SKIPPED: the PostgreSQL test suite needs a server at {admin_url} \
                     (set LANRAGE_TEST_POSTGRES_URL): {why}"
                );
                std::process::exit(0);
            }
        };
        let suffix: String = (0..8).map(|_| format!("{:02x}", rand_byte())).collect();
        let name = format!("lanrage_test_{suffix}");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let _ = admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

fn rand_byte() -> u8 {
    let mut byte = [0u8; 1];
    getrandom::fill(&mut byte).unwrap();
    byte[0]
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async: a short-lived runtime on its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                use sqlx::{Connection, Executor};
                if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Runs SQL on the server's database from outside, as another program
    /// (or an older version of the server) would; returns the first column
    /// of the first row as an integer, if there is one.
    #[allow(dead_code)] // Not every suite writes behind the server's back.
    pub async fn sql(&self, statement: &str) -> Option<i64> {
        use sqlx::{Connection, Row};
        match crate::BACKEND {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", self.db_path.display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let row = sqlx::query(sqlx::AssertSqlSafe(statement))
                    .fetch_optional(&mut db)
                    .await
                    .unwrap();
                row.map(|row| row.get(0))
            }
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                let row = sqlx::query(sqlx::AssertSqlSafe(statement))
                    .fetch_optional(&mut db)
                    .await
                    .unwrap();
                row.map(|row| row.get(0))
            }
        }
    }

    /// Stops the server and starts a new one on the same database.
    pub async fn restart(mut self, configure: impl FnOnce(&mut Config)) -> TestApp {
        self.stop_server().await;
        let mut config = test_config(&self.database_url);
        configure(&mut config);
        let mut app = start(config, self.db_path.clone(), self.database_url.clone()).await;
        app.dir = self.dir.take();
        app.scratch_database = self.scratch_database.take();
        app
    }

    /// Another server instance on the same database (PostgreSQL: several
    /// instances behind one load balancer).
    #[allow(dead_code)] // Only the PostgreSQL suite runs several instances.
    pub async fn sibling(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(&self.database_url);
        configure(&mut config);
        start(config, self.db_path.clone(), self.database_url.clone()).await
    }

    pub async fn stop_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }

    /// Sends a request; `token` becomes a bearer credential, `body` JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// The body of a GET of `path`, which must answer 200 with a content
    /// type starting with `content_type`, as text.
    #[allow(dead_code)] // Not every suite reads pages.
    pub async fn get_page(&self, path: &str, content_type: &str) -> String {
        let response = self.send(Method::GET, path, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let served = response.headers()["content-type"].to_str().unwrap();
        assert!(served.starts_with(content_type), "GET {path}: {served}");
        response.text().await.unwrap()
    }

    /// The body of a GET of `path`, as text, whatever its status.
    pub async fn get_text(&self, path: &str) -> String {
        self.send(Method::GET, path, None, None)
            .await
            .text()
            .await
            .unwrap()
    }

    /// Asserts that `/metrics` holds `sample` (a series with its labels
    /// and value).
    #[allow(dead_code)] // Not every suite reads metrics.
    pub async fn expect_metric(&self, sample: &str) {
        let metrics = self.get_text("/metrics").await;
        assert!(metrics.contains(sample), "no {sample} in\n{metrics}");
    }

    /// `POST /auth/register` for `peer` as a client that a trusted proxy
    /// says is `client` (`X-Forwarded-For`), whatever the answer.
    #[allow(dead_code)] // Not every suite sits behind a proxy.
    pub async fn register_from(&self, peer: &str, client: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/auth/register?peer_id={peer}")))
            .header("X-Forwarded-For", client)
            .send()
            .await
            .unwrap()
    }

    /// Sends a request and expects `status` with a body of type `T`.
    pub async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: StatusCode,
    ) -> T {
        let response = self.send(method.clone(), path, token, body).await;
        read(response, status, &format!("{method} {path}")).await
    }

    /// Sends a request and expects an error `status`; returns the detail.
    pub async fn expect_error(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: StatusCode,
    ) -> String {
        let error: ErrorBody = self.expect(method, path, token, body, status).await;
        assert!(!error.detail.is_empty());
        error.detail
    }

    pub async fn register(&self, peer_id: &str) -> String {
        let response: TokenResponse = self
            .expect(
                Method::POST,
                &format!("/auth/register?peer_id={peer_id}"),
                None,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(response.peer_id.as_str(), peer_id);
        response.token
    }

    /// Sends `route` as `token`; it must succeed with a `T`.
    pub async fn call<T: DeserializeOwned>(&self, route: Route<'_>, token: &str) -> T {
        let (method, path, body) = route.request();
        self.expect(method, &path, Some(token), body, StatusCode::OK)
            .await
    }

    /// Sends `route` as `token`; it must be refused with `status`. Returns
    /// the detail.
    pub async fn refused(&self, route: Route<'_>, token: &str, status: StatusCode) -> String {
        let (method, path, body) = route.request();
        self.expect_error(method, &path, Some(token), body, status)
            .await
    }

    /// Registers `host` and creates a party it hosts.
    pub async fn create_party(&self, host: &str) -> (String, CreatePartyResponse) {
        let token = self.register(host).await;
        let body = create_body("Friday LAN", peer_info(host));
        let created = self.call(Route::Create(body), &token).await;
        (token, created)
    }

    /// Registers `host` and creates a party it hosts: the host's token and
    /// the party's id.
    pub async fn host_party(&self, host: &str) -> (String, String) {
        let (token, created) = self.create_party(host).await;
        (token, created.party_id.to_string())
    }

    /// Registers `peer` and joins it to `party_id`.
    pub async fn join(&self, party_id: &str, peer: &str) -> (String, JoinPartyResponse) {
        let token = self.register(peer).await;
        let joined = self.join_with(party_id, peer, &token).await;
        (token, joined)
    }

    pub async fn join_with(&self, party_id: &str, peer: &str, token: &str) -> JoinPartyResponse {
        self.join_as(party_id, token, peer_info(peer)).await
    }

    /// Joins (or refreshes) `party_id` as `token`, describing itself by
    /// `info`, which must succeed.
    pub async fn join_as(&self, party_id: &str, token: &str, info: Value) -> JoinPartyResponse {
        let body = join_body(party_id, info);
        self.call(Route::Join(party_id, body), token).await
    }

    /// Registers `{prefix}0` to `{prefix}{n-1}`; their tokens and peer ids,
    /// in that order.
    pub async fn register_numbered(&self, prefix: &str, n: usize) -> Vec<(String, String)> {
        let mut peers = Vec::new();
        for i in 0..n {
            let peer = format!("{prefix}{i}");
            peers.push((self.register(&peer).await, peer));
        }
        peers
    }

    /// Registers `outsider`, and `alice`, who creates a party: the party's
    /// id and the outsider's token.
    pub async fn party_and_outsider(&self, outsider: &str) -> (String, String) {
        let (_, created) = self.create_party("alice").await;
        let token = self.register(outsider).await;
        (created.party_id.to_string(), token)
    }

    /// Registers `alice`, who creates a party, and `bob`, who joins it.
    pub async fn party_of_two(&self) -> PartyOfTwo {
        let (alice, created) = self.create_party("alice").await;
        let id = created.party_id.to_string();
        let (bob, joined) = self.join(&id, "bob").await;
        PartyOfTwo {
            id,
            created,
            alice,
            bob,
            joined,
        }
    }

    /// `GET /parties/{party}` as `token`, which must succeed.
    pub async fn read_party(&self, party: &str, token: &str) -> PartyResponse {
        self.call(Route::ReadParty(party), token).await
    }

    /// `peer` leaves `party` as `token`, which must succeed.
    pub async fn leave(&self, party: &str, peer: &str, token: &str) -> StatusResponse {
        self.call(Route::Leave(party, peer), token).await
    }

    /// Drains `token`'s queued signals in `party`, which must succeed.
    pub async fn drain_signals(&self, party: &str, token: &str) -> SignalsResponse {
        self.call(Route::DrainSignals(party), token).await
    }

    /// `peer`'s heartbeat in `party` as `token`, which must succeed.
    pub async fn heartbeat(&self, party: &str, peer: &str, token: &str) -> StatusResponse {
        self.call(Route::Heartbeat(party, peer), token).await
    }

    /// Posts a signal for `to` in `party` as `token`, whatever the answer.
    pub async fn post_signal(
        &self,
        party: &str,
        token: &str,
        to: &str,
        data: Value,
    ) -> reqwest::Response {
        let (method, path, body) = Route::SendSignal(party, signal_body(to, data)).request();
        self.send(method, &path, Some(token), body).await
    }

    /// Registers (or refreshes) a relay with the operator key, which must
    /// succeed.
    pub async fn register_relay(&self, relay: Value) -> RelayStatusResponse {
        self.call(Route::RegisterRelay(relay), RELAY_KEY).await
    }

    /// The relays (of `region`, if given) as `token` lists them.
    pub async fn list_relays(&self, region: Option<&str>, token: &str) -> RelaysResponse {
        self.call(Route::ListRelays(region), token).await
    }

    /// The party's members as stored, bypassing the API (and the
    /// heartbeats still waiting in memory).
    #[allow(dead_code)] // Not every suite looks behind the API.
    pub async fn stored_members(&self, party: &PartyId) -> Vec<MemberRecord> {
        let (_, members) = self.service.store().snapshot(party).await.unwrap().unwrap();
        members
    }

    /// Overwrites `peer`'s stored membership of `party` behind the API, as
    /// an older server (or one stopped long ago) would have left it.
    #[allow(dead_code)] // Not every suite rewrites members.
    pub async fn store_member(&self, party: &PartyId, peer: &Peer) {
        let mut tx = self.service.store().begin().await.unwrap();
        tx.update_member(party, peer).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// One cleanup pass, judged as if the clock read `now`.
    #[allow(dead_code)] // Not every suite cleans up.
    pub async fn cleanup_at(&self, now: Timestamp) -> CleanupReport {
        self.service.cleanup_once(now).await.unwrap()
    }

    /// Stores `peer` as last seen at `at`, as a heartbeat would have.
    #[allow(dead_code)] // Not every suite moves the clock.
    pub async fn touch(&self, party: &PartyId, peer: &str, at: Timestamp) {
        let peer = PeerId::parse(peer).unwrap();
        self.service
            .store()
            .touch_member(party, &peer, at)
            .await
            .unwrap();
    }

    pub async fn party_count(&self) -> u64 {
        let info: Value = self
            .expect(Method::GET, "/", None, None, StatusCode::OK)
            .await;
        info["parties"].as_u64().unwrap()
    }
}

/// A request the suites send often, with its method, path and body in one
/// place, so that a test can expect it to succeed ([`TestApp::call`]) or
/// to be refused ([`TestApp::refused`]).
#[allow(dead_code)] // Each suite sends the routes it tests.
pub enum Route<'a> {
    /// `POST /parties` with this body.
    Create(Value),
    /// `POST /parties/{party}/join` with this body.
    Join(&'a str, Value),
    /// `GET /parties/{party}`.
    ReadParty(&'a str),
    /// `GET /parties/{party}/peers`.
    ListPeers(&'a str),
    /// `GET /parties/{party}/peers/{peer}`.
    ReadPeer(&'a str, &'a str),
    /// `DELETE /parties/{party}/peers/{peer}`.
    Leave(&'a str, &'a str),
    /// `POST /parties/{party}/peers/{peer}/heartbeat`.
    Heartbeat(&'a str, &'a str),
    /// `POST /parties/{party}/signals` with this body.
    SendSignal(&'a str, Value),
    /// `GET /parties/{party}/signals`.
    DrainSignals(&'a str),
    /// `POST /relays` with this body.
    RegisterRelay(Value),
    /// `DELETE /relays/{relay}`.
    DeregisterRelay(&'a str),
    /// `GET /relays`, or `GET /relays/{region}`.
    ListRelays(Option<&'a str>),
}

impl Route<'_> {
    fn request(self) -> (Method, String, Option<Value>) {
        match self {
            Route::Create(body) => (Method::POST, "/parties".into(), Some(body)),
            Route::Join(party, body) => {
                (Method::POST, format!("/parties/{party}/join"), Some(body))
            }
            Route::ReadParty(party) => (Method::GET, format!("/parties/{party}"), None),
            Route::ListPeers(party) => (Method::GET, format!("/parties/{party}/peers"), None),
            Route::ReadPeer(party, peer) => {
                (Method::GET, format!("/parties/{party}/peers/{peer}"), None)
            }
            Route::Leave(party, peer) => (
                Method::DELETE,
                format!("/parties/{party}/peers/{peer}"),
                None,
            ),
            Route::Heartbeat(party, peer) => (
                Method::POST,
                format!("/parties/{party}/peers/{peer}/heartbeat"),
                None,
            ),
            Route::SendSignal(party, body) => (
                Method::POST,
                format!("/parties/{party}/signals"),
                Some(body),
            ),
            Route::DrainSignals(party) => (Method::GET, format!("/parties/{party}/signals"), None),
            Route::RegisterRelay(body) => (Method::POST, "/relays".into(), Some(body)),
            Route::DeregisterRelay(relay) => (Method::DELETE, format!("/relays/{relay}"), None),
            Route::ListRelays(None) => (Method::GET, "/relays".into(), None),
            Route::ListRelays(Some(region)) => (Method::GET, format!("/relays/{region}"), None),
        }
    }
}

/// What [`TestApp::party_of_two`] made: the party's id, and each peer's
/// token and answer.
#[allow(dead_code)] // Each suite reads the fields it needs.
pub struct PartyOfTwo {
    pub id: String,
    pub created: CreatePartyResponse,
    /// The host's token.
    pub alice: String,
    /// The guest's token.
    pub bob: String,
    pub joined: JoinPartyResponse,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn read<T: DeserializeOwned>(
    response: reqwest::Response,
    status: StatusCode,
    what: &str,
) -> T {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{what}: unexpected status, body {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: body {text} does not parse: {e}"))
}

/// A WireGuard-style key derived from the peer id.
pub fn key_for(peer: &str) -> String {
    let mut bytes = [0u8; 32];
    for (i, b) in peer.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    STANDARD.encode(bytes)
}

/// A `POST /parties` body.
pub fn create_body(name: &str, host: Value) -> Value {
    json!({"name": name, "host_peer_info": host})
}

/// A `POST /parties/{party_id}/join` body.
pub fn join_body(party_id: &str, peer: Value) -> Value {
    json!({"party_id": party_id, "peer_info": peer})
}

/// A `POST /parties/{party_id}/signals` body.
pub fn signal_body(to: &str, data: Value) -> Value {
    json!({"to_peer_id": to, "signal_data": data})
}

/// The peer dict the Python client sends (NAT discovery failed, naive
/// `last_seen`).
pub fn peer_info(peer: &str) -> Value {
    json!({
        "peer_id": peer,
        "name": format!("{peer}'s rig"),
        "public_key": key_for(peer),
        "nat_type": "unknown",
        "public_ip": "unknown",
        "public_port": 0,
        "local_ip": "192.168.1.20",
        "local_port": 51820,
        "last_seen": "2025-11-24T16:00:00.123456"
    })
}

/// The process's rustls provider, for the tests' own reqwest clients: the
/// client library builds reqwest without one (`rustls-no-provider`), and
/// features are shared across the workspace.
pub fn install_tls_provider() {
    // Already installed by an earlier test: that one serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
