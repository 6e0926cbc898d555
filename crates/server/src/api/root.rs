//! `GET /`: what this service is and how much it holds.

use axum::{Json, Router, extract::State, routing::get};
use lanrage_proto::ServiceInfo;

use super::AppState;
use super::error::ApiResult;
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(info))
}

async fn info(State(service): State<Service>) -> ApiResult<Json<ServiceInfo>> {
    let (parties, relays) = service.counts().await?;
    Ok(Json(ServiceInfo {
        service: "LANrage Control Plane".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        status: "ok".into(),
        parties,
        relays,
    }))
}
