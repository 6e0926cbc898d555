//! Host authority routes: the party's settings, handing it over, removing
//! a member (DESIGN, "Capabilities beyond v1", sections 2 and 4).

use axum::{Json, extract::State};
use lanrage_proto::{
    KickRequest, KickResponse, PeerId, SettingsPatch, SettingsResponse, TransferHostRequest,
    TransferHostResponse,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Caller, JsonBody, OptionalJsonBody, PathParams},
    parties::party_id,
};
use crate::{
    http::{
        error::{ApiError, ApiResult},
        openapi::{BodyErrors, Conflict, MemberErrors, MemberPath, PartyPath},
    },
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(settings, patch_settings))
        .routes(routes!(transfer))
        .routes(routes!(kick))
}

/// Read a party's settings
///
/// Members only.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/settings",
    tag = "host",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The settings.", body = SettingsResponse),
        MemberErrors,
    )
)]
async fn settings(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<SettingsResponse>> {
    let party_id = party_id(raw)?;
    Ok(Json(service.party_settings(&caller, &party_id).await?))
}

/// Change a party's settings
///
/// The host only. The body holds any subset of the settings; an unknown key
/// or value is refused (422). Members get `party_settings`. Lowering
/// `max_members` below the member count evicts nobody: it stops new joins.
#[utoipa::path(
    patch,
    path = "/parties/{party_id}/settings",
    tag = "host",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The settings as changed.", body = SettingsResponse),
        MemberErrors,
        BodyErrors,
    )
)]
async fn patch_settings(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> ApiResult<Json<SettingsResponse>> {
    let party_id = party_id(raw)?;
    Ok(Json(
        service.patch_settings(&caller, &party_id, patch).await?,
    ))
}

/// Hand the party to another member
///
/// The host only. With `expected_epoch`, refused (409) unless it is the
/// current `host_epoch`: of two transfers made from one view, one wins.
/// Members get `host_changed` then `party_update`.
#[utoipa::path(
    post,
    path = "/parties/{party_id}/host",
    tag = "host",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body = TransferHostRequest,
    responses(
        (status = 200, description = "The party under its new host.", body = TransferHostResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn transfer(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<TransferHostRequest>,
) -> ApiResult<Json<TransferHostResponse>> {
    let party_id = party_id(raw)?;
    let done = service
        .transfer_host(&caller, &party_id, &body.new_host_id, body.expected_epoch)
        .await?;
    Ok(Json(TransferHostResponse {
        party: done.party,
        host_epoch: done.host_epoch,
        seq: done.seq,
    }))
}

/// Remove a member
///
/// The host only, on another member (the host itself: 422, it leaves
/// instead). Members and the removed peer get `peer_left` with reason
/// `kicked`. With `"ban": true` the peer (and its bound key) cannot rejoin
/// this party until it ends. The body may be left out (no ban).
#[utoipa::path(
    delete,
    path = "/parties/{party_id}/members/{peer_id}",
    tag = "host",
    security(("peer_token" = [])),
    params(MemberPath),
    request_body(content = Option<KickRequest>, description = "Optional."),
    responses(
        (status = 200, description = "`removed`.", body = KickResponse),
        MemberErrors,
        BodyErrors,
    )
)]
async fn kick(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
    OptionalJsonBody(body): OptionalJsonBody<KickRequest>,
) -> ApiResult<Json<KickResponse>> {
    let party_id = party_id(party)?;
    let peer_id = PeerId::parse(peer).map_err(|_| ApiError::not_found("peer not found"))?;
    Ok(Json(
        service.kick(&caller, &party_id, &peer_id, body.ban).await?,
    ))
}
