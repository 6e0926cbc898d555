//! A WebSocket test client over tokio-tungstenite.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lanrage_proto::{CreatePartyResponse, ServerMessage};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::CloseFrame},
};

use crate::helpers::{PartyOfTwo, TestApp};

const WAIT: Duration = Duration::from_secs(5);

pub struct Socket {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A connected, unauthenticated socket.
    pub async fn ws(&self) -> Socket {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .unwrap();
        Socket { stream }
    }

    /// A socket authenticated by an `auth` message.
    pub async fn ws_as(&self, peer: &str, token: &str) -> Socket {
        let mut socket = self.ws().await;
        socket.authenticate(peer, token).await;
        socket
    }

    /// Registers `peer` and opens a socket authenticated as it.
    pub async fn registered_socket(&self, peer: &str) -> (String, Socket) {
        let token = self.register(peer).await;
        let socket = self.ws_as(peer, &token).await;
        (token, socket)
    }

    /// Registers `host`, creates a party it hosts, and opens its socket
    /// (after the creation, so the socket has seen nothing yet).
    pub async fn host_with_socket(&self, host: &str) -> (String, CreatePartyResponse, Socket) {
        let (token, created) = self.create_party(host).await;
        let socket = self.ws_as(host, &token).await;
        (token, created, socket)
    }

    /// [`TestApp::party_and_outsider`], then the outsider's socket: the
    /// party's id, the outsider's token and socket.
    pub async fn party_and_outsider_with_socket(&self, outsider: &str) -> (String, String, Socket) {
        let (party, token) = self.party_and_outsider(outsider).await;
        let socket = self.ws_as(outsider, &token).await;
        (party, token, socket)
    }

    /// [`TestApp::party_of_two`], then Alice's and Bob's sockets.
    pub async fn party_of_two_with_sockets(&self) -> (PartyOfTwo, Socket, Socket) {
        let party = self.party_of_two().await;
        let alice = self.ws_as("alice", &party.alice).await;
        let bob = self.ws_as("bob", &party.bob).await;
        (party, alice, bob)
    }

    /// Joins each of `peers` to `party` over HTTP and opens a socket for
    /// it. Each socket is handed back with the later joins it saw already
    /// read, so every socket has nothing pending.
    pub async fn members_with_sockets(&self, party: &str, peers: &[String]) -> Vec<Socket> {
        let mut sockets = Vec::new();
        for peer in peers {
            let (token, _) = self.join(party, peer).await;
            sockets.push(self.ws_as(peer, &token).await);
        }
        for (i, socket) in sockets.iter_mut().enumerate() {
            for peer in &peers[i + 1..] {
                socket.expect_joined(peer).await;
            }
        }
        sockets
    }

    /// A socket authenticated by the upgrade's `Authorization` header.
    pub async fn ws_with_header(&self, token: &str) -> Socket {
        let mut request = self.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Socket { stream }
    }

    /// A socket whose receive buffer is tiny, so the server's writes back up.
    pub async fn ws_slow(&self) -> Socket {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(self.addr).await.unwrap();
        let (stream, _) =
            tokio_tungstenite::client_async(self.ws_url(), MaybeTlsStream::Plain(tcp))
                .await
                .unwrap();
        Socket { stream }
    }
}

impl Socket {
    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.unwrap();
    }

    /// The next text frame, checked against the contract's types.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("no frame within 5 s")
                .expect("socket ended")
                .expect("socket failed");
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    // Every frame must parse as a server message, with
                    // Party and Peer objects holding exactly their keys.
                    serde_json::from_value::<ServerMessage>(value.clone())
                        .unwrap_or_else(|e| panic!("{text} is not a server message: {e}"));
                    return value;
                }
                Message::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of type `kind`, failing on any other text frame.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], kind, "expected {kind}, got {message}");
        message
    }

    /// Sends `auth` and expects `auth_ok` for `peer`.
    pub async fn authenticate(&mut self, peer: &str, token: &str) {
        self.send(json!({"type": "auth", "peer_id": peer, "token": token}))
            .await;
        let ok = self.recv().await;
        assert_eq!(ok["type"], "auth_ok", "{ok}");
        assert_eq!(ok["peer_id"], peer);
    }

    /// A `heartbeat` for `peer` in `party`, without a request id.
    pub async fn send_heartbeat(&mut self, party: &str, peer: &str) {
        self.send(json!({"type": "heartbeat", "party_id": party, "peer_id": peer}))
            .await;
    }

    /// A `resume` of `party` after `after_seq`, without a request id.
    pub async fn send_resume(&mut self, party: &str, after_seq: u64) {
        self.send(json!({"type": "resume", "party_id": party, "after_seq": after_seq}))
            .await;
    }

    /// A `signal` from `from` to `to` in `party`, without a request id.
    pub async fn send_signal(&mut self, party: &str, from: &str, to: &str, data: Value) {
        self.send(
            json!({"type": "signal", "party_id": party, "from_peer_id": from,
                         "to_peer_id": to, "signal_data": data}),
        )
        .await;
    }

    /// The next frame, which must be an `error` whose message contains
    /// `text`.
    pub async fn expect_error_about(&mut self, text: &str) -> Value {
        let error = self.expect("error").await;
        assert!(
            error["message"].as_str().unwrap().contains(text),
            "expected an error about {text:?}, got {error}"
        );
        error
    }

    /// The next frame, which must be `peer_joined` about `peer`.
    pub async fn expect_joined(&mut self, peer: &str) -> Value {
        let event = self.expect("peer_joined").await;
        assert_eq!(event["peer"]["peer_id"], peer, "{event}");
        event
    }

    /// The next frame, which must be `peer_left` about `peer`.
    pub async fn expect_left(&mut self, peer: &str) -> Value {
        let event = self.expect("peer_left").await;
        assert_eq!(event["peer_id"], peer, "{event}");
        event
    }

    /// The reply to this socket's own create/join: the event of that same
    /// change (`peer_joined` about itself, or a `party_update` without
    /// `virtual_ip`) may come before it, with the same seq.
    pub async fn expect_party_reply(&mut self) -> Value {
        loop {
            let message = self.recv().await;
            if message["type"] == "party_update" && message["virtual_ip"].is_string() {
                return message;
            }
            assert!(
                matches!(
                    message["type"].as_str(),
                    Some("peer_joined" | "party_update")
                ),
                "expected the reply, got {message}"
            );
        }
    }

    /// Asserts no text frame arrives within `duration`.
    pub async fn expect_silence(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected frame {text}"),
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns its close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("socket not closed within 10 s")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}
