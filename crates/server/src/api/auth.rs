//! `POST /auth/register?peer_id=P`: a bearer token for a peer.

use axum::{Json, extract::State, http::HeaderMap};
use lanrage_proto::{PeerId, TokenResponse};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::QueryParams;
use crate::http::{
    error::ApiResult,
    openapi::{Forbidden, Invalid, ServiceErrors, Unauthorized},
};
use crate::service::Service;

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(register))
}

#[derive(Debug, Deserialize)]
struct RegisterQuery {
    peer_id: PeerId,
}

/// Register a peer
///
/// Returns a bearer token for `peer_id`, valid for `--token-ttl-secs`
/// (24 h by default). Registering again gives a new token; earlier ones stay
/// valid until they expire. When the operator set `--registration-key`, the
/// `X-Registration-Key` header must carry it.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    params(
        ("peer_id" = PeerId, Query, description = "The peer to issue a token for."),
        ("X-Registration-Key" = Option<String>, Header,
            description = "The operator's registration key, when one is configured."),
    ),
    responses(
        (status = 200, description = "A new token.", body = TokenResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 422, response = inline(Invalid)),
        ServiceErrors,
    )
)]
async fn register(
    State(service): State<Service>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<RegisterQuery>,
) -> ApiResult<Json<TokenResponse>> {
    tracing::Span::current().record("peer_id", query.peer_id.as_str());
    // A header that is not text is a wrong key, not a missing one.
    let key = headers
        .get("x-registration-key")
        .map(|v| v.to_str().unwrap_or_default());
    Ok(Json(service.register(query.peer_id, key).await?))
}
