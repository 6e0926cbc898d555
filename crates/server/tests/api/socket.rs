//! A WebSocket test client over tokio-tungstenite.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lanrage_proto::ServerMessage;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::CloseFrame},
};

use crate::helpers::TestApp;

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
        socket
            .send(json!({"type": "auth", "peer_id": peer, "token": token}))
            .await;
        let ok = socket.recv().await;
        assert_eq!(ok["type"], "auth_ok", "{ok}");
        assert_eq!(ok["peer_id"], peer);
        socket
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
