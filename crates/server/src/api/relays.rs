//! Relay routes: operators register and deregister with the relay key;
//! peers list them.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use lanrage_proto::{Region, RelayId, RelayRegistration, RelayStatusResponse, RelaysResponse};

use super::AppState;
use super::{
    error::{ApiError, ApiResult},
    extract::{Caller, JsonBody, PathParams, RelayOperator},
};
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/relays", post(register).get(list))
        .route("/relays/{key}", get(by_region).delete(deregister))
}

async fn register(
    State(service): State<Service>,
    _operator: RelayOperator,
    JsonBody(body): JsonBody<RelayRegistration>,
) -> ApiResult<Json<RelayStatusResponse>> {
    let relay_id = service.register_relay(body).await?;
    Ok(Json(RelayStatusResponse {
        status: "registered".into(),
        relay_id,
    }))
}

async fn deregister(
    State(service): State<Service>,
    _operator: RelayOperator,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<RelayStatusResponse>> {
    let relay_id = RelayId::parse(raw).map_err(|_| ApiError::not_found("relay not found"))?;
    service.deregister_relay(&relay_id).await?;
    Ok(Json(RelayStatusResponse {
        status: "deregistered".into(),
        relay_id,
    }))
}

async fn list(State(service): State<Service>, _caller: Caller) -> ApiResult<Json<RelaysResponse>> {
    Ok(Json(RelaysResponse {
        relays: service.relays(None).await?,
    }))
}

async fn by_region(
    State(service): State<Service>,
    _caller: Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<RelaysResponse>> {
    // A region that cannot exist simply has no relays.
    let relays = match Region::parse(raw) {
        Ok(region) => service.relays(Some(&region)).await?,
        Err(_) => Vec::new(),
    };
    Ok(Json(RelaysResponse { relays }))
}
