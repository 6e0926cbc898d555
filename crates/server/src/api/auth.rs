//! Bearer tokens: `POST /auth/register?peer_id=P` (v1, any peer ID), and
//! key-bound registration, `POST /auth/challenge` then
//! `POST /auth/register/key`, where the peer proves its WireGuard key.

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::HeaderMap,
};
use lanrage_proto::{
    ChallengeRequest, ChallengeResponse, KeyProof, KeyTokenResponse, PeerId, StatusResponse,
    TokenResponse,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{BearerToken, JsonBody, QueryParams};
use crate::http::{
    client_address,
    error::ApiResult,
    openapi::{Conflict, Forbidden, Invalid, ServiceErrors, Unauthorized},
};
use crate::{
    net::{ClientAddr, ClientKey},
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(challenge))
        .routes(routes!(register_with_key))
        .routes(routes!(rotate))
        .routes(routes!(logout))
}

/// The caller's `X-Registration-Key`: a header that is not text is a wrong
/// key, not a missing one.
fn registration_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-registration-key")
        .map(|v| v.to_str().unwrap_or_default())
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
    let key = registration_key(&headers);
    Ok(Json(service.register(query.peer_id, key).await?))
}

/// Ask for a key challenge
///
/// The first step of key-bound registration: a fresh X25519 `server_key`,
/// made for this challenge only, to prove `public_key` against before
/// `expires_at` (`--challenge-ttl-secs`). Each client address holds a
/// bounded number of unanswered challenges.
#[utoipa::path(
    post,
    path = "/auth/challenge",
    tag = "auth",
    request_body = ChallengeRequest,
    params(
        ("X-Registration-Key" = Option<String>, Header,
            description = "The operator's registration key, when one is configured."),
    ),
    responses(
        (status = 200, description = "A challenge.", body = ChallengeResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 422, response = inline(Invalid)),
        ServiceErrors,
    )
)]
async fn challenge(
    State(service): State<Service>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChallengeRequest>,
) -> ApiResult<Json<ChallengeResponse>> {
    let address = client_address(&service.config().trusted_proxies, peer.ip(), &headers);
    let client = ClientKey::of(address).to_string();
    let key = registration_key(&headers);
    Ok(Json(
        service.challenge(&body.public_key, &client, key).await?,
    ))
}

/// Register by proving a WireGuard key
///
/// Answers a challenge with `proof` (see DESIGN, "Key-bound identity"):
/// a token for the peer ID derived from the key, or for the peer the key
/// is bound to. Proving the key again later gives a new token for the same
/// peer. The challenge is used up by this attempt, whatever its outcome;
/// every failed proof gets the same 401.
#[utoipa::path(
    post,
    path = "/auth/register/key",
    tag = "auth",
    request_body = KeyProof,
    params(
        ("X-Registration-Key" = Option<String>, Header,
            description = "The operator's registration key, when one is configured."),
    ),
    responses(
        (status = 200, description = "A new token.", body = KeyTokenResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 422, response = inline(Invalid)),
        ServiceErrors,
    )
)]
async fn register_with_key(
    State(service): State<Service>,
    headers: HeaderMap,
    JsonBody(proof): JsonBody<KeyProof>,
) -> ApiResult<Json<KeyTokenResponse>> {
    let key = registration_key(&headers);
    let response = service.register_with_key(&proof, key).await?;
    tracing::Span::current().record("peer_id", response.peer_id.as_str());
    Ok(Json(response))
}

/// Rotate a key-bound peer's key
///
/// For a key-bound peer, with its token: proves the NEW key (a challenge
/// asked for that key, answered with the `rotate` purpose) and moves the
/// peer's binding to it. The answer is a token for the same `peer_id`;
/// every other token of the peer is revoked, the one that asked included,
/// and the members of its party get a `party_update` with the new key.
/// The retired key registers nobody afterwards. A peer registered by
/// `peer_id` alone gets 403; a key bound to another peer, 409.
#[utoipa::path(
    post,
    path = "/auth/rotate",
    tag = "auth",
    security(("peer_token" = [])),
    request_body = KeyProof,
    responses(
        (status = 200, description = "A new token for the same peer.", body = KeyTokenResponse),
        (status = 401, response = inline(Unauthorized)),
        (status = 403, response = inline(Forbidden)),
        (status = 409, response = inline(Conflict)),
        (status = 422, response = inline(Invalid)),
        ServiceErrors,
    )
)]
async fn rotate(
    State(service): State<Service>,
    BearerToken(token): BearerToken,
    JsonBody(proof): JsonBody<KeyProof>,
) -> ApiResult<Json<KeyTokenResponse>> {
    let response = service.rotate(&token, &proof).await?;
    tracing::Span::current().record("peer_id", response.peer_id.as_str());
    Ok(Json(response))
}

/// Log out
///
/// Revokes the token that calls it, on every server instance, before
/// answering; sockets authenticated with it close with code 4401. The
/// peer's other tokens stay valid.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("peer_token" = [])),
    responses(
        (status = 200, description = "`revoked`.", body = StatusResponse),
        (status = 401, response = inline(Unauthorized)),
        ServiceErrors,
    )
)]
async fn logout(
    State(service): State<Service>,
    BearerToken(token): BearerToken,
) -> ApiResult<Json<StatusResponse>> {
    service.logout(&token).await?;
    Ok(Json(StatusResponse::new("revoked")))
}
