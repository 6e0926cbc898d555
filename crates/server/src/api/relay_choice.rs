//! Relay choice (DESIGN, "Capabilities beyond v1", section 5): relays'
//! status, members' round trips, and each party's recommended relay.

use axum::{Json, extract::State};
use lanrage_proto::{
    PartyRelayResponse, RelayId, RelayRttsReport, RelayRttsResponse, RelayStatusReport,
    RelayStatusesResponse, StatusResponse,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Caller, JsonBody, PathParams, PeerOrRelayOperator, RelayOperator},
    parties::{party_id, peer_id},
};
use crate::{
    http::{
        error::{ApiError, ApiResult},
        openapi::{
            BodyErrors, Forbidden, MemberErrors, MemberPath, NotFound, PartyPath, ServiceErrors,
            Unauthorized,
        },
    },
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(report_status))
        .routes(routes!(statuses))
        .routes(routes!(report_rtts))
        .routes(routes!(party_relay))
}

/// Report a relay's status
///
/// For relay operators, with the relay key. At least one of `sessions`,
/// `load` (0 to 1) and `draining`; a field left out keeps its value. Also
/// refreshes the relay, like posting it again.
#[utoipa::path(
    post,
    path = "/relays/{relay_id}/status",
    tag = "relays",
    security(("relay_key" = [])),
    params(("relay_id" = RelayId, Path, description = "The relay.")),
    request_body = RelayStatusReport,
    responses(
        (status = 200, description = "`ok`.", body = StatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        BodyErrors,
        ServiceErrors,
    )
)]
async fn report_status(
    State(service): State<Service>,
    _operator: RelayOperator,
    PathParams(raw): PathParams<String>,
    JsonBody(report): JsonBody<RelayStatusReport>,
) -> ApiResult<Json<StatusResponse>> {
    let relay_id = RelayId::parse(raw).map_err(|_| ApiError::not_found("relay not found"))?;
    service.report_relay_status(&relay_id, report).await?;
    Ok(Json(StatusResponse::new("ok")))
}

/// Relays' status
///
/// With a peer token or the relay key: every relay with its sessions,
/// load and state (`active`, `draining`, `full` or `stale`), by region then
/// ID.
#[utoipa::path(
    get,
    path = "/relays/status",
    tag = "relays",
    security(("peer_token" = []), ("relay_key" = [])),
    responses(
        (status = 200, description = "The relays.", body = RelayStatusesResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        ServiceErrors,
    )
)]
async fn statuses(
    State(service): State<Service>,
    _caller: PeerOrRelayOperator,
) -> ApiResult<Json<RelayStatusesResponse>> {
    Ok(Json(RelayStatusesResponse {
        relays: service.relay_statuses().await?,
    }))
}

/// Report round trips to relays
///
/// The peer itself, a member. Up to 64 `relay_id: ms` entries (over 0, at
/// most 10000; `null` for unreachable), replacing its last report; unknown
/// relay IDs are ignored and listed. Reports expire after
/// `--rtt-report-ttl-secs`.
#[utoipa::path(
    put,
    path = "/parties/{party_id}/peers/{peer_id}/relay-rtts",
    tag = "relays",
    security(("peer_token" = [])),
    params(MemberPath),
    request_body = RelayRttsReport,
    responses(
        (status = 200, description = "`ok`, and the ignored relay IDs.", body = RelayRttsResponse),
        MemberErrors,
        BodyErrors,
    )
)]
async fn report_rtts(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
    JsonBody(report): JsonBody<RelayRttsReport>,
) -> ApiResult<Json<RelayRttsResponse>> {
    let party_id = party_id(party)?;
    let peer_id = peer_id(peer)?;
    Ok(Json(
        service
            .report_rtts(&caller, &party_id, &peer_id, report.rtts)
            .await?,
    ))
}

/// The party's relay
///
/// Members only. The relay minimising the worst round trip between two
/// members through it, with each member's round trip, the unmeasured
/// members, the ranked alternates and why (docs/relays.md); `relay`
/// is `null` without measurements or candidates.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/relay",
    tag = "relays",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The recommendation.", body = PartyRelayResponse),
        MemberErrors,
    )
)]
async fn party_relay(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<PartyRelayResponse>> {
    let party_id = party_id(raw)?;
    Ok(Json(service.party_relay(&caller, &party_id).await?))
}
