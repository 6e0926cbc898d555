//! Signals over HTTP: queue one for a member, drain one's own queue.

use axum::{Json, extract::State, http::StatusCode};
use lanrage_proto::{SendSignalRequest, SignalsResponse, StatusResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Caller, JsonBody, PathParams},
    parties::party_id,
};
use crate::http::{
    error::ApiResult,
    openapi::{BodyErrors, Conflict, MemberErrors, PartyPath},
};
use crate::service::Service;

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(send, drain))
}

/// Send a signal
///
/// Queues a hole-punching message for another member of the party (both
/// must be members); a member connected by WebSocket gets it at once.
/// Undelivered signals expire.
#[utoipa::path(
    post,
    path = "/parties/{party_id}/signals",
    tag = "signals",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body = SendSignalRequest,
    responses(
        (status = 202, description = "`queued`.", body = StatusResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn send(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<SendSignalRequest>,
) -> ApiResult<(StatusCode, Json<StatusResponse>)> {
    let party_id = party_id(raw)?;
    service
        .send_signal(&caller, &party_id, body.to_peer_id, body.signal_data)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(StatusResponse::new("queued"))))
}

/// Drain signals
///
/// Returns the caller's queued signals in this party, oldest first, at
/// most 256 per call, and removes exactly those: the rest wait for the
/// next poll.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/signals",
    tag = "signals",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The signals, oldest first.", body = SignalsResponse),
        MemberErrors,
    )
)]
async fn drain(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<SignalsResponse>> {
    let signals = service.drain_signals(&caller, &party_id(raw)?).await?;
    Ok(Json(SignalsResponse { signals }))
}
