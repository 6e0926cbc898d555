//! The OpenAPI 3.1 document: its header, security schemes and the error
//! answers the routes share. Each route documents itself with
//! `#[utoipa::path]` beside its handler, and is added to the router through
//! that same annotation, so a route cannot be served undocumented.

use std::collections::BTreeMap;

use lanrage_proto::{ErrorBody, PartyId, PeerId};
use utoipa::{
    IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToResponse,
    openapi::{
        ContentBuilder, HeaderBuilder, RefOr, Response, ResponseBuilder,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// Security scheme of the routes a peer calls with its token.
pub const PEER_TOKEN: &str = "peer_token";
/// Security scheme of the relay routes, called with the operator's key.
pub const RELAY_KEY: &str = "relay_key";
/// Security scheme of the `/admin/…` routes, called with the operator's
/// admin key.
pub const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "LANrage control plane",
        description = "The rendezvous service of the LANrage mesh VPN: peers \
            register, create and join parties, discover each other's WireGuard \
            keys and endpoints, exchange NAT hole-punching signals and find \
            relays. Real-time events go over the WebSocket at `/ws` (see \
            docs/websocket.md). Every error is JSON `{\"detail\": \"...\"}`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "service", description = "What this server is and whether it is up."),
        (name = "auth", description = "Bearer tokens for peers."),
        (name = "parties", description = "Parties and their members."),
        (name = "paths", description = "How each pair of members should connect: NAT reports, outcomes, the plan."),
        (name = "invites", description = "Join codes (FROG-7421): made by the host, said aloud, redeemed by anyone with a token."),
        (name = "host", description = "What a party's host decides: settings, handing over, removing members."),
        (name = "signals", description = "NAT hole-punching messages between members."),
        (name = "relays", description = "Relay servers, registered by their operator."),
        (name = "realtime", description = "The WebSocket channel."),
        (name = "admin", description = "Operator actions on peers, with the admin key."),
        (name = "documentation", description = "This document and its viewer."),
        (name = "dashboard", description = "The operator's dashboard page; its data comes from the admin routes."),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PEER_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token `POST /auth/register` returned for this peer (24 h).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            RELAY_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator's relay key (`--relay-key`); a peer token gets 403.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ADMIN_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator's admin key (`--admin-key`); a peer token gets 403.",
                    ))
                    .build(),
            ),
        );
    }
}

fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(ErrorBody::schema()))
            .build(),
    )
}

fn retry_after() -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some("Seconds to wait before trying again."))
        .build()
}

macro_rules! error_response {
    ($(#[$doc:meta])* $name:ident, $description:literal $(, $header:literal => $value:expr)*) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let response = error($description)$(.header($header, $value))*;
                (stringify!($name), response.build().into())
            }
        }
    };
}

error_response!(
    /// 401.
    Unauthorized,
    "Missing, invalid or expired credentials.",
    "WWW-Authenticate" => HeaderBuilder::new()
        .schema(Some(String::schema()))
        .description(Some("`Bearer`."))
        .build()
);
error_response!(
    /// 403.
    Forbidden,
    "Authenticated, but not allowed: acting as another peer, not a member, or a wrong key."
);
error_response!(
    /// 404.
    NotFound,
    "No such party, peer or relay (or an identifier that cannot exist)."
);
error_response!(
    /// 409.
    Conflict,
    "The request conflicts with the current state (party full, concurrent change)."
);
error_response!(
    /// 413.
    TooLarge,
    "The request body exceeds 65536 characters."
);
error_response!(
    /// 422.
    Invalid,
    "Malformed JSON, a missing or mistyped field, or an invalid value; the detail names it."
);
error_response!(
    /// 429.
    RateLimited,
    "Too many requests from this address or token.",
    "Retry-After" => retry_after()
);
error_response!(
    /// 503.
    Unavailable,
    "The database is unreachable (answered within seconds, never a hang).",
    "Retry-After" => retry_after()
);

error_response!(
    /// 400 from `/ws`.
    BadUpgrade,
    "Not a WebSocket upgrade request (missing or wrong `Connection`, `Upgrade`, \
     `Sec-WebSocket-Version` or `Sec-WebSocket-Key`)."
);
error_response!(
    /// 426 from `/ws`.
    NotUpgradable,
    "The connection cannot be upgraded (for example HTTP/2 without extended CONNECT)."
);

macro_rules! response_set {
    ($(#[$doc:meta])* $name:ident: $($status:literal => $response:ty),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_string(), <$response as ToResponse>::response().1)),+])
            }
        }
    };
}

response_set!(
    /// What any route may answer when it is busy or its database is down.
    ServiceErrors: 429 => RateLimited, 503 => Unavailable,
);
response_set!(
    /// What a route about a party or peer, called with a token, may answer
    /// besides its success.
    MemberErrors:
        401 => Unauthorized,
        403 => Forbidden,
        404 => NotFound,
        429 => RateLimited,
        503 => Unavailable,
);
response_set!(
    /// What a route that reads a JSON body may answer about it.
    BodyErrors: 413 => TooLarge, 422 => Invalid,
);

/// The path of a party route.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "documentation only: handlers parse the path themselves"
)]
pub struct PartyPath {
    /// The party.
    party_id: PartyId,
}

/// The path of a route about one member of a party.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "documentation only: handlers parse the path themselves"
)]
pub struct MemberPath {
    /// The party.
    party_id: PartyId,
    /// The member.
    peer_id: PeerId,
}
