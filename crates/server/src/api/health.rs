//! `GET /health`: readiness for load balancers (the database answers).

use axum::{Json, Router, extract::State, routing::get};
use lanrage_proto::StatusResponse;

use super::{AppState, error::ApiResult};
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// 200 `{"status":"ok"}` when the database answers, else 503 with a detail.
async fn health(State(service): State<Service>) -> ApiResult<Json<StatusResponse>> {
    service
        .store()
        .ping()
        .await
        .map_err(crate::service::Error::from)?;
    Ok(Json(StatusResponse::new("ok")))
}
