//! The HTTP API: one module per noun, each exporting its `router()`.

mod auth;
pub mod error;
pub mod extract;
mod health;
mod metrics;
mod parties;
mod rate_limit;
mod relays;
mod root;
mod signals;

use axum::{
    Router,
    http::{Method, StatusCode, header},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{config::Switch, service::Service, ws::hub::Hub};
use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: Service,
    pub hub: Arc<Hub>,
}

impl FromRef<AppState> for Service {
    fn from_ref(state: &AppState) -> Self {
        state.service.clone()
    }
}

/// The whole HTTP API, WebSocket channel included.
pub fn router(state: AppState) -> Router {
    let service = &state.service;
    let cors = cors(&service.config().cors_origins);
    let limits = (service.config().rate_limit == Switch::On)
        .then(|| std::sync::Arc::new(rate_limit::RateLimits::new(service.config())));
    let mut router = Router::new()
        .merge(root::router())
        .merge(health::router())
        .merge(if service.config().metrics_listen.is_none() {
            metrics::router()
        } else {
            Router::new()
        })
        .merge(auth::router())
        .merge(parties::router())
        .merge(signals::router())
        .merge(relays::router())
        .merge(crate::ws::router())
        .fallback(|| async { ApiError::not_found("not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.service.metrics().clone(),
            metrics::track,
        ))
        .with_state(state);
    router = router.layer(axum::middleware::from_fn(extract::reject_oversized));
    if let Some(limits) = limits {
        router = router.layer(axum::middleware::from_fn_with_state(
            limits,
            rate_limit::limit,
        ));
    }
    router
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
            ))
        }))
        .layer(cors)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                        peer_id = tracing::field::Empty,
                        party_id = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_router(state: AppState) -> Router {
    metrics::router().with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-registration-key"),
        ]);
    // Config validated every origin at start.
    let origins: Vec<_> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if origins.is_empty() {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(origins))
    }
}

/// Records the party a request is about in its span.
fn record_party(party_id: &str) {
    tracing::Span::current().record("party_id", party_id);
}
