//! The operator's routes, with the admin key (`--admin-key`): parties
//! (list, show, end, remove a member), relays (list with state,
//! deregister), the dashboard's numbers, and actions on peers (revoke,
//! optionally banning; lift a ban). Without a configured admin key every
//! one is refused with a 403 naming the setting.

use axum::{Json, extract::State};
use lanrage_proto::{
    AdminPartiesResponse, AdminParty, AdminRelaysResponse, AdminStats, DEFAULT_ADMIN_PAGE,
    MAX_ADMIN_PAGE, PeerId, RelayId, RelayStatusResponse, RevokePeerRequest, RevokePeerResponse,
    StatusResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Admin, OptionalJsonBody, PathParams, QueryParams},
    parties::party_id,
};
use crate::{
    http::{
        error::{ApiError, ApiResult},
        openapi::{
            BodyErrors, Forbidden, Invalid, MemberPath, NotFound, PartyPath, ServiceErrors,
            Unauthorized,
        },
    },
    service::{Left, Service},
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(parties))
        .routes(routes!(party, end_party))
        .routes(routes!(remove_member))
        .routes(routes!(relays))
        .routes(routes!(deregister_relay))
        .routes(routes!(server_stats))
        .routes(routes!(revoke))
        .routes(routes!(unban))
}

/// The query of `GET /admin/parties`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Parties after this ID: the previous page's `next_after`.
    #[param(value_type = Option<lanrage_proto::PartyId>)]
    after: Option<String>,
    /// How many parties, 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// List parties
///
/// For the operator, with the admin key: every party with its members,
/// settings and host, a page at a time by party ID. Pass the answer's
/// `next_after` as `after` for the next page; it is null on the last.
#[utoipa::path(
    get,
    path = "/admin/parties",
    tag = "admin",
    security(("admin_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of parties.", body = AdminPartiesResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 422, response = inline(Invalid)),
        ServiceErrors,
    )
)]
async fn parties(
    State(service): State<Service>,
    _admin: Admin,
    QueryParams(query): QueryParams<PageQuery>,
) -> ApiResult<Json<AdminPartiesResponse>> {
    let limit = query.limit.unwrap_or(DEFAULT_ADMIN_PAGE);
    if !(1..=MAX_ADMIN_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be from 1 to {MAX_ADMIN_PAGE}"
        )));
    }
    // Any text orders among party IDs; one that cannot be an ID is still
    // a valid place to start from.
    let after = query
        .after
        .map(lanrage_proto::PartyId::parse)
        .transpose()
        .map_err(|_| ApiError::unprocessable("after must be a party ID (a page's next_after)"))?;
    let (parties, next_after) = service.admin_parties(after.as_ref(), limit).await?;
    Ok(Json(AdminPartiesResponse {
        parties,
        next_after,
    }))
}

/// Show a party
///
/// For the operator, with the admin key: the party with its members
/// (virtual IP, NAT type, last heartbeat, verified key), settings and host.
#[utoipa::path(
    get,
    path = "/admin/parties/{party_id}",
    tag = "admin",
    security(("admin_key" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The party.", body = AdminParty),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        ServiceErrors,
    )
)]
async fn party(
    State(service): State<Service>,
    _admin: Admin,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<AdminParty>> {
    let party_id = party_id(raw)?;
    Ok(Json(service.admin_party(&party_id).await?))
}

/// End a party
///
/// For the operator, with the admin key: the party is deleted and every
/// member gets `party_ended` with reason `operator`.
#[utoipa::path(
    delete,
    path = "/admin/parties/{party_id}",
    tag = "admin",
    security(("admin_key" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "`party_deleted`.", body = StatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        ServiceErrors,
    )
)]
async fn end_party(
    State(service): State<Service>,
    _admin: Admin,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(raw)?;
    service.admin_end_party(&party_id).await?;
    Ok(Json(StatusResponse::new("party_deleted")))
}

