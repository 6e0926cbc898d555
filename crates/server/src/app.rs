//! The application: both transports (the HTTP API and the WebSocket
//! channel) over one service, with the layers every request passes
//! through. This is the only module that knows both transports.

use std::sync::Arc;

use axum::{
    Extension, Router,
    http::{Method, StatusCode, header},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    api::{self, docs, extract, metrics, rate_limit},
    config::{Config, Switch},
    http::error::ApiError,
    service::Service,
    ws::{self, hub::Hub},
};

/// What the application runs on.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: Service,
    pub hub: Arc<Hub>,
}

/// Every route this configuration serves, with its state.
fn routes(config: &Config, state: &AppState) -> OpenApiRouter {
    api::routes(config)
        .with_state(state.service.clone())
        .merge(ws::router().with_state(ws::Channel {
            service: state.service.clone(),
            hub: state.hub.clone(),
        }))
}

/// The OpenAPI document of the server this configuration runs.
pub fn openapi_document(config: &Config) -> utoipa::openapi::OpenApi {
    let mut document = api::routes(config).into_openapi();
    document.merge(ws::router().into_openapi());
    unique_operation_ids(&mut document);
    document
}

/// utoipa names an operation after its handler, and handlers in different
/// modules share names (`register` is both `POST /auth/register` and
/// `POST /relays`): a name used more than once gets its tag in front
/// (`auth_register`, `relays_register`), so every `operationId` is unique
/// as OpenAPI requires, and code generators make one method per route.
fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in document.paths.paths.values_mut() {
        for id in operations(item).filter_map(|op| op.operation_id.clone()) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            let shared = operation
                .operation_id
                .as_ref()
                .is_some_and(|id| seen.get(id).copied().unwrap_or(0) > 1);
            let tag = operation.tags.as_ref().and_then(|tags| tags.first());
            if shared && let (Some(id), Some(tag)) = (&operation.operation_id, tag) {
                operation.operation_id = Some(format!("{tag}_{id}"));
            }
        }
    }
}

/// Every operation of a path, whatever its method.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The whole HTTP API, WebSocket channel and documentation included.
/// Fails only if the OpenAPI document cannot be written as JSON.
pub fn router(state: AppState) -> Result<Router, serde_json::Error> {
    let service = &state.service;
    let cors = cors(&service.config().cors_origins);
    let limits = (service.config().rate_limit == Switch::On)
        .then(|| Arc::new(rate_limit::RateLimits::new(service.config())));
    let (routes, _) = routes(service.config(), &state).split_for_parts();
    let document = openapi_document(service.config());
    let document = docs::OpenApiJson(serde_json::to_vec(&document)?.into());
    let mut router = routes
        .layer(Extension(document))
        .fallback(|| async { ApiError::not_found("not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            service.metrics().clone(),
            metrics::track,
        ));
    router = router.layer(axum::middleware::from_fn(extract::reject_oversized));
    if let Some(limits) = limits {
        router = router.layer(axum::middleware::from_fn_with_state(
            limits,
            rate_limit::limit,
        ));
    }
    Ok(router
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
                        path = %crate::telemetry::loggable_path(request.uri().path()),
                        request_id,
                        peer_id = tracing::field::Empty,
                        party_id = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)))
}

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::from(api::metrics_routes().with_state(state.service))
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The paths an axum router serves. axum has no API to list them; its
    /// `Debug` output names each one, as a quoted string starting with `/`.
    fn served_paths(router: &Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        debug
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/') && !s.contains("__private__axum"))
            .map(str::to_owned)
            .collect()
    }

    /// The router `serve` runs, over a scratch SQLite database.
    async fn served_router(config: Config) -> (Router, tempfile::TempDir) {
        let (service, _, dir) = crate::service::scratch_sqlite(config).await;
        let state = AppState {
            hub: Arc::new(Hub::new(service.metrics().clone())),
            service,
        };
        (router(state).unwrap(), dir)
    }

    #[tokio::test]
    async fn every_served_path_is_documented() {
        for metrics_listen in [None, Some("127.0.0.1:0".to_owned())] {
            let mut config = Config::defaults();
            config.metrics_listen = metrics_listen;
            let documented: BTreeSet<String> =
                openapi_document(&config).paths.paths.into_keys().collect();
            let (router, _dir) = served_router(config).await;
            let mut served = served_paths(&router);
            assert!(served.contains("/parties/{party_id}/join"), "{served:?}");
            // The one alias: `/docs/` is the page documented as `/docs`.
            assert!(served.remove("/docs/"), "{served:?}");
            assert_eq!(served, documented);
        }
    }
}
