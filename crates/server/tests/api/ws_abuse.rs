//! The WebSocket channel against hostile clients: raw frames and raw TCP
//! sockets (RFC 6455 close codes, clients that never read or never answer
//! pings), the per-address cap on unauthenticated sockets, and a socket's
//! authority ending with its token.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{TestApp, peer_info, spawn_app, spawn_app_with, spawn_rate_limited_app};

/// A client speaking WebSocket byte by byte, so it can break the protocol
/// and choose when (and whether) it reads.
struct Raw {
    tcp: TcpStream,
}

/// A frame as the server sent it.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap()
    }

    /// The close code and reason of a close frame.
    fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (code, String::from_utf8(self.payload[2..].to_vec()).unwrap())
    }
}

/// A masked client frame (RFC 6455 section 5.2).
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut bytes = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => bytes.push(0x80 | n as u8),
        n if n <= 0xffff => {
            bytes.push(0x80 | 126);
            bytes.extend((n as u16).to_be_bytes());
        }
        n => {
            bytes.push(0x80 | 127);
            bytes.extend((n as u64).to_be_bytes());
        }
    }
    bytes.extend(mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    bytes
}

impl Raw {
    /// Upgrades a fresh connection; a receive buffer given is set before
    /// connecting, so the server's writes back up when this never reads.
    async fn connect(app: &TestApp, recv_buffer: Option<u32>, token: Option<&str>) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket.connect(app.addr).await.unwrap();
        let mut raw = Self { tcp };
        let (status, _) = raw.upgrade(app, token).await;
        assert_eq!(status, 101);
        raw
    }

    /// Sends the upgrade request; the status and head of the answer.
    async fn upgrade(&mut self, app: &TestApp, token: Option<&str>) -> (u16, String) {
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             {authorization}\r\n",
            app.addr
        );
        self.tcp.write_all(request.as_bytes()).await.unwrap();
        // Byte by byte, so no frame after the head is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(Duration::from_secs(5), self.tcp.read_u8())
                .await
                .expect("no upgrade answer within 5 s")
                .unwrap();
            head.push(byte);
        }
        let head = String::from_utf8(head).unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head)
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, message: Value) {
        self.send_bytes(&frame(0x1, true, message.to_string().as_bytes()))
            .await;
    }

    /// The next frame; `None` once the connection ends.
    async fn frame(&mut self) -> Option<Frame> {
        self.frame_within(Duration::from_secs(10)).await
    }

    async fn frame_within(&mut self, within: Duration) -> Option<Frame> {
        let read = async {
            let mut head = [0u8; 2];
            self.tcp.read_exact(&mut head).await.ok()?;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.tcp.read_u16().await.ok()?),
                127 => self.tcp.read_u64().await.ok()?,
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.tcp.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                opcode: head[0] & 0x0f,
                payload,
            })
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("no frame within {within:?}"))
    }

    /// The next text frame as JSON, skipping pings.
    async fn recv(&mut self) -> Value {
        loop {
            let frame = self.frame().await.expect("connection ended");
            match frame.opcode {
                0x1 => return frame.json(),
                0x9 | 0xa => {}
                _ => panic!("expected a text frame, got {frame:?}"),
            }
        }
    }

    /// Authenticates with an `auth` message.
    /// A fresh connection, upgraded and authenticated as `peer`.
    async fn authenticated(app: &TestApp, peer: &str, token: &str) -> Self {
        let mut raw = Self::connect(app, None, None).await;
        raw.auth(peer, token).await;
        raw
    }

    async fn auth(&mut self, peer: &str, token: &str) {
        self.send(json!({"type": "auth", "peer_id": peer, "token": token}))
            .await;
        assert_eq!(self.recv().await["type"], "auth_ok");
    }

    /// Reads to the close frame: its code and reason, and the text frames
    /// before it.
    async fn close(&mut self) -> ((u16, String), Vec<Value>) {
        let mut texts = Vec::new();
        loop {
            let frame = self
                .frame()
                .await
                .expect("connection ended without a close frame");
            match frame.opcode {
                0x8 => return (frame.close(), texts),
                0x1 => texts.push(frame.json()),
                _ => {}
            }
        }
    }

    /// The client's port: the server's side of this connection has it as
    /// its remote port.
    fn port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }
}