/// Remove a member
///
/// For the operator, with the admin key: the member leaves the party as a
/// host's kick makes it (`peer_left` with reason `kicked`), without a ban.
/// Removing the host ends the party, or hands it over when its host
/// policy is `migrate`. Answers `removed`, or `party_deleted` when the
/// party ended.
#[utoipa::path(
    delete,
    path = "/admin/parties/{party_id}/members/{peer_id}",
    tag = "admin",
    security(("admin_key" = [])),
    params(MemberPath),
    responses(
        (status = 200, description = "`removed` or `party_deleted`.", body = StatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        ServiceErrors,
    )
)]
async fn remove_member(
    State(service): State<Service>,
    _admin: Admin,
    PathParams((raw_party, raw_peer)): PathParams<(String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(raw_party)?;
    let peer_id = peer_in_path(raw_peer)?;
    let status = match service.admin_remove_member(&party_id, &peer_id).await? {
        Left::Left => "removed",
        Left::PartyDeleted => "party_deleted",
    };
    Ok(Json(StatusResponse::new(status)))
}

/// List relays with their state
///
/// For the operator, with the admin key: every relay (as `GET /relays`
/// gives it) with when it was last heard from, its state for relay choice
/// (`active`, `draining`, `full`, `stale`), sessions and load.
#[utoipa::path(
    get,
    path = "/admin/relays",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Every relay.", body = AdminRelaysResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        ServiceErrors,
    )
)]
async fn relays(
    State(service): State<Service>,
    _admin: Admin,
) -> ApiResult<Json<AdminRelaysResponse>> {
    Ok(Json(AdminRelaysResponse {
        relays: service.admin_relays().await?,
    }))
}

/// Deregister a relay
///
/// For the operator, with the admin key (as `DELETE /relays/{relay_id}`
/// does with the relay key).
#[utoipa::path(
    delete,
    path = "/admin/relays/{relay_id}",
    tag = "admin",
    security(("admin_key" = [])),
    params(("relay_id" = RelayId, Path, description = "The relay.")),
    responses(
        (status = 200, description = "`deregistered`.", body = RelayStatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        ServiceErrors,
    )
)]
async fn deregister_relay(
    State(service): State<Service>,
    _admin: Admin,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<RelayStatusResponse>> {
    super::relays::deregister_by_path(&service, raw).await
}

/// Server numbers
///
/// For the operator, with the admin key: parties, members, relays, open
/// sockets, requests and socket messages since this instance started,
/// and how the database check went (reported, never an error).
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The numbers.", body = AdminStats),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        ServiceErrors,
    )
)]
async fn server_stats(
    State(service): State<Service>,
    _admin: Admin,
) -> ApiResult<Json<AdminStats>> {
    Ok(Json(service.admin_stats().await?))
}

/// A path's peer ID; one that cannot exist names nobody (404).
fn peer_in_path(raw: String) -> Result<PeerId, ApiError> {
    let peer_id = PeerId::parse(raw).map_err(|_| ApiError::not_found("peer not found"))?;
    tracing::Span::current().record("peer_id", peer_id.as_str());
    Ok(peer_id)
}

/// Revoke a peer
///
/// For the operator, with the admin key. Revokes every token of the peer
/// on every instance (its sockets close with 4401) and takes it out of its
/// party as if it left (a host's party ends). With `"ban": true` the peer
/// ID, and for a key-bound peer its key, are banned: no token, no
/// challenge. The body may be left out (no ban). Without a configured
/// admin key every admin route is refused with a 403 naming the setting.
#[utoipa::path(
    post,
    path = "/admin/peers/{peer_id}/revoke",
    tag = "admin",
    security(("admin_key" = [])),
    params(("peer_id" = PeerId, Path, description = "The peer.")),
    request_body(content = Option<RevokePeerRequest>, description = "Optional."),
    responses(
        (status = 200, description = "`revoked`.", body = RevokePeerResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        BodyErrors,
        ServiceErrors,
    )
)]
async fn revoke(
    State(service): State<Service>,
    _admin: Admin,
    PathParams(raw): PathParams<String>,
    OptionalJsonBody(body): OptionalJsonBody<RevokePeerRequest>,
) -> ApiResult<Json<RevokePeerResponse>> {
    let peer_id = peer_in_path(raw)?;
    let revoked = service.revoke_peer(&peer_id, body.ban).await?;
    Ok(Json(RevokePeerResponse {
        status: "revoked".into(),
        tokens: revoked.tokens,
        banned: revoked.banned,
    }))
}

/// Lift a ban
///
/// For the operator, with the admin key: the peer (and the key banned with
/// it) may register again. 404 when the peer is not banned.
#[utoipa::path(
    delete,
    path = "/admin/peers/{peer_id}/ban",
    tag = "admin",
    security(("admin_key" = [])),
    params(("peer_id" = PeerId, Path, description = "The peer.")),
    responses(
        (status = 200, description = "`unbanned`.", body = StatusResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 404, response = inline(NotFound)),
        ServiceErrors,
    )
)]
async fn unban(
    State(service): State<Service>,
    _admin: Admin,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<StatusResponse>> {
    let peer_id = peer_in_path(raw)?;
    service.unban(&peer_id).await?;
    Ok(Json(StatusResponse::new("unbanned")))
}
