//! `GET /openapi.json` and the interactive documentation at `/docs`
//! (Swagger UI, its assets compiled into the binary: it renders with no
//! internet access).

use std::sync::{Arc, LazyLock};

use axum::{
    Extension,
    body::Bytes,
    http::header,
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::Config;

use crate::service::Service;

use super::extract::PathParams;
use crate::http::{
    error::{ApiError, ApiResult},
    openapi::{NotFound, RateLimited},
};

/// Where the document is served, as the viewer fetches it.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The document, serialized once at start.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Bytes);

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(page))
        // The same page under the address people also type; one entry in
        // the document is enough.
        .route("/docs/", axum::routing::get(page))
        .routes(routes!(asset))
}

static VIEWER: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new([OPENAPI_PATH])
            // The default validator is an external web service.
            .validator_url("none")
            .try_it_out_enabled(true),
    )
});

/// This document
///
/// The OpenAPI 3.1 description of this server, generated from its code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    responses(
        (status = 200, description = "The OpenAPI document.", body = Object),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn openapi_json(Extension(json): Extension<OpenApiJson>) -> Response {
    super::json_bytes(json.0)
}

/// API documentation page
///
/// Swagger UI for this document; every asset it loads comes from this
/// server.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn page() -> ApiResult<Response> {
    let index = file("index.html")?;
    // The page links its assets relatively; served at `/docs` (no slash),
    // they must resolve under `/docs/`.
    let html = String::from_utf8_lossy(&index.bytes)
        .replacen("<head>", "<head>\n    <base href=\"/docs/\">", 1)
        .replacen(
            "<title>Swagger UI</title>",
            "<title>LANrage control plane API</title>",
            1,
        );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// API documentation asset
///
/// A script, style sheet or icon of the documentation page.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "documentation",
    params(("file" = String, Path, description = "The asset's file name.",
        example = "swagger-ui.css")),
    responses(
        (status = 200, description = "The asset.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
            (String = "image/png"),
        )),
        (status = 404, response = inline(NotFound)),
        (status = 429, response = inline(RateLimited)),
    )
)]
async fn asset(PathParams(name): PathParams<String>) -> ApiResult<Response> {
    let content_type = content_type(&name).ok_or_else(|| ApiError::not_found("no such asset"))?;
    let asset = file(&name)?;
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        asset.bytes.into_owned(),
    )
        .into_response())
}

fn file(name: &str) -> ApiResult<utoipa_swagger_ui::SwaggerFile<'static>> {
    match utoipa_swagger_ui::serve(name, VIEWER.clone()) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(ApiError::not_found("no such asset")),
        Err(error) => {
            tracing::error!(%error, name, "documentation asset failed");
            Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
            ))
        }
    }
}

/// The content type of an asset, by extension: only the kinds the page
/// uses are served.
fn content_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "png" => "image/png",
        _ => return None,
    })
}
