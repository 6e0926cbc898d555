//! Request extractors whose every rejection is an [`ApiError`], so a bad
//! body, query, path or credential gets the same `{"detail"}` answer.

use axum::{
    extract::{ConnectInfo, FromRef},
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
    response::IntoResponse,
};
use lanrage_proto::{PeerId, limits::MAX_BODY_CHARS};
use serde::de::DeserializeOwned;

use super::rate_limit::{ClientQuota, too_many};
use crate::http::{bearer_header, client_address, error::ApiError};
use crate::net::{ClientAddr, ClientKey};
use crate::service::{LookupKeys, Service};

/// A body of at most this many bytes can hold [`MAX_BODY_CHARS`] characters.
const MAX_BODY_BYTES: usize = MAX_BODY_CHARS * 4;

/// A JSON body: at most 64 Ki characters (413 beyond), parsed whatever its
/// content type, every parse or validation failure a 422 naming the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {MAX_BODY_CHARS} characters"),
    )
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&body_text(req).await?).map(JsonBody)
    }
}

/// A JSON body that may be left out: an empty body (or only whitespace)
/// stands for `T::default()`; anything else is read as [`JsonBody`].
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let text = body_text(req).await?;
        // No body, or JSON `null` (what the document's optional body
        // allows), is the default.
        if matches!(text.trim(), "" | "null") {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&text).map(OptionalJsonBody)
    }
}

/// The request's body as text: at most 64 Ki characters (413 beyond),
/// UTF-8 (422 otherwise), received within the body timeout (408).
async fn body_text(req: Request) -> Result<String, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            if timed_out(&error) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received within the body timeout",
                )
            } else {
                too_large()
            }
        })?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::unprocessable("request body is not UTF-8"))?;
    if text.len() > MAX_BODY_CHARS && text.chars().count() > MAX_BODY_CHARS {
        return Err(too_large());
    }
    Ok(text)
}

/// Whether reading a body failed because it did not arrive in time.
fn timed_out(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<crate::net::BodyTimedOut>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Refuses, before routing, any request that announces a body larger than
/// the limit, whether or not its route reads a body.
pub async fn reject_oversized(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return axum::response::IntoResponse::into_response(too_large());
    }
    next.run(request).await
}

/// Parses JSON into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&mut deserializer, &mut track);
    let value = lanrage_proto::de::object(tracked)
        .map_err(|inner: serde_json::Error| serde_path_to_error::Error::new(track.path(), inner));
    let value = value.map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            ApiError::unprocessable(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::unprocessable(format!("invalid field `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Query parameters; a missing or invalid one is a 422.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        parse_query(query).map(QueryParams)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::unprocessable("invalid query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::unprocessable(e.body_text()))
}

/// Path parameters; a segment that cannot name anything is a 404.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|_| ApiError::not_found("not found"))
    }
}

/// The `Authorization: Bearer` credential, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_header(&parts.headers)
}

/// An operator's secret that a route may require as its bearer credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKey {
    /// `--relay-key`: relays register and deregister with it.
    Relay,
    /// `--admin-key`: the `/admin/…` routes.
    Admin,
}

/// Why an operator credential check refused a request.
#[derive(Debug)]
pub enum OperatorRefusal {
    /// The client is out of its strict quota: seconds until it may retry
    /// (429 with that `Retry-After`).
    RateLimited(u64),
    /// Missing, wrong or unconfigured key (401 or 403).
    Refused(ApiError),
}

impl IntoResponse for OperatorRefusal {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::RateLimited(retry_after) => too_many(retry_after),
            Self::Refused(error) => error.into_response(),
        }
    }
}

/// Checks the request's bearer credential against an operator key: the one
/// function every route that takes an operator credential goes through.
///
/// Each check first spends one request of the client address's strict
/// (write) quota, whatever its outcome, and a client out of quota gets 429
/// before its credential is compared at all: guessing a key goes no faster
/// than the write rate on any route, and a right guess cannot be told from
/// a wrong one while limited.
pub fn operator_credential(
    parts: &Parts,
    service: &Service,
    key: OperatorKey,
) -> Result<(), OperatorRefusal> {
    if let Some(quota) = parts.extensions.get::<ClientQuota>() {
        quota.spend_strict().map_err(OperatorRefusal::RateLimited)?;
    }
    let given = bearer(parts);
    let checked = match key {
        OperatorKey::Relay => service.authorize_relay_operator(given),
        OperatorKey::Admin => service.authorize_admin(given),
    };
    checked.map_err(|e| OperatorRefusal::Refused(e.into()))
}

