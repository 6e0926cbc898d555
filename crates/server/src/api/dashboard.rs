//! The operator's dashboard at `/dashboard`: a static page, its script,
//! style sheet and icon, compiled into the binary (no internet, no build
//! step). The page needs no key; it asks for the admin key and its script
//! reads the `/admin/…` routes with it, so only those routes are guarded.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::PathParams;
use crate::{
    http::{
        error::{ApiError, ApiResult},
        openapi::{NotFound, RateLimited},
    },
    service::Service,
};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");
const ICON: &str = include_str!("dashboard/icon.svg");

/// Everything the page loads comes from this server and nothing runs
/// inline, so markup that slipped into the page could not run script.
/// `form-action 'none'`: were the script not to run, the login form could
/// not send the key anywhere, least of all into a URL.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
}

/// Operator dashboard
///
/// A page for the operator: parties with their members, relays, open
/// sockets, request rates and database health, refreshed every two
/// seconds. The page itself is public; it asks for the admin key, keeps it
/// in the tab's session storage and sends it only to the `/admin/…`
/// routes it reads.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn page() -> Response {
    // The page is tiny and changes with the binary: never keep it.
    secured("text/html; charset=utf-8", "no-store", PAGE)
}

/// Operator dashboard asset
///
/// The dashboard's script, style sheet or icon.
#[utoipa::path(
    get,
    path = "/dashboard/{file}",
    tag = "dashboard",
    params(("file" = String, Path, description = "The asset's file name.",
        example = "app.js")),
    responses(
        (status = 200, description = "The asset.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
        )),
        (status = 404, response = inline(NotFound)),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn asset(PathParams(name): PathParams<String>) -> ApiResult<Response> {
    let (content_type, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => ("text/css; charset=utf-8", STYLE),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return Err(ApiError::not_found("no such asset")),
    };
    // Revalidated each time, so a new binary's script never meets an old
    // page, nor the reverse.
    Ok(secured(content_type, "no-cache", body))
}

fn secured(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, cache),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
