//! `GET /metrics` (Prometheus, no token) and the middleware that counts
//! every request.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{error::DatabaseError, openapi::RateLimited};
use crate::{metrics::Metrics, service::Service};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(render))
}

/// Prometheus metrics
///
/// In the OpenMetrics text format; no token. Served on its own address
/// instead when `--metrics-listen` is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "application/openmetrics-text"),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn render(State(service): State<Service>) -> Response {
    let metrics = service.metrics();
    // Stored totals are read at scrape time; without a database the rest
    // is still worth scraping.
    if let Ok(counts) = service.counts().await {
        let gauge = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        metrics.parties.set(gauge(counts.parties));
        metrics.peers.set(gauge(counts.peers));
        metrics.relays.set(gauge(counts.relays));
    }
    metrics.observe_pools(&service.pool_states());
    if let Some(process) = crate::process::read() {
        metrics.observe_process(&process);
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.render()).into_response()
}

/// Counts the request by its route template (not its path, which would
/// make a series per party) and records its latency.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(DatabaseError(kind)) = response.extensions().get() {
        metrics.count_db_errors(kind, 1);
    }
    metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
