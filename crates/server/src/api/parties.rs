//! Party routes: create, join, read, members, leave, heartbeat.

use axum::{Json, extract::State, response::Response};
use lanrage_proto::{
    CreatePartyRequest, CreatePartyResponse, JoinPartyRequest, JoinPartyResponse, PartyId,
    PartyResponse, PeerId, PeerResponse, PeersResponse, StatusResponse,
};

use utoipa_axum::{router::OpenApiRouter, routes};

use super::json_bytes;
use super::{
    extract::{Caller, JsonBody, PathParams},
    record_party,
};
use crate::http::{
    error::{ApiError, ApiResult},
    openapi::{BodyErrors, Conflict, MemberErrors, MemberPath, PartyPath},
};
use crate::service::{Joined, Left, Service};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(join))
        .routes(routes!(peers))
        .routes(routes!(peer, leave))
        .routes(routes!(heartbeat))
}

/// A party id from the path: one that cannot exist is simply not found.
pub(super) fn party_id(raw: String) -> ApiResult<PartyId> {
    record_party(&raw);
    PartyId::parse(raw).map_err(|_| ApiError::not_found("party not found"))
}

pub(super) fn peer_id(raw: String) -> ApiResult<PeerId> {
    PeerId::parse(raw).map_err(|_| ApiError::not_found("peer not found"))
}

/// Create a party
///
/// The caller becomes its host and first member (`host_peer_info.peer_id`
/// must be the caller). A peer already in another party leaves it first.
#[utoipa::path(
    post,
    path = "/parties",
    tag = "parties",
    security(("peer_token" = [])),
    request_body = CreatePartyRequest,
    responses(
        (status = 200, description = "The party, with the host as its first member.", body = CreatePartyResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn create(
    State(service): State<Service>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreatePartyRequest>,
) -> ApiResult<Json<CreatePartyResponse>> {
    let joined = service
        .create_party(&caller, body.name, body.host_peer_info, body.settings)
        .await?;
    record_party(joined.party.party_id.as_str());
    Ok(Json(CreatePartyResponse {
        party_id: joined.party.party_id.clone(),
        party: joined.party,
        virtual_ip: joined.virtual_ip,
        seq: joined.seq,
        extras: joined.extras,
    }))
}

/// Join a party
///
/// `peer_info.peer_id` must be the caller and `party_id` the one in the
/// path. Joining the same party again refreshes the member's info; joining
/// another party moves the peer.
#[utoipa::path(
    post,
    path = "/parties/{party_id}/join",
    tag = "parties",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body = JoinPartyRequest,
    responses(
        (status = 200, description = "The party as joined.", body = JoinPartyResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn join(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<JoinPartyRequest>,
) -> ApiResult<Json<JoinPartyResponse>> {
    let party_id = party_id(raw)?;
    if body.party_id != party_id {
        return Err(ApiError::unprocessable(format!(
            "party_id in the body ({}) differs from the one in the path ({party_id})",
            body.party_id
        )));
    }
    let joined = service
        .join_party(&caller, &party_id, body.peer_info)
        .await?;
    Ok(Json(join_answer(joined)))
}

/// The answer to a join, by ID or by code.
pub(super) fn join_answer(joined: Joined) -> JoinPartyResponse {
    JoinPartyResponse {
        party: joined.party,
        virtual_ip: joined.virtual_ip,
        seq: joined.seq,
        extras: joined.extras,
    }
}

/// Read a party
///
/// Members only.
#[utoipa::path(
    get,
    path = "/parties/{party_id}",
    tag = "parties",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The party.", body = PartyResponse),
        MemberErrors,
    )
)]
async fn read(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Response> {
    let json = service.party_json(&caller, &party_id(raw)?).await?;
    Ok(json_bytes(json))
}

/// List a party's members
///
/// Members only.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/peers",
    tag = "parties",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The members, by peer id.", body = PeersResponse),
        MemberErrors,
    )
)]
async fn peers(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Response> {
    let json = service.peers_json(&caller, &party_id(raw)?).await?;
    Ok(json_bytes(json))
}

/// Read one member
///
/// Members only.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/peers/{peer_id}",
    tag = "parties",
    security(("peer_token" = [])),
    params(MemberPath),
    responses(
        (status = 200, description = "The member.", body = PeerResponse),
        MemberErrors,
    )
)]
async fn peer(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
) -> ApiResult<Json<PeerResponse>> {
    let party_id = party_id(party)?;
    let peer = service
        .party_peer(&caller, &party_id, &peer_id(peer)?)
        .await?;
    Ok(Json(PeerResponse { peer }))
}

/// Leave a party
///
/// A peer removes only itself. When the last member leaves, or the host
/// of a party whose `host_policy` is `end` (the default), the party is
/// deleted; with `migrate` the next in `succession` takes over.
#[utoipa::path(
    delete,
    path = "/parties/{party_id}/peers/{peer_id}",
    tag = "parties",
    security(("peer_token" = [])),
    params(MemberPath),
    responses(
        (status = 200, description = "`left`, or `party_deleted` when the host left or the party emptied.", body = StatusResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
    )
)]
async fn leave(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(party)?;
    let status = match service
        .leave_party(&caller, &party_id, &peer_id(peer)?)
        .await?
    {
        Left::Left => "left",
        Left::PartyDeleted => "party_deleted",
    };
    Ok(Json(StatusResponse::new(status)))
}

/// Heartbeat
///
/// Keeps the caller's membership alive; members silent for
/// `--peer-timeout-secs` are removed.
#[utoipa::path(
    post,
    path = "/parties/{party_id}/peers/{peer_id}/heartbeat",
    tag = "parties",
    security(("peer_token" = [])),
    params(MemberPath),
    responses(
        (status = 200, description = "`ok`.", body = StatusResponse),
        MemberErrors,
    )
)]
async fn heartbeat(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, peer)): PathParams<(String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(party)?;
    service
        .heartbeat(&caller, &party_id, &peer_id(peer)?)
        .await?;
    Ok(Json(StatusResponse::new("ok")))
}
