//! Path plan (DESIGN, "Capabilities beyond v1", section 6): members' NAT
//! behaviour and connection outcomes in, a plan per member pair out.
//! `PathPair` is a new object: clients ignore unknown keys inside it.

use serde::{Deserialize, Serialize};

use crate::{InvalidValue, NatType, PartyId, PeerId, Timestamp};

/// The most outcomes one report may carry.
pub const MAX_PATH_REPORTS: usize = 64;

/// How a NAT maps a host's outgoing flows (RFC 4787, as measured per
/// RFC 5780).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NatBehaviour {
    None,
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    Unknown,
}

impl NatBehaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::EndpointIndependent => "endpoint_independent",
            Self::AddressDependent => "address_dependent",
            Self::AddressAndPortDependent => "address_and_port_dependent",
            Self::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for NatBehaviour {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        [
            Self::None,
            Self::EndpointIndependent,
            Self::AddressDependent,
            Self::AddressAndPortDependent,
            Self::Unknown,
        ]
        .into_iter()
        .find(|b| b.as_str() == text)
        .ok_or_else(|| InvalidValue(format!("{text:?} is not a NAT behaviour")))
    }
}

/// The body of `PUT /parties/{id}/peers/{peer}/nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NatReport {
    pub mapping: NatBehaviour,
    pub filtering: NatBehaviour,
    /// Whether a port-mapping protocol (UPnP, NAT-PMP, PCP) opened a port.
    #[serde(default)]
    pub port_mapping: bool,
}

impl NatReport {
    /// What a v1 `nat_type` says, for a member that reported nothing
    /// (DESIGN's table).
    pub fn from_nat_type(nat_type: NatType) -> Self {
        use NatBehaviour::{
            AddressAndPortDependent as Apd, AddressDependent as Ad, EndpointIndependent as Ei,
            None as Open, Unknown,
        };
        let (mapping, filtering) = match nat_type {
            NatType::Open => (Open, Open),
            NatType::FullCone => (Ei, Ei),
            NatType::RestrictedCone => (Ei, Ad),
            NatType::PortRestrictedCone => (Ei, Apd),
            NatType::Symmetric => (Apd, Apd),
            NatType::Unknown => (Unknown, Unknown),
        };
        Self {
            mapping,
            filtering,
            port_mapping: false,
        }
    }

    /// `mapping/filtering`, as statistics name a class.
    pub fn class(&self) -> String {
        format!("{}/{}", self.mapping.as_str(), self.filtering.as_str())
    }
}

/// What happened when a member tried to reach another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PathOutcome {
    Direct,
    Relayed,
    Failed,
}

impl PathOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relayed => "relayed",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for PathOutcome {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "direct" => Ok(Self::Direct),
            "relayed" => Ok(Self::Relayed),
            "failed" => Ok(Self::Failed),
            other => Err(InvalidValue(format!("{other:?} is not a path outcome"))),
        }
    }
}

/// One outcome about another member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathReport {
    pub peer_id: PeerId,
    pub outcome: PathOutcome,
    /// Over 0, at most 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// The body of `POST /parties/{id}/paths`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathReports {
    pub reports: Vec<PathReport>,
}

/// How a pair of members should connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PathPlanKind {
    /// Try local endpoints first.
    Lan,
    /// Punch; no relay unless it fails.
    Direct,
    /// Relay and punch at once.
    Attempt,
    /// Relay at once, probing direct only in the background.
    Relay,
}

impl PathPlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Direct => "direct",
            Self::Attempt => "attempt",
            Self::Relay => "relay",
        }
    }
}

/// What a plan is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PathBasis {
    Observed,
    Statistics,
    SamePublicIp,
    NatTable,
}

/// The plan for one pair of members, `a < b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathPair {
    pub a: PeerId,
    pub b: PeerId,
    pub plan: PathPlanKind,
    pub confidence: f64,
    pub basis: PathBasis,
    /// The latest reported round trip (the mean of both directions when
    /// both are fresh), in ms.
    pub rtt_ms: Option<f64>,
    /// The latest fresh outcome either side reported.
    pub observed: Option<PathOutcome>,
    pub observed_at: Option<Timestamp>,
}

/// `GET /parties/{id}/paths`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathsResponse {
    pub party_id: PartyId,
    pub pairs: Vec<PathPair>,
    pub seq: u64,
}

/// One unordered NAT-class pair's outcomes in the statistics window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathClassStats {
    pub a: String,
    pub b: String,
    pub direct: u64,
    pub relayed: u64,
    pub failed: u64,
}

/// `GET /admin/paths/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathStatsResponse {
    pub classes: Vec<PathClassStats>,
}
