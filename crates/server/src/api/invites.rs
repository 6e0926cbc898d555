//! Join codes (DESIGN, "Capabilities beyond v1", section 3): the host's
//! invite routes and the routes that preview and redeem a code.

use axum::{Json, extract::State, http::StatusCode};
use lanrage_proto::{
    CreateInviteRequest, InvitePreview, InviteResponse, InvitesResponse, JoinByCodeRequest,
    JoinPartyResponse, StatusResponse,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Caller, CodeLookup, JsonBody, OptionalJsonBody, PathParams},
    parties::{join_answer, party_id},
};
use crate::{
    http::{
        error::ApiResult,
        openapi::{BodyErrors, Conflict, MemberErrors, PartyPath},
    },
    service::Service,
};

pub fn router() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
        .routes(routes!(preview))
        .routes(routes!(join))
}

/// Make a join code
///
/// The host only. `max_uses` 1 to 100 and `ttl_secs` 60 to 604800 default
/// to `--invite-max-uses` and `--invite-ttl-secs`; the body may be left
/// out. At most 20 live invites per party (409).
#[utoipa::path(
    post,
    path = "/parties/{party_id}/invites",
    tag = "invites",
    security(("peer_token" = [])),
    params(PartyPath),
    request_body(content = Option<CreateInviteRequest>, description = "Optional."),
    responses(
        (status = 201, description = "The new invite, with its code.", body = InviteResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn create(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
    OptionalJsonBody(body): OptionalJsonBody<CreateInviteRequest>,
) -> ApiResult<(StatusCode, Json<InviteResponse>)> {
    let party_id = party_id(raw)?;
    let invite = service
        .create_invite(&caller, &party_id, body.max_uses, body.ttl_secs)
        .await?;
    Ok((StatusCode::CREATED, Json(InviteResponse { invite })))
}

/// List the live join codes
///
/// The host only.
#[utoipa::path(
    get,
    path = "/parties/{party_id}/invites",
    tag = "invites",
    security(("peer_token" = [])),
    params(PartyPath),
    responses(
        (status = 200, description = "The live invites, oldest first.", body = InvitesResponse),
        MemberErrors,
    )
)]
async fn list(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<InvitesResponse>> {
    let party_id = party_id(raw)?;
    let invites = service.invites(&caller, &party_id).await?;
    Ok(Json(InvitesResponse { invites }))
}

/// Revoke a join code
///
/// The host only, by nameplate (`frog`, `frog-lamp`). Members get
/// `invite_revoked` with reason `host`.
#[utoipa::path(
    delete,
    path = "/parties/{party_id}/invites/{nameplate}",
    tag = "invites",
    security(("peer_token" = [])),
    params(
        ("party_id" = String, Path, description = "The party."),
        ("nameplate" = String, Path, description = "The code's word part."),
    ),
    responses(
        (status = 200, description = "`revoked`.", body = StatusResponse),
        MemberErrors,
    )
)]
async fn revoke(
    State(service): State<Service>,
    Caller(caller): Caller,
    PathParams((party, nameplate)): PathParams<(String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let party_id = party_id(party)?;
    service
        .revoke_invite(&caller, &party_id, &nameplate)
        .await?;
    Ok(Json(StatusResponse::new("revoked")))
}

/// Preview a join code
///
/// Any token. Unknown, expired, used-up and revoked codes and wrong
/// secrets all get the same 404; a malformed code gets 422. Failed
/// look-ups are limited per client address and per token
/// (`--invite-failures-per-min`, 429 with `Retry-After`).
#[utoipa::path(
    get,
    path = "/invites/{code}",
    tag = "invites",
    security(("peer_token" = [])),
    params(("code" = String, Path, description = "The code, as typed: `FROG-7421`.")),
    responses(
        (status = 200, description = "The party it leads to.", body = InvitePreview),
        (status = 422, response = inline(crate::http::openapi::Invalid)),
        MemberErrors,
    )
)]
async fn preview(
    State(service): State<Service>,
    lookup: CodeLookup,
    PathParams(code): PathParams<String>,
) -> ApiResult<Json<InvitePreview>> {
    Ok(Json(service.preview_invite(&lookup.keys, &code).await?))
}

/// Join by code
///
/// Any token; `peer_info.peer_id` must be the caller. Answers exactly as
/// `POST /parties/{id}/join` does (leaving a previous party, the same
/// events); a use is spent only when a newcomer's join succeeds. The 404s
/// and the limit on failed look-ups are those of the preview.
#[utoipa::path(
    post,
    path = "/invites/{code}/join",
    tag = "invites",
    security(("peer_token" = [])),
    params(("code" = String, Path, description = "The code, as typed: `FROG-7421`.")),
    request_body = JoinByCodeRequest,
    responses(
        (status = 200, description = "The party as joined.", body = JoinPartyResponse),
        (status = 409, response = inline(Conflict)),
        MemberErrors,
        BodyErrors,
    )
)]
async fn join(
    State(service): State<Service>,
    lookup: CodeLookup,
    PathParams(code): PathParams<String>,
    JsonBody(body): JsonBody<JoinByCodeRequest>,
) -> ApiResult<Json<JoinPartyResponse>> {
    let joined = service
        .join_by_code(&lookup.caller, &lookup.keys, &code, body.peer_info)
        .await?;
    Ok(Json(join_answer(joined)))
}
