//! `GET /ws`: the real-time channel. Members hear of every change to their
//! party the moment it is committed, and exchange signals without polling.

mod connection;
pub mod hub;
mod queue;

use std::sync::Arc;

use axum::{
    Extension,
    extract::{ConnectInfo, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    http::{
        bearer_header, client_address,
        error::ApiError,
        openapi::{BadUpgrade, NotUpgradable, ServiceErrors},
    },
    net::{ClientAddr, ClientKey, Connection},
    service::Service,
};
use connection::HeaderAuth;
use hub::Hub;

/// Initial read buffer of a socket: allocated for every socket, and a
/// client's requests are a few hundred bytes (a larger message grows it).
const READ_BUFFER: usize = 256;
/// Frames written are gathered up to this much before a flush.
const WRITE_BUFFER: usize = 4 * 1024;
/// The kernel's send buffer under a socket (Linux doubles it): events are
/// small, and a client that stops reading pins no more than this in the
/// kernel until it is found slow, instead of the megabytes the buffer
/// grows to by itself.
const SEND_BUFFER: usize = 64 * 1024;

/// What the channel needs: the service it calls, and the hub that routes
/// committed events to sockets.
#[derive(Debug, Clone)]
pub struct Channel {
    pub service: Service,
    pub hub: Arc<Hub>,
}

pub fn router() -> OpenApiRouter<Channel> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Open the WebSocket
///
/// Upgrades to the real-time channel (protocol in docs/websocket.md). The
/// token goes in an `Authorization: Bearer` header or in the first `auth`
/// message; a bad header token is answered on the socket, with an `error`
/// message and a close frame. An address holding too many sockets that
/// have not authenticated yet gets 429; a server whose member slots are all
/// taken, 503.
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
    State(state): State<Channel>,
    headers: HeaderMap,
    address: Option<Extension<ConnectInfo<ClientAddr>>>,
    connection: Option<Extension<Connection>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let config = state.service.config();
    let metrics = state.service.metrics();
    let refused = |reason: &str| {
        metrics
            .ws_upgrades_refused
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    };
    // Member slots are taken at authentication; when none is free now, say
    // so before the upgrade rather than after the client's `auth`.
    if !state.hub.has_member_room(config.ws_max_sockets) {
        refused("full");
        return server_full();
    }
    let header = match bearer_header(&headers) {
        None => HeaderAuth::None,
        Some(token) => match state.service.grant(token).await {
            Ok(grant) => HeaderAuth::Valid(grant),
            Err(error) => HeaderAuth::Invalid(error.client_detail().into_owned()),
        },
    };
    let client = address.map(|Extension(ConnectInfo(ClientAddr(peer)))| {
        ClientKey::of(client_address(&config.trusted_proxies, peer.ip(), &headers))
    });
    let slot = if let HeaderAuth::Valid(_) = header {
        state.hub.admit_member(config.ws_max_sockets)
    } else {
        match state
            .hub
            .admit(client, config.ws_max_unauthenticated_per_ip)
        {
            Some(slot) => Some(slot),
            None => {
                refused("unauthenticated_per_ip");
                // Within the auth timeout every socket now waiting has
                // authenticated or been closed.
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many sockets from this address have not authenticated \
                         (at most {}); authenticate or close them, or send the token \
                         in the upgrade's Authorization header",
                        config.ws_max_unauthenticated_per_ip
                    ),
                )
                .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(config.ws_auth_timeout_secs.max(1)),
                );
                return response;
            }
        }
    };
    let Some(slot) = slot else {
        refused("full");
        return server_full();
    };
    let limit = config.ws_max_message_bytes;
    let connection = connection.map(|Extension(connection)| connection);
    if let Some(connection) = &connection {
        connection.limit_send_buffer(SEND_BUFFER);
    }
    let abort = connection::Abort(connection);
    upgrade
        // Small buffers: most sockets idle, and 10,000 of them must fit in
        // 80 MiB (the defaults are 128 KiB each way).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| connection::run(socket, state, header, slot, client, abort))
}

fn server_full() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many open sockets on this server; try again shortly",
    )
    .into_response()
}