/// The TCP state (as in /proc/net/tcp: 01 established) and send queue of
/// the server's side of the connection from `client_port`, if it still
/// exists.
fn server_side(app: &TestApp, client_port: u16) -> Option<(u8, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port =
        |address: &str| u16::from_str_radix(address.rsplit(':').next().unwrap(), 16).unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (port(fields[1]) == app.addr.port() && port(fields[2]) == client_port).then(|| {
            let state = u8::from_str_radix(fields[3], 16).unwrap();
            let send_queue = u64::from_str_radix(fields[4].split(':').next().unwrap(), 16).unwrap();
            (state, send_queue)
        })
    })
}

/// Waits until the server's side of the connection holds nothing: gone,
/// or closed with an empty send queue (not merely closing behind a send
/// buffer the client never reads).
async fn wait_released(app: &TestApp, client_port: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match server_side(app, client_port) {
            None => return started.elapsed(),
            Some((state, send_queue)) if state != 0x01 && send_queue == 0 => {
                return started.elapsed();
            }
            Some(held) => assert!(
                started.elapsed() < within,
                "the server's side is still {held:?} (state, send queue) after {within:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- auth with a null or absent peer_id ---

#[tokio::test]
async fn auth_without_a_peer_id_or_with_null_is_the_tokens_peer() {
    let app = spawn_app().await;
    let token = app.register("alice").await;

    for auth in [
        json!({"type": "auth", "peer_id": null, "token": token, "request_id": 1}),
        json!({"type": "hello", "token": token, "request_id": 2}),
    ] {
        let mut socket = app.ws().await;
        socket.send(auth).await;
        let ok = socket.expect("auth_ok").await;
        assert_eq!(ok["peer_id"], "alice", "{ok}");
    }

    // Someone else's peer_id with this token is still refused.
    let mut someone_else = Raw::connect(&app, None, None).await;
    someone_else
        .send(json!({"type": "auth", "peer_id": "bob", "token": token}))
        .await;
    let ((code, _), texts) = someone_else.close().await;
    assert_eq!(code, 1008);
    assert_eq!(texts[0]["type"], "error");
}

// --- RFC 6455 close codes ---

#[tokio::test]
async fn a_close_the_client_starts_ends_orderly_not_with_a_reset() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let mut socket = Raw::authenticated(&app, "alice", &token).await;

    // Close 1000, masked as a client must.
    socket
        .send_bytes(&frame(0x8, true, &1000u16.to_be_bytes()))
        .await;

    let ((code, _), _) = socket.close().await;
    assert_eq!(code, 1000);
    // Then the server closes its side: an end of stream, not a reset
    // that would discard the close answer on some clients.
    let mut rest = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.tcp.read(&mut rest))
        .await
        .expect("the server kept the connection open");
    assert!(matches!(read, Ok(0)), "{read:?}");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let mut before_auth = Raw::connect(&app, None, None).await;
    let mut after_auth = Raw::authenticated(&app, "alice", &token).await;

    for raw in [&mut before_auth, &mut after_auth] {
        raw.send_bytes(&frame(0x1, true, b"{\"type\": \"\xff\xfe\"}"))
            .await;
        let ((code, reason), _) = raw.close().await;
        assert_eq!(code, 1007, "{reason}");
        assert!(reason.contains("UTF-8"), "{reason}");
    }
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let app = spawn_app().await;
    let token = app.register("alice").await;
    let unmasked = {
        let mut bytes = vec![0x81, 2];
        bytes.extend(b"{}");
        bytes
    };
    for violation in [
        unmasked,
        // A continuation with no message to continue.
        frame(0x0, true, b"{}"),
        // A reserved data opcode.
        frame(0x3, true, b"{}"),
        // A fragmented ping.
        frame(0x9, false, b""),
    ] {
        let mut raw = Raw::authenticated(&app, "alice", &token).await;

        raw.send_bytes(&violation).await;

        let ((code, reason), _) = raw.close().await;
        assert_eq!(code, 1002, "{violation:02x?}: {reason}");
    }
}

#[tokio::test]
async fn frames_and_messages_over_the_limit_close_with_1009() {
    let app = spawn_app_with(|c| c.ws_max_message_bytes = 4096).await;
    let token = app.register("alice").await;

    // One frame announced larger than the limit: refused on its header.
    let mut big_frame = Raw::authenticated(&app, "alice", &token).await;
    let mut header = frame(0x1, true, b"");
    header[1] = 0x80 | 127;
    header.splice(2..2, 100_000u64.to_be_bytes());
    big_frame.send_bytes(&header).await;
    let ((code, reason), _) = big_frame.close().await;
    assert_eq!(code, 1009, "{reason}");

    // A message of frames each under the limit, together over it.
    let mut big_message = Raw::authenticated(&app, "alice", &token).await;
    let chunk = "x".repeat(3000);
    big_message
        .send_bytes(&frame(0x1, false, chunk.as_bytes()))
        .await;
    big_message
        .send_bytes(&frame(0x0, true, chunk.as_bytes()))
        .await;
    let ((code, reason), _) = big_message.close().await;
    assert_eq!(code, 1009, "{reason}");
}

#[tokio::test]
async fn policy_closes_are_1008_with_their_reason() {
    let app = spawn_rate_limited_app(|c| {
        c.ws_auth_timeout_secs = 1;
        c.ws_messages_per_sec = 2;
    })
    .await;
    let token = app.register("alice").await;

    let mut refused = Raw::connect(&app, None, None).await;
    refused
        .send(json!({"type": "auth", "peer_id": "alice", "token": "forged"}))
        .await;
    let ((code, reason), texts) = refused.close().await;
    assert_eq!((code, reason.as_str()), (1008, "authentication failed"));
    assert_eq!(texts[0]["type"], "error");

    let mut silent = Raw::connect(&app, None, None).await;
    let ((code, reason), texts) = silent.close().await;
    assert_eq!((code, reason.as_str()), (1008, "not authenticated in time"));
    assert_eq!(texts[0]["type"], "error");

    // Far over the message rate, again and again: a flood.
    let mut flood = Raw::authenticated(&app, "alice", &token).await;
    let heartbeat = frame(
        0x1,
        true,
        json!({"type": "heartbeat", "party_id": "none", "peer_id": "alice"})
            .to_string()
            .as_bytes(),
    );
    flood.send_bytes(&heartbeat.repeat(100)).await;
    let ((code, reason), _) = flood.close().await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("flood"), "{reason}");
}

