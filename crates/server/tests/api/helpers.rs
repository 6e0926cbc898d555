//! `spawn_app()` and typed request helpers.

use std::{net::SocketAddr, path::PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_proto::{CreatePartyResponse, ErrorBody, JoinPartyResponse, TokenResponse};
use lanrage_server::{
    Config, Server,
    config::{Secret, Switch},
    service::Service,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub const RELAY_KEY: &str = "relay-operator-secret";

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub service: Service,
    pub db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last: the database lives in it.
    dir: Option<tempfile::TempDir>,
}

/// Settings for tests: a fresh database, port 0, no rate limiting.
pub fn test_config(db_path: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = Some(format!("sqlite://{}", db_path.display()));
    config.rate_limit = Switch::Off;
    config.relay_key = Some(RELAY_KEY.parse::<Secret>().unwrap());
    config.registration_key = None;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: the server must create it.
    let db_path = dir.path().join("state").join("control.db");
    let mut config = test_config(&db_path);
    configure(&mut config);
    let mut app = start(config, db_path).await;
    app.dir = Some(dir);
    app
}

async fn start(config: Config, db_path: PathBuf) -> TestApp {
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
        stop: Some(stop),
        handle: Some(handle),
        dir: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and starts a new one on the same database.
    pub async fn restart(mut self, configure: impl FnOnce(&mut Config)) -> TestApp {
        self.stop_server().await;
        let mut config = test_config(&self.db_path);
        configure(&mut config);
        let mut app = start(config, self.db_path.clone()).await;
        app.dir = self.dir.take();
        app
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

    /// Registers `host` and creates a party it hosts.
    pub async fn create_party(&self, host: &str) -> (String, CreatePartyResponse) {
        let token = self.register(host).await;
        let created: CreatePartyResponse = self
            .expect(
                Method::POST,
                "/parties",
                Some(&token),
                Some(json!({"name": "Friday LAN", "host_peer_info": peer_info(host)})),
                StatusCode::OK,
            )
            .await;
        (token, created)
    }

    /// Registers `peer` and joins it to `party_id`.
    pub async fn join(&self, party_id: &str, peer: &str) -> (String, JoinPartyResponse) {
        let token = self.register(peer).await;
        let joined = self.join_with(party_id, peer, &token).await;
        (token, joined)
    }

    pub async fn join_with(&self, party_id: &str, peer: &str, token: &str) -> JoinPartyResponse {
        self.expect(
            Method::POST,
            &format!("/parties/{party_id}/join"),
            Some(token),
            Some(json!({"party_id": party_id, "peer_info": peer_info(peer)})),
            StatusCode::OK,
        )
        .await
    }

    pub async fn party_count(&self) -> u64 {
        let info: Value = self
            .expect(Method::GET, "/", None, None, StatusCode::OK)
            .await;
        info["parties"].as_u64().unwrap()
    }
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
