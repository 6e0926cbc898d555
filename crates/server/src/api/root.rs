//! `GET /`: what this service is and how much it holds.

use axum::{Json, extract::State};
use lanrage_proto::ServiceInfo;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{error::ApiResult, openapi::ServiceErrors};
use crate::service::Service;

/// What this server implements of DESIGN's "Capabilities beyond v1", each
/// listed only once it works.
pub const FEATURES: &[&str] = &[
    "key-identity",
    "invites",
    "host-migration",
    "relay-choice",
    "path-plan",
];

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(info))
}

/// Service information
///
/// The service's name and version, how many parties and relays it holds,
/// and the capabilities beyond v1 it implements (`features`).
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    responses(
        (status = 200, description = "Service information.", body = ServiceInfo),
        ServiceErrors,
    )
)]

async fn info(State(service): State<Service>) -> ApiResult<Json<ServiceInfo>> {
    let counts = service.counts().await?;
    Ok(Json(ServiceInfo {
        service: "LANrage Control Plane".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        status: "ok".into(),
        parties: counts.parties,
        relays: counts.relays,
        features: FEATURES.iter().map(|&f| f.to_owned()).collect(),
    }))
}