// --- unauthenticated sockets ---

#[tokio::test]
async fn unauthenticated_sockets_are_capped_per_address() {
    let app = spawn_app_with(|c| c.ws_max_unauthenticated_per_ip = 3).await;
    let token = app.register("alice").await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(Raw::connect(&app, None, None).await);
    }

    let mut fourth = Raw {
        tcp: TcpStream::connect(app.addr).await.unwrap(),
    };
    let (status, head) = fourth.upgrade(&app, None).await;
    assert_eq!(status, 429, "{head}");
    assert!(head.to_lowercase().contains("retry-after"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; length];
    fourth.tcp.read_exact(&mut body).await.unwrap();
    let detail: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        detail["detail"]
            .as_str()
            .unwrap()
            .contains("not authenticated"),
        "{detail}"
    );

    // A socket that authenticates stops counting; one authenticated by its
    // upgrade's header never counted.
    waiting[0].auth("alice", &token).await;
    let _fifth = Raw::connect(&app, None, None).await;
    let _by_header = Raw::connect(&app, None, Some(&token)).await;
    app.expect_metric(
        r#"lanrage_websocket_upgrades_refused_total{reason="unauthenticated_per_ip"} 1"#,
    )
    .await;
}

#[tokio::test]
async fn unauthenticated_sockets_do_not_take_member_slots() {
    let app = spawn_app_with(|c| {
        c.ws_max_sockets = 2;
        c.ws_max_unauthenticated_per_ip = 10;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(Raw::connect(&app, None, None).await);
    }

    // Five sockets wait unauthenticated, yet both member slots are free.
    let _alice = app.ws_as("alice", &alice).await;
    let _bob = app.ws_as("bob", &bob).await;

    // With both taken, the next socket to authenticate is told to come back.
    idle[0]
        .send(json!({"type": "auth", "peer_id": "carol", "token": carol, "request_id": 3}))
        .await;
    let ((code, reason), texts) = idle[0].close().await;
    assert_eq!(code, 1013, "{reason}");
    assert_eq!(
        (texts[0]["type"].as_str(), texts[0]["request_id"].as_i64()),
        (Some("error"), Some(3))
    );
    // And new upgrades get 503 while the server is full of members.
    let mut late = Raw {
        tcp: TcpStream::connect(app.addr).await.unwrap(),
    };
    let (status, head) = late.upgrade(&app, None).await;
    assert_eq!(status, 503, "{head}");
}

// --- a socket's authority ends with its token ---

#[tokio::test]
async fn a_socket_is_closed_with_4401_the_moment_its_token_expires() {
    let app = spawn_app_with(|c| c.token_ttl_secs = 2).await;
    let issued = Instant::now();
    let token = app.register("alice").await;
    let mut socket = Raw::authenticated(&app, "alice", &token).await;
    socket
        .send(json!({"type": "register_party", "name": "Friday LAN", "host_peer": peer_info("alice")}))
        .await;
    // The reply to the caller's own request (its event may come first).
    while !socket.recv().await["virtual_ip"].is_string() {}

    // Nothing is sent: the server ends the socket by itself at expiry.
    let ((code, reason), texts) = socket.close().await;
    let after = issued.elapsed();

    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(
        after < Duration::from_millis(3500),
        "closed {after:?} after issue"
    );
    let last = texts.last().unwrap();
    assert_eq!(last["type"], "error", "{texts:?}");
    assert!(last["message"].as_str().unwrap().contains("expired"));
    // The party is still there, untouched by the ended socket.
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn nothing_a_socket_sends_after_its_token_expired_is_acted_on() {
    let app = spawn_app_with(|c| c.token_ttl_secs = 2).await;
    let token = app.register("alice").await;
    let mut socket = Raw::authenticated(&app, "alice", &token).await;
    socket
        .send(json!({"type": "register_party", "name": "One", "host_peer": peer_info("alice")}))
        .await;
    let party = loop {
        let message = socket.recv().await;
        if message["virtual_ip"].is_string() {
            break message["party"]["party_id"].as_str().unwrap().to_owned();
        }
    };

    // Requests keep coming across the expiry instant, without reading.
    let heartbeat =
        json!({"type": "heartbeat", "party_id": party, "peer_id": "alice", "request_id": "beat"});
    let register = json!({"type": "register_party", "name": "Two", "host_peer": peer_info("alice"), "request_id": "again"});
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2600) {
        if socket
            .tcp
            .write_all(&frame(0x1, true, heartbeat.to_string().as_bytes()))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = socket
        .tcp
        .write_all(&frame(0x1, true, register.to_string().as_bytes()))
        .await;

    let ((code, _), texts) = socket.close().await;
    assert_eq!(code, 4401);
    // After the error that ends it, nothing: no ack, no party_update.
    let end = texts.iter().position(|t| t["type"] == "error").unwrap();
    assert_eq!(end, texts.len() - 1, "{texts:?}");
    assert!(
        texts.iter().all(|t| t["request_id"] != "again"),
        "{texts:?}"
    );
    assert_eq!(app.party_count().await, 1);
}

#[tokio::test]
async fn a_revoked_token_ends_its_sockets_within_a_ping_interval() {
    let app = spawn_app_with(|c| c.ws_ping_interval_secs = 1).await;
    let token = app.register("alice").await;
    let mut socket = app.ws_as("alice", &token).await;

    // Revocation deletes the token's row (maybe on another instance).
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", app.db_path.display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let deleted = sqlx::query("DELETE FROM tokens WHERE token_hash = ?")
            .bind(lanrage_server::service::token_hash(&token))
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(deleted.rows_affected(), 1);
    }
    let revoked = Instant::now();

    let error = socket.expect("error").await;
    let frame = socket.expect_close().await.expect("a close frame");

    assert!(
        error["message"].as_str().unwrap().contains("revoked"),
        "{error}"
    );
    assert_eq!(u16::from(frame.code), 4401);
    assert!(
        revoked.elapsed() < Duration::from_millis(2500),
        "{:?}",
        revoked.elapsed()
    );
}

// --- clients that do not read ---

#[tokio::test]
async fn a_socket_that_never_answers_pings_is_closed_and_let_go() {
    let app = spawn_app_with(|c| c.ws_ping_interval_secs = 1).await;
    let token = app.register("alice").await;
    let mut raw = Raw::connect(&app, None, None).await;
    raw.send(json!({"type": "auth", "peer_id": "alice", "token": token}))
        .await;

    // Never reading means never answering a ping. Two intervals on, the
    // server has given up: its close frame is already there.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let close = loop {
        let frame = raw
            .frame_within(Duration::from_millis(200))
            .await
            .expect("connection ended without a close frame");
        if frame.opcode == 0x8 {
            break frame.close();
        }
    };
    let (code, reason) = close;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("ping"), "{reason}");

    // And the connection is let go, not held open.
    wait_released(&app, raw.port(), Duration::from_secs(10)).await;
    app.expect_metric(r#"lanrage_websocket_closes_total{reason="unresponsive"} 1"#)
        .await;
}

