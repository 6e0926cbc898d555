//! The HTTP API: one module per noun, each exporting its `router()`. It
//! calls the service layer and shares its HTTP plumbing with the WebSocket
//! transport through [`crate::http`]; the two transports never import each
//! other (the application in [`crate::app`] puts them together).

mod admin;
mod auth;
mod dashboard;
pub(crate) mod docs;
pub mod extract;
mod health;
mod host;
mod invites;
pub(crate) mod metrics;
mod parties;
mod paths;
pub(crate) mod rate_limit;
mod relay_choice;
mod relays;
mod root;
mod signals;

use axum::http::header;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{config::Config, http::openapi, service::Service};

/// Every HTTP route this configuration serves, each with its
/// documentation, over the service.
pub fn routes(config: &Config) -> OpenApiRouter<Service> {
    let mut routes = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(root::router())
        .merge(health::router())
        .merge(auth::router())
        .merge(parties::router())
        .merge(host::router())
        .merge(invites::router())
        .merge(signals::router())
        .merge(relays::router())
        .merge(relay_choice::router())
        .merge(paths::router())
        .merge(admin::router())
        .merge(docs::router())
        .merge(dashboard::router());
    if config.metrics_listen.is_none() {
        routes = routes.merge(metrics::router());
    }
    routes
}

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_routes() -> OpenApiRouter<Service> {
    metrics::router()
}

/// An answer whose JSON body was written beforehand.
fn json_bytes(json: axum::body::Bytes) -> axum::response::Response {
    axum::response::IntoResponse::into_response((
        [(header::CONTENT_TYPE, "application/json")],
        json,
    ))
}

/// Records the party a request is about in its span.
fn record_party(party_id: &str) {
    tracing::Span::current().record("party_id", party_id);
}
