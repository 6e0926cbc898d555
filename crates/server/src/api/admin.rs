//! Operator actions on peers, with the admin key (`--admin-key`):
//! `POST /admin/peers/{peer_id}/revoke` (optionally banning) and
//! `DELETE /admin/peers/{peer_id}/ban`.

use axum::{Json, extract::State};
use lanrage_proto::{PeerId, RevokePeerRequest, RevokePeerResponse, StatusResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Admin, OptionalJsonBody, PathParams};
use crate::{
    http::{
        error::{ApiError, ApiResult},
        openapi::{BodyErrors, Forbidden, NotFound, ServiceErrors, Unauthorized},
    },
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(revoke))
        .routes(routes!(unban))
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
