//! Relay routes: operators register and deregister with the relay key;
//! peers list them.

use axum::{Json, extract::State};
use lanrage_proto::{Region, RelayId, RelayRegistration, RelayStatusResponse, RelaysResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Caller, JsonBody, PathParams, RelayOperator};
use crate::http::{
    error::{ApiError, ApiResult},
    openapi::{BodyErrors, Forbidden, MemberErrors, ServiceErrors, Unauthorized},
};
use crate::service::Service;

// `GET /relays/{region}` and `DELETE /relays/{relay_id}` share one path
// template (OpenAPI and the router both treat `{region}` and `{relay_id}`
// as the same segment), so the segment is called `key`.
pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(by_region, deregister))
}

/// Register a relay
///
/// For relay operators, with the relay key. Posting the same relay again
/// refreshes it (its heartbeat); relays silent for `--relay-timeout-secs`
/// are removed. Without a configured relay key, registration is refused
/// with a 403 naming the setting.
#[utoipa::path(
    post,
    path = "/relays",
    tag = "relays",
    security(("relay_key" = [])),
    request_body = RelayRegistration,
    responses(
        (status = 200, description = "`registered`.", body = RelayStatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        BodyErrors,
        ServiceErrors,
    )
)]
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

/// Deregister a relay
///
/// For relay operators, with the relay key; `key` is the relay's id.
#[utoipa::path(
    delete,
    path = "/relays/{key}",
    tag = "relays",
    security(("relay_key" = [])),
    params(("key" = RelayId, Path, description = "The relay's id.")),
    responses(
        (status = 200, description = "`deregistered`.", body = RelayStatusResponse),
        MemberErrors,
    )
)]
async fn deregister(
    State(service): State<Service>,
    _operator: RelayOperator,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<RelayStatusResponse>> {
    deregister_by_path(&service, raw).await
}

/// Deregisters the relay a path names (the relay key's route and the
/// admin key's): a relay ID that cannot exist names no relay.
pub(super) async fn deregister_by_path(
    service: &Service,
    raw: String,
) -> ApiResult<Json<RelayStatusResponse>> {
    let relay_id = RelayId::parse(raw).map_err(|_| ApiError::not_found("relay not found"))?;
    service.deregister_relay(&relay_id).await?;
    Ok(Json(RelayStatusResponse {
        status: "deregistered".into(),
        relay_id,
    }))
}

/// List relays
///
/// Every live relay, ordered by region, then relay id.
#[utoipa::path(
    get,
    path = "/relays",
    tag = "relays",
    security(("peer_token" = [])),
    responses(
        (status = 200, description = "The relays.", body = RelaysResponse),
        (status = 401, response = inline(Unauthorized)),
        ServiceErrors,
    )
)]
async fn list(State(service): State<Service>, _caller: Caller) -> ApiResult<Json<RelaysResponse>> {
    Ok(Json(RelaysResponse {
        relays: service.relays(None).await?,
    }))
}

/// List a region's relays
///
/// The live relays of one region, ordered by relay id; `key` is the region.
/// A region with no relays (or one that cannot exist) gives an empty list.
#[utoipa::path(
    get,
    path = "/relays/{key}",
    tag = "relays",
    security(("peer_token" = [])),
    params(("key" = String, Path, description = "The region, e.g. `eu-west`.")),
    responses(
        (status = 200, description = "The region's relays.", body = RelaysResponse),
        (status = 401, response = inline(Unauthorized)),
        ServiceErrors,
    )
)]
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