/// A caller holding the operator's relay key.
#[derive(Debug)]
pub struct RelayOperator;

impl<S: Send + Sync> FromRequestParts<S> for RelayOperator
where
    Service: FromRef<S>,
{
    type Rejection = OperatorRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        operator_credential(parts, &Service::from_ref(state), OperatorKey::Relay)?;
        Ok(RelayOperator)
    }
}

/// A caller holding the operator's admin key.
#[derive(Debug)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Service: FromRef<S>,
{
    type Rejection = OperatorRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        operator_credential(parts, &Service::from_ref(state), OperatorKey::Admin)?;
        Ok(Admin)
    }
}

/// The bearer token itself, unchecked: for the routes that act on the
/// token (logout, rotation) rather than only on its peer.
#[derive(Debug)]
pub struct BearerToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        bearer(parts)
            .map(|token| BearerToken(token.to_owned()))
            .ok_or_else(missing_credentials)
    }
}

fn missing_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing credentials: send Authorization: Bearer <token>",
    )
}

/// The authenticated peer.
#[derive(Debug, Clone)]
pub struct Caller(pub PeerId);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Service: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let service = Service::from_ref(state);
        let token = bearer(parts).ok_or_else(missing_credentials)?;
        let peer_id = service.authenticate(token).await?;
        tracing::Span::current().record("peer_id", peer_id.as_str());
        Ok(Caller(peer_id))
    }
}

/// An authenticated peer looking a join code up, with the keys its failed
/// look-ups count under: its client address (IPv6 per /64, behind a
/// trusted proxy the forwarded one) and its token.
#[derive(Debug, Clone)]
pub struct CodeLookup {
    pub caller: PeerId,
    pub keys: LookupKeys,
}

impl<S: Send + Sync> FromRequestParts<S> for CodeLookup
where
    Service: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let service = Service::from_ref(state);
        let token = bearer(parts).ok_or_else(missing_credentials)?;
        let grant = service.grant(token).await?;
        tracing::Span::current().record("peer_id", grant.peer_id.as_str());
        let client = parts
            .extensions
            .get::<ConnectInfo<ClientAddr>>()
            .map_or_else(
                || "unknown".to_owned(),
                |ConnectInfo(ClientAddr(peer))| {
                    let trusted = &service.config().trusted_proxies;
                    ClientKey::of(client_address(trusted, peer.ip(), &parts.headers)).to_string()
                },
            );
        Ok(CodeLookup {
            keys: LookupKeys::new(client, grant.token_hash()),
            caller: grant.peer_id,
        })
    }
}

/// A caller holding a peer token or the operator's relay key (`GET
/// /relays/status`). A bearer that is no valid token is checked as the
/// relay key, under the operator-credential rate limit; when it is neither,
/// the token's own refusal (401) answers.
#[derive(Debug)]
pub struct PeerOrRelayOperator;

impl<S: Send + Sync> FromRequestParts<S> for PeerOrRelayOperator
where
    Service: FromRef<S>,
{
    type Rejection = OperatorRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let service = Service::from_ref(state);
        let Some(token) = bearer(parts) else {
            return Err(OperatorRefusal::Refused(missing_credentials()));
        };
        let as_peer = match service.authenticate(token).await {
            Ok(_) => return Ok(PeerOrRelayOperator),
            Err(error) => error,
        };
        match operator_credential(parts, &service, OperatorKey::Relay) {
            Ok(()) => Ok(PeerOrRelayOperator),
            Err(OperatorRefusal::RateLimited(wait)) => Err(OperatorRefusal::RateLimited(wait)),
            // Neither: answered as the token it most likely is (expired or
            // revoked: 401, so the client registers again).
            Err(OperatorRefusal::Refused(_)) => Err(OperatorRefusal::Refused(as_peer.into())),
        }
    }
}
