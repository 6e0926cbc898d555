//! `POST /auth/register?peer_id=P`: a bearer token for a peer.

use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use lanrage_proto::{PeerId, TokenResponse};
use serde::Deserialize;

use super::AppState;
use super::{error::ApiResult, extract::QueryParams};
use crate::service::Service;

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/register", post(register))
}

#[derive(Debug, Deserialize)]
struct RegisterQuery {
    peer_id: PeerId,
}

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
