//! HTTP request and response bodies.
//!
//! Response envelopes accept unknown keys (new top-level fields are how the
//! contract grows); the objects inside them do not.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{
    Name, Party, PartyId, PartySettings, Peer, PeerId, PeerInfo, Relay, RelayId, SettingsPatch,
    Signal, SignalData, Timestamp,
};

/// Every error body: `{"detail": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub detail: String,
}

/// `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    pub service: String,
    pub version: String,
    pub status: String,
    pub parties: u64,
    pub relays: u64,
    /// The capabilities beyond v1 this server implements (`key-identity`,
    /// `invites`, `host-migration`, `relay-choice`, `path-plan`): a client
    /// relies on one only when it is listed. Absent from older servers.
    #[serde(default)]
    pub features: Vec<String>,
}

impl ServiceInfo {
    /// Whether the server lists `feature` in `features`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// `POST /auth/register?peer_id=P`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub token: String,
    pub peer_id: PeerId,
    pub expires_at: Timestamp,
}

/// The body of `POST /auth/challenge`: the WireGuard public key the peer
/// will prove it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    /// 44 characters of standard base64 (with padding) of 32 bytes, as
    /// WireGuard prints it: its one canonical spelling (the 43rd character
    /// ends in two zero bits).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
    )]
    pub public_key: String,
}

/// `POST /auth/challenge`: what to prove the key against, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeResponse {
    pub challenge_id: String,
    /// The public half of this challenge's own X25519 key.
    pub server_key: String,
    pub expires_at: Timestamp,
}

/// The body of `POST /auth/register/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyProof {
    pub challenge_id: String,
    /// The key the challenge was issued for, as sent then.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
    )]
    pub public_key: String,
    /// Base64 of HMAC-SHA256 keyed with X25519(key, server_key) over
    /// `"lanrage/key-proof/v1\n" + purpose + "\n" + challenge_id + "\n" +
    /// public_key`.
    pub proof: String,
}

/// `POST /auth/register/key`: a token for the peer the key is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyTokenResponse {
    pub token: String,
    pub peer_id: PeerId,
    pub expires_at: Timestamp,
    /// Always true: the peer proved its key.
    pub key_bound: bool,
}

/// The body of `POST /admin/peers/{peer_id}/revoke` (optional: no body
/// revokes without a ban).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokePeerRequest {
    /// Also ban the peer ID and, for a key-bound peer, its key.
    #[serde(default)]
    pub ban: bool,
}

/// `POST /admin/peers/{peer_id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokePeerResponse {
    /// `revoked`.
    pub status: String,
    /// How many of the peer's tokens were revoked.
    pub tokens: u64,
    pub banned: bool,
}

/// The top-level keys a party read (and the answers to create and join,
/// and a snapshot `party_update`) gains as capabilities land (DESIGN,
/// "Capabilities beyond v1", section 0); each is absent from servers
/// without its capability.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartyExtras {
    /// Whether each member proved its WireGuard key (key-bound identity):
    /// `{peer_id: bool}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified: BTreeMap<PeerId, bool>,
    /// The party's settings (section 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<PartySettings>,
    /// Starts at 1, one more per host change (section 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_epoch: Option<u64>,
    /// The present members other than the host, in the order they first
    /// joined: who would take over, first to last (section 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succession: Option<Vec<PeerId>>,
}

/// The body of `POST /parties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatePartyRequest {
    pub name: Name,
    #[serde(deserialize_with = "crate::de::object")]
    pub host_peer_info: PeerInfo,
    /// Settings other than the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsPatch>,
}

/// `POST /parties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatePartyResponse {
    pub party_id: PartyId,
    pub party: Party,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Ipv4String))]
    pub virtual_ip: Ipv4Addr,
    pub seq: u64,
    /// The keys a party read gains as capabilities land.
    #[serde(flatten)]
    pub extras: PartyExtras,
}

/// The body of `POST /parties/{id}/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinPartyRequest {
    pub party_id: PartyId,
    #[serde(deserialize_with = "crate::de::object")]
    pub peer_info: PeerInfo,
}

/// `POST /parties/{id}/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinPartyResponse {
    pub party: Party,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Ipv4String))]
    pub virtual_ip: Ipv4Addr,
    pub seq: u64,
    /// The keys a party read gains as capabilities land.
    #[serde(flatten)]
    pub extras: PartyExtras,
}

/// `GET /parties/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartyResponse {
    pub party: Party,
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = BTreeMap<PeerId, crate::schema::Ipv4String>)
    )]
    pub virtual_ips: BTreeMap<PeerId, Ipv4Addr>,
    pub seq: u64,
    /// The keys a party read gains as capabilities land.
    #[serde(flatten)]
    pub extras: PartyExtras,
}

/// `GET /parties/{id}/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeersResponse {
    pub peers: BTreeMap<PeerId, Peer>,
}

/// `GET /parties/{id}/peers/{peer}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerResponse {
    pub peer: Peer,
}

/// `{"status": ...}` answers: `ok`, `left`, `party_deleted`, `queued`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusResponse {
    pub status: String,
}

impl StatusResponse {
    pub fn new(status: &str) -> Self {
        Self {
            status: status.to_owned(),
        }
    }
}

/// `POST /relays` and `DELETE /relays/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayStatusResponse {
    pub status: String,
    pub relay_id: RelayId,
}

/// `GET /relays` and `GET /relays/{region}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelaysResponse {
    pub relays: Vec<Relay>,
}

/// The body of `POST /parties/{id}/signals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendSignalRequest {
    pub to_peer_id: PeerId,
    pub signal_data: SignalData,
}

/// `GET /parties/{id}/signals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignalsResponse {
    pub signals: Vec<Signal>,
}