#[tokio::test]
async fn a_slow_readers_connection_is_aborted_not_held() {
    let app = spawn_app_with(|c| c.ws_send_queue = 16).await;
    let (alice, party) = app.host_party("alice").await;
    let bob = app.register("bob").await;
    // Big party updates: a party of 30 members.
    let mut members = Vec::new();
    for i in 0..28 {
        members.push(app.join(&party, &format!("member{i}")).await.0);
    }
    let mut slow = Raw::connect(&app, Some(4096), None).await;
    slow.auth("bob", &bob).await;
    slow.send(json!({"type": "join_party", "party_id": party, "peer": peer_info("bob")}))
        .await;
    // From here on Bob's client never reads.

    // A member refreshes its info over and over: each is a party_update
    // of the whole party to every member.
    let churn = async {
        let started = Instant::now();
        let mut round = 0u64;
        while app.service.metrics().ws_slow_readers_dropped.get() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never found slow"
            );
            let mut info = peer_info("member0");
            info["name"] = json!(format!("member0 round {round}"));
            round += 1;
            let response = app
                .send(
                    Method::POST,
                    &format!("/parties/{party}/join"),
                    Some(&members[0]),
                    Some(json!({"party_id": party, "peer_info": info})),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    churn.await;

    // The server's side of Bob's connection goes, kernel buffer and all,
    // within the close frame's 5 s and a little.
    wait_released(&app, slow.port(), Duration::from_secs(10)).await;
    assert_eq!(app.service.metrics().ws_slow_readers_dropped.get(), 1);
    // Others are still served.
    let mut fast = app.ws_as("alice", &alice).await;
    app.join(&party, "carol").await;
    assert_eq!(fast.expect("peer_joined").await["peer"]["peer_id"], "carol");
}

#[tokio::test]
async fn a_client_asking_without_reading_holds_little_and_is_dropped() {
    let app = spawn_app().await;
    let (_, party) = app.host_party("alice").await;
    // A party of 30 members: every snapshot is several KiB.
    for i in 0..28 {
        app.join(&party, &format!("member{i}")).await;
    }
    let bob = app.join(&party, "bob").await.0;
    let mut slow = Raw::connect(&app, Some(4096), None).await;
    slow.auth("bob", &bob).await;

    // Snapshot after snapshot asked for, none read.
    let started = Instant::now();
    let mut most_held = 0;
    while app.service.metrics().ws_slow_readers_dropped.get() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never found slow"
        );
        let resume = json!({"type": "resume", "party_id": party, "after_seq": 0});
        let _ = tokio::time::timeout(Duration::from_millis(100), slow.send(resume)).await;
        if let Some((_, send_queue)) = server_side(&app, slow.port()) {
            most_held = most_held.max(send_queue);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The kernel held at most the socket's fixed send buffer for it (the
    // buffer grows to megabytes by itself), and the server found it slow
    // once its backlog stopped draining.
    assert!(
        most_held <= 192 * 1024,
        "the kernel held {most_held} bytes for a client that does not read"
    );
    wait_released(&app, slow.port(), Duration::from_secs(10)).await;
    app.expect_metric(r#"lanrage_websocket_closes_total{reason="slow_reader"} 1"#)
        .await;
}
