//! Relay choice (DESIGN, "Capabilities beyond v1", section 5): relays
//! report their load, members their round trips, and the server
//! recommends one relay per party. `RelayStatus` and the recommendation
//! are new objects: clients ignore unknown keys inside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{PartyId, PeerId, Region, Relay, RelayId, Timestamp};

/// The most relays one RTT report may name.
pub const MAX_RTT_ENTRIES: usize = 64;
/// The longest round trip a report may give, in ms.
pub const MAX_RTT_MS: f64 = 10_000.0;

/// The body of `POST /relays/{relay_id}/status`: at least one field; a
/// field left out keeps its last value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(min_properties = 1))]
pub struct RelayStatusReport {
    /// Sessions the relay carries now.
    #[serde(
        default,
        deserialize_with = "some_count",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = crate::schema::Capacity, required = false)
    )]
    pub sessions: Option<u32>,
    /// 0 to 1.
    #[serde(
        default,
        deserialize_with = "crate::de::given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = f64, required = false, minimum = 0.0, maximum = 1.0)
    )]
    pub load: Option<f64>,
    #[serde(
        default,
        deserialize_with = "crate::de::given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = bool, required = false))]
    pub draining: Option<bool>,
}

fn some_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    crate::de::count(d).map(Some)
}

/// A relay with its last status, as `GET /relays/status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayStatus {
    pub relay_id: RelayId,
    pub region: Region,
    pub capacity: u32,
    /// `null` until the relay sends a status.
    pub sessions: Option<u32>,
    /// `null` until the relay sends a status.
    pub load: Option<f64>,
    /// `active`, `draining`, `full` or `stale`.
    pub state: String,
    pub last_status_at: Option<Timestamp>,
}

/// `GET /relays/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayStatusesResponse {
    pub relays: Vec<RelayStatus>,
}

/// The body of `PUT /parties/{id}/peers/{peer}/relay-rtts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayRttsReport {
    /// Round trip to each relay in ms (over 0, at most 10000), `null` for
    /// unreachable; at most 64 entries.
    pub rtts: BTreeMap<RelayId, Option<f64>>,
}

/// `PUT /parties/{id}/peers/{peer}/relay-rtts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayRttsResponse {
    /// `ok`.
    pub status: String,
    /// Relay IDs of the report that name no registered relay.
    pub ignored: Vec<RelayId>,
}

/// `GET /parties/{id}/relay`: the relay the party's relayed pairs should
/// share, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartyRelayResponse {
    pub party_id: PartyId,
    pub relay: Option<Relay>,
    /// The worst round trip between two members through it, in ms.
    pub worst_pair_rtt_ms: Option<u32>,
    /// Each measured member's round trip to it.
    pub rtt_ms: BTreeMap<PeerId, u32>,
    /// Members that reported nothing (or whose report expired).
    pub unmeasured: Vec<PeerId>,
    /// The other candidates, best first.
    pub alternates: Vec<RelayId>,
    /// `initial`, `better`, `current draining`, `current full`, `current
    /// stale`, `current unreachable`, `current removed`, `no measurements`
    /// or `no candidate`.
    pub reason: String,
    pub seq: u64,
}
