//! Signals over HTTP: queue one for a member, drain one's own queue.

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use lanrage_proto::{SendSignalRequest, SignalsResponse, StatusResponse};

use super::AppState;
use super::{
    error::ApiResult,
    extract::{Caller, JsonBody, PathParams},
    parties::party_id,
};
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new().route("/parties/{party_id}/signals", post(send).get(drain))
}

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

async fn drain(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<SignalsResponse>> {
    let signals = service.drain_signals(&caller, &party_id(raw)?).await?;
    Ok(Json(SignalsResponse { signals }))
}
