//! Path plan (DESIGN, "Capabilities beyond v1", section 6): members' NAT
//! reports and connection outcomes, the party's plan per pair, and the
//! fleet's statistics for the operator.

use axum::{Json, extract::State};
use lanrage_proto::{NatReport, PathReports, PathStatsResponse, PathsResponse, StatusResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Admin, Caller, JsonBody, PathParams},
    parties::{party_id, peer_id},
};
use crate::{
    http::{
        error::ApiResult,
        openapi::{
            BodyErrors, Forbidden, MemberErrors, MemberPath, PartyPath, ServiceErrors, Unauthorized,
        },
    },
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(report_nat))
        .routes(routes!(report_paths, paths))
        .routes(routes!(stats))
}

/// Report NAT behaviour
///
/// The peer itself, a member: RFC 4787 `mapping` and `filtering` as
/// measured per RFC 5780 (`none`, `endpoint_independent`,
/// `address_dependent`, `address_and_port_dependent`, `unknown`) and
/// whether a port-mapping protocol works. Unreported, they derive from the
/// member's `nat_type`.
#[utoipa::path(
    put,
    path = "/parties/{party_id}/peers/{peer_id}/nat",
    tag = "paths",
    security(("peer_token" = [])),
    params(MemberPath),
    request_body = NatReport,
    responses(
        (status = 200, description = "`ok`.", body = StatusResponse),
        MemberErrors,
        BodyErrors,
    )
)]
async fn report_nat(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
    JsonBody(nat): JsonBody<NatReport>,
) -> ApiResult<Json<StatusResponse>> {
    let (party_id, peer_id) = (party_id(party)?, peer_id(peer)?);
    service
        .report_nat(&caller, &party_id, &peer_id, nat)
        .await?;
    Ok(Json(StatusResponse::new("ok")))
}

/// Report connection outcomes
///
/// A member, about other members: up to 64 `{"peer_id", "outcome"
/// (direct, relayed, failed), "rtt_ms"?}`. A `peer_id` that is not a member
/// (or is the caller) is a 404. Reports expire after
/// `--rtt-report-ttl-secs`; their outcomes also feed the fleet's
/// statistics, as counts per NAT-class pair.
#[utoipa::path(
    post,
    path = "/parties/{party_id}/paths",
    tag = "paths",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body = PathReports,
    responses(
        (status = 200, description = "`ok`.", body = StatusResponse),
        MemberErrors,
        BodyErrors,
    )
)]
async fn report_paths(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<PathReports>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(raw)?;
    service
        .report_paths(&caller, &party_id, body.reports)
        .await?;
    Ok(Json(StatusResponse::new("ok")))
}

/// The party's path plan
///
/// Members only: one `PathPair` per member pair (`a < b`) with its `plan`
/// (`lan`, `direct`, `attempt`, `relay`), `confidence`, `basis`, latest
/// round trip and last observed outcome (docs/paths.md).
#[utoipa::path(
    get,
    path = "/parties/{party_id}/paths",
    tag = "paths",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The plan.", body = PathsResponse),
        MemberErrors,
    )
)]
async fn paths(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<PathsResponse>> {
    let party_id = party_id(raw)?;
    Ok(Json(service.party_paths(&caller, &party_id).await?))
}

/// Path statistics
///
/// For the operator, with the admin key: outcomes per unordered NAT-class
/// pair (`a ≤ b`) in the last `--path-stats-window-days`.
#[utoipa::path(
    get,
    path = "/admin/paths/stats",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The classes.", body = PathStatsResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        ServiceErrors,
    )
)]
async fn stats(
    State(service): State<Service>,
    _admin: Admin,
) -> ApiResult<Json<PathStatsResponse>> {
    Ok(Json(PathStatsResponse {
        classes: service.path_stats().await?,
    }))
}
