//! The operator's view (`/admin/…` routes, with the admin key): parties
//! with their members, relays with their state, and the server's health.
//! These are new objects: they may gain keys later, so clients ignore
//! unknown ones inside them.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Name, NatType, PartyId, PartySettings, PeerId, Relay, Timestamp};

/// The most parties one page of `GET /admin/parties` holds, and the
/// default.
pub const MAX_ADMIN_PAGE: u32 = 500;
pub const DEFAULT_ADMIN_PAGE: u32 = 100;

/// A member as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminMember {
    pub peer_id: PeerId,
    pub name: Name,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.66.0.2"))]
    pub virtual_ip: Ipv4Addr,
    pub nat_type: NatType,
    pub joined_at: Timestamp,
    /// Its last heartbeat.
    pub last_seen: Timestamp,
    /// Whether the peer proved a bound key.
    pub verified: bool,
}

/// A party as the operator sees it: `GET /admin/parties/{party_id}` and
/// each entry of `GET /admin/parties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminParty {
    pub party_id: PartyId,
    pub name: Name,
    pub host_id: PeerId,
    pub created_at: Timestamp,
    /// The number of its last event.
    pub seq: u64,
    pub host_epoch: u64,
    pub settings: PartySettings,
    /// In join order (by virtual IP).
    pub members: Vec<AdminMember>,
}

/// `GET /admin/parties`: a page, by party ID. `next_after` is the `after`
/// of the next page; none on the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminPartiesResponse {
    pub parties: Vec<AdminParty>,
    pub next_after: Option<PartyId>,
}

/// A relay as the operator sees it: the v1 relay (as `GET /relays` gives
/// it), when it was last heard from, and its state for relay choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminRelay {
    pub relay: Relay,
    /// Its last registration or status report.
    pub last_seen: Timestamp,
    /// `active`, `draining`, `full` or `stale`.
    pub state: String,
    pub sessions: Option<u32>,
    pub load: Option<f64>,
}

/// `GET /admin/relays`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminRelaysResponse {
    pub relays: Vec<AdminRelay>,
}

/// `GET /admin/stats`: what the dashboard shows besides parties and
/// relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminStats {
    pub version: String,
    /// Seconds since this instance started.
    pub uptime_secs: u64,
    pub parties: u64,
    /// Party members.
    pub peers: u64,
    pub relays: u64,
    /// Open sockets on this instance, authenticated or not.
    pub sockets: u64,
    /// HTTP requests answered by this instance since it started.
    pub requests_total: u64,
    /// Messages this instance sent on sockets since it started (events,
    /// replies, signals).
    pub socket_messages_total: u64,
    /// `ok`, or what the database check answered.
    pub database: String,
    /// How long the database check took, in milliseconds.
    pub database_ms: f64,
}
