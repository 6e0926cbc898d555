//! Party routes: create, join, read, members, leave, heartbeat.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use lanrage_proto::{
    CreatePartyRequest, CreatePartyResponse, JoinPartyRequest, JoinPartyResponse, PartyId,
    PartyResponse, PeerId, PeerResponse, PeersResponse, StatusResponse,
};

use super::AppState;
use super::{
    error::{ApiError, ApiResult},
    extract::{Caller, JsonBody, PathParams},
    record_party,
};
use crate::service::{Left, Service};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/parties", post(create))
        .route("/parties/{party_id}", get(read))
        .route("/parties/{party_id}/join", post(join))
        .route("/parties/{party_id}/peers", get(peers))
        .route(
            "/parties/{party_id}/peers/{peer_id}",
            get(peer).delete(leave),
        )
        .route(
            "/parties/{party_id}/peers/{peer_id}/heartbeat",
            post(heartbeat),
        )
}

/// A party id from the path: one that cannot exist is simply not found.
pub(super) fn party_id(raw: String) -> ApiResult<PartyId> {
    record_party(&raw);
    PartyId::parse(raw).map_err(|_| ApiError::not_found("party not found"))
}

fn peer_id(raw: String) -> ApiResult<PeerId> {
    PeerId::parse(raw).map_err(|_| ApiError::not_found("peer not found"))
}

async fn create(
    State(service): State<Service>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreatePartyRequest>,
) -> ApiResult<Json<CreatePartyResponse>> {
    let joined = service
        .create_party(&caller, body.name, body.host_peer_info)
        .await?;
    record_party(joined.party.party_id.as_str());
    Ok(Json(CreatePartyResponse {
        party_id: joined.party.party_id.clone(),
        party: joined.party,
        virtual_ip: joined.virtual_ip,
        seq: joined.seq,
    }))
}

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
    Ok(Json(JoinPartyResponse {
        party: joined.party,
        virtual_ip: joined.virtual_ip,
        seq: joined.seq,
    }))
}

async fn read(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<PartyResponse>> {
    let view = service.party_view(&caller, &party_id(raw)?).await?;
    Ok(Json(PartyResponse {
        party: view.party,
        virtual_ips: view.virtual_ips,
        seq: view.seq,
    }))
}

async fn peers(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<PeersResponse>> {
    let view = service.party_view(&caller, &party_id(raw)?).await?;
    Ok(Json(PeersResponse {
        peers: view.party.peers,
    }))
}

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
