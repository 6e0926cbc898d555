//! Opening a socket: the socket URL of a server URL, the upgrade, and the
//! `auth` exchange, with one retry on a fresh token when the server refuses
//! the one held. Also the JSON text framing both directions share.

use futures_util::{SinkExt, StreamExt};
use lanrage_proto::{ClientMessage, PeerId, ServerMessage};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message},
};

use super::WsConfig;
use crate::{
    control::ControlPlane,
    error::{ClientError, Result, TransportError, TransportKind, is_tls_failure},
    http::HttpClient,
};

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The socket URL of a server URL: `http` becomes `ws`, `https` becomes
/// `wss`, and `/ws` is appended to whatever path the URL has.
///
/// ```
/// assert_eq!(
///     lanrage_client::ws_url("https://control.example/lanrage/").unwrap(),
///     "wss://control.example/lanrage/ws"
/// );
/// ```
pub fn ws_url(server_url: &str) -> Result<String> {
    let trimmed = server_url.trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        ("wss://", rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        ("ws://", rest)
    } else {
        return Err(ClientError::Config(format!(
            "server URL {server_url:?} must start with http:// or https://"
        )));
    };
    if rest.is_empty() {
        return Err(ClientError::Config(format!(
            "server URL {server_url:?} has no host"
        )));
    }
    Ok(format!("{scheme}{rest}/ws"))
}

/// Opens a socket and authenticates it. A refused token is forgotten and
/// the socket tried once more with a fresh one.
pub(super) async fn open(
    http: &HttpClient,
    url: &str,
    config: &WsConfig,
) -> Result<(Socket, PeerId)> {
    let mut refused_once = false;
    loop {
        let token = http.bearer().await?;
        match open_once(http, url, config, &token).await {
            Err(ClientError::AuthRefused(reason)) if !refused_once => {
                tracing::info!(%reason, "socket token refused; registering again");
                http.invalidate_token(&token).await;
                refused_once = true;
            }
            Err(ClientError::AuthRefused(reason)) => {
                http.invalidate_token(&token).await;
                return Err(ClientError::AuthRefused(reason));
            }
            other => return other,
        }
    }
}

async fn open_once(
    http: &HttpClient,
    url: &str,
    config: &WsConfig,
    token: &str,
) -> Result<(Socket, PeerId)> {
    let websocket = |source| socket_error(url, source);
    let connector = match http.socket_tls() {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let (mut socket, _) = tokio::time::timeout(
        config.connect_timeout,
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)),
    )
    .await
    .map_err(|_| ClientError::Timeout {
        what: format!("connecting to {url}"),
        after: config.connect_timeout,
    })?
    .map_err(websocket)?;
    let peer_id = ControlPlane::peer_id(http).clone();
    let auth = ClientMessage::Auth {
        peer_id: Some(peer_id.clone()),
        token: token.to_owned(),
        request_id: Some(json!("auth")),
    };
    socket
        .send(Message::text(encode(&auth)))
        .await
        .map_err(websocket)?;
    let answer = tokio::time::timeout(config.auth_timeout, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => match decode(&text) {
                    Some(ServerMessage::AuthOk { peer_id, .. }) => return Ok(peer_id),
                    Some(ServerMessage::Error { message, .. }) => {
                        return Err(ClientError::AuthRefused(message));
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::AuthRefused(format!(
                        "the server closed the socket before auth_ok{}",
                        frame
                            .map(|f| format!(" ({} {})", f.code, f.reason))
                            .unwrap_or_default()
                    )));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(websocket(e)),
                None => {
                    return Err(ClientError::AuthRefused(
                        "the server closed the socket before auth_ok".into(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout {
        what: "authenticating the socket".into(),
        after: config.auth_timeout,
    })??;
    Ok((socket, answer))
}

/// A socket failure as the client's error, classified like an HTTP one.
pub(super) fn socket_error(url: &str, source: tungstenite::Error) -> ClientError {
    let kind = if is_tls_failure(&source) {
        TransportKind::Tls
    } else if matches!(source, tungstenite::Error::Io(_)) {
        TransportKind::Connect
    } else {
        TransportKind::Interrupted
    };
    ClientError::WebSocket {
        url: url.to_owned(),
        kind,
        source: TransportError::new(source),
    }
}

/// Sends one message as a text frame.
pub(super) async fn send(
    socket: &mut Socket,
    message: &ClientMessage,
) -> std::result::Result<(), tungstenite::Error> {
    socket.send(Message::text(encode(message))).await
}

fn encode(message: &ClientMessage) -> String {
    // Our own messages always serialize: every field is a plain value.
    serde_json::to_string(message).unwrap_or_default()
}

/// A server frame as a typed message; types this client does not know are
/// skipped, as the protocol asks.
pub(super) fn decode(text: &str) -> Option<ServerMessage> {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::debug!(%error, frame = %text.chars().take(200).collect::<String>(), "ignoring a server frame");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_becomes_ws_and_https_becomes_wss() {
        assert_eq!(
            ws_url("http://127.0.0.1:8667").unwrap(),
            "ws://127.0.0.1:8667/ws"
        );
        assert_eq!(ws_url("https://cp.example").unwrap(), "wss://cp.example/ws");
    }

    #[test]
    fn the_path_is_kept_and_trailing_slashes_dropped() {
        assert_eq!(
            ws_url("https://cp.example/lanrage").unwrap(),
            "wss://cp.example/lanrage/ws"
        );
        assert_eq!(
            ws_url("http://cp.example/lanrage//").unwrap(),
            "ws://cp.example/lanrage/ws"
        );
        assert_eq!(ws_url("http://[::1]:80/").unwrap(), "ws://[::1]:80/ws");
    }

    #[test]
    fn other_schemes_and_missing_hosts_are_configuration_errors() {
        for url in [
            "ftp://cp.example",
            "cp.example",
            "ws://cp.example",
            "http://",
            "https:///",
            "",
        ] {
            assert!(
                matches!(ws_url(url), Err(ClientError::Config(_))),
                "{url:?} accepted"
            );
        }
    }

    #[test]
    fn unknown_or_malformed_frames_are_skipped() {
        assert_eq!(decode(r#"{"type":"something_new","x":1}"#), None);
        assert_eq!(decode("not json"), None);
        assert_eq!(
            decode(r#"{"type":"ack","status":"ok"}"#),
            Some(ServerMessage::Ack {
                status: "ok".into(),
                request_id: None
            })
        );
    }

    #[test]
    fn requests_go_out_as_tagged_json() {
        let text = encode(&ClientMessage::Resume {
            party_id: lanrage_proto::PartyId::parse("ABC123").unwrap(),
            after_seq: 7,
            request_id: Some(json!("r")),
        });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "resume");
        assert_eq!(value["after_seq"], 7);
        assert_eq!(value["request_id"], "r");
    }
}
