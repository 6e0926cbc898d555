//! `GET /health`: readiness for load balancers (the database answers);
//! `GET /livez`: liveness (the process answers), which does no work at all
//! and is the benchmark's ceiling reference.

use axum::{Json, extract::State};
use lanrage_proto::StatusResponse;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{
    error::ApiResult,
    openapi::{RateLimited, ServiceErrors},
};
use crate::service::Service;

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
}

/// Readiness
///
/// `{"status":"ok"}` when the database answers, else 503 with a detail:
/// for load balancers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses(
        (status = 200, description = "`ok`: ready to serve.", body = StatusResponse),
        ServiceErrors,
    )
)]
async fn health(State(service): State<Service>) -> ApiResult<Json<StatusResponse>> {
    service.check_database().await?;
    Ok(Json(StatusResponse::new("ok")))
}

/// Liveness
///
/// Always `{"status":"ok"}`: the process is up and serving. Does no work.
#[utoipa::path(
    get,
    path = "/livez",
    tag = "service",
    responses(
        (status = 200, description = "`ok`.", body = StatusResponse),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn live() -> Json<StatusResponse> {
    Json(StatusResponse::new("ok"))
}
