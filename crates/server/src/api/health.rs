//! `GET /health`: readiness for load balancers (the database answers);
//! `GET /livez`: liveness (the process answers), which does no work at all
//! and is the benchmark's ceiling reference.

use axum::{Json, Router, extract::State, routing::get};
use lanrage_proto::StatusResponse;

use super::{AppState, error::ApiResult};
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(live))
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

/// Always 200 `{"status":"ok"}`: the process is up and serving.
async fn live() -> Json<StatusResponse> {
    Json(StatusResponse::new("ok"))
}
