//! `GET /ws`: the real-time channel. Members hear of every change to their
//! party the moment it is committed, and exchange signals without polling.

mod connection;
pub mod hub;

use axum::{
    extract::{State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{
    AppState,
    error::ApiError,
    extract::bearer_header,
    openapi::{BadUpgrade, NotUpgradable, ServiceErrors},
};
use connection::HeaderAuth;

/// Initial read and write buffer of a socket.
const SOCKET_BUFFER: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Open the WebSocket
///
/// Upgrades to the real-time channel (protocol in docs/websocket.md). The
/// token goes in an `Authorization: Bearer` header or in the first `auth`
/// message; a bad header token is answered on the socket, with an `error`
/// message and a close frame.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "realtime",
    security((), ("peer_token" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, response = inline(BadUpgrade)),
        (status = 426, response = inline(NotUpgradable)),
        ServiceErrors,
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let config = state.service.config();
    let Some(slot) = state.hub.reserve(config.ws_max_sockets) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open sockets on this server; try again shortly",
        )
        .into_response();
    };
    let header = match bearer_header(&headers) {
        None => HeaderAuth::None,
        Some(token) => match state.service.authenticate(token).await {
            Ok(peer_id) => HeaderAuth::Valid(peer_id),
            Err(error) => HeaderAuth::Invalid(ApiError::from(error).detail),
        },
    };
    let limit = config.ws_max_message_bytes;
    upgrade
        // Small buffers: most sockets idle, and 10,000 of them must fit in
        // a few hundred MiB (the defaults are 128 KiB each way).
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| connection::run(socket, state, header, slot))
}
