//! Several real `lanrage-control serve` processes on one PostgreSQL
//! database: concurrent joins through both, events and signals crossing
//! instances, and the cleanup loop running on both at once.
//!
//! Needs PostgreSQL (`LANRAGE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and its `createdb` /
//! `dropdb` commands; skips with a message without them, unless
//! `LANRAGE_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn admin_url() -> String {
    std::env::var("LANRAGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own, dropped at the end.
struct Database {
    name: String,
}

impl Database {
    fn create() -> Option<Self> {
        let name = format!("lanrage_instances_{}", std::process::id());
        let created = Command::new("createdb")
            .args(["--maintenance-db", &admin_url(), &name])
            .output();
        match created {
            Ok(output) if output.status.success() => Some(Self { name }),
            failure => {
                let why = match failure {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("LANRAGE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("PostgreSQL is required but a database cannot be created: {why}");
                }
                eprintln!("SKIPPED: several instances need PostgreSQL and createdb: {why}");
                None
            }
        }
    }

    fn url(&self) -> String {
        let (base, _) = admin_url()
            .rsplit_once('/')
            .map(|(b, d)| (b.to_owned(), d.to_owned()))
            .unwrap();
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("dropdb")
            .args(["--maintenance-db", &admin_url(), "--force", &self.name])
            .output();
    }
}

/// A server process and its base URL.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn start(database_url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lanrage-control"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rate-limit",
                "off",
                "--peer-timeout-secs",
                "4",
                "--cleanup-interval-secs",
                "1",
                "--heartbeat-flush-ms",
                "200",
                "--log-format",
                "json",
            ])
            .env("LANRAGE_DATABASE_URL", database_url)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().expect("the server exited").unwrap();
            let log: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(address) = log["address"].as_str() {
                break address.to_owned();
            }
        };
        // Keep draining the log so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base: format!("http://{address}"),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer(peer_id: &str) -> Value {
    json!({"peer_id": peer_id, "name": peer_id, "public_key": "A".repeat(43) + "=",
           "nat_type": "unknown", "public_ip": "unknown", "public_port": 0,
           "local_ip": "10.0.0.2", "local_port": 51820})
}

/// Sends `request`; its answer's JSON body.
async fn answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn register(http: &reqwest::Client, base: &str, peer_id: &str) -> String {
    let reply = answer(http.post(format!("{base}/auth/register?peer_id={peer_id}"))).await;
    reply["token"].as_str().unwrap().to_owned()
}

/// Sends `message` as a text frame.
async fn send_json<S>(sink: &mut S, message: Value)
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next text frame of a socket, as JSON.
async fn next<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("no frame within 20 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_share_one_database() {
    let Some(database) = Database::create() else {
        return;
    };
    let a = Instance::start(&database.url());
    let b = Instance::start(&database.url());
    // The client library builds reqwest without a rustls provider; this
    // test's own client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // Alice hosts through A and listens on B.
    let alice = register(&http, &a.base, "alice").await;
    let create = json!({"name": "LAN", "host_peer_info": peer("alice")});
    let created = answer(
        http.post(format!("{}/parties", a.base))
            .bearer_auth(&alice)
            .json(&create),
    )
    .await;
    let party = created["party_id"].as_str().unwrap().to_owned();
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", b.base.replacen("http", "ws", 1)))
            .await
            .unwrap();
    let (mut sink, mut socket) = socket.split();
    send_json(
        &mut sink,
        json!({"type": "auth", "peer_id": "alice", "token": alice}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "auth_ok");

    // Twenty peers join at once, half through each instance.
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(register(&http, &a.base, &format!("guest{i}")).await);
    }
    let joins = tokens.iter().enumerate().map(|(i, token)| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let http = &http;
        let party = &party;
        async move {
            let join = json!({"party_id": party, "peer_info": peer(&format!("guest{i}"))});
            answer(
                http.post(format!("{base}/parties/{party}/join"))
                    .bearer_auth(token)
                    .json(&join),
            )
            .await
        }
    });
    let joined = futures_util::future::join_all(joins).await;
    let ips: HashSet<&str> = joined
        .iter()
        .map(|j| j["virtual_ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 20, "virtual IPs unique across instances");

    // Alice's socket on B hears every join, in order, once.
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        let event = next(&mut socket).await;
        if event["type"] == "peer_joined" {
            seqs.push(event["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, (2..=21).collect::<Vec<_>>());

    // A signal sent through A reaches her socket on B.
    let sent = http
        .post(format!("{}/parties/{party}/signals", a.base))
        .bearer_auth(&tokens[0])
        .json(&json!({"to_peer_id": "alice", "signal_data": {"type": "offer"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let signal = loop {
        let message = next(&mut socket).await;
        if message["type"] == "signal" {
            break message;
        }
    };
    assert_eq!(signal["from_peer_id"], "guest0");

    // Only Alice keeps beating: both instances' cleanup loops remove the
    // twenty silent guests, each exactly once, in order.
    let mut left = Vec::new();
    while left.len() < 20 {
        let heartbeat = json!({"type": "heartbeat", "party_id": party, "peer_id": "alice"});
        send_json(&mut sink, heartbeat).await;
        let message = next(&mut socket).await;
        if message["type"] == "peer_left" {
            left.push(message["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(left, (22..=41).collect::<Vec<_>>());
    let read = answer(
        http.get(format!("{}/parties/{party}", b.base))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(read["party"]["peers"].as_object().unwrap().len(), 1);
    drop((a, b));
    drop(database);
}
