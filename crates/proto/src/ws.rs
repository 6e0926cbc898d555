//! WebSocket messages: JSON text frames tagged by `type`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{
    Name, Party, PartyExtras, PartyId, PartySettings, PathPair, Peer, PeerId, PeerInfo, RelayId,
    SettingsPatch, SignalData, Timestamp,
};

/// What a client sends over the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    #[serde(alias = "hello")]
    Auth {
        /// Absent or `null`: the token's own peer (the newest upstream
        /// Python client sends `null` before its application sets an ID).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<PeerId>,
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    RegisterParty {
        name: Name,
        #[serde(deserialize_with = "crate::de::object")]
        host_peer: PeerInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<SettingsPatch>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    JoinParty {
        party_id: PartyId,
        #[serde(deserialize_with = "crate::de::object")]
        peer: PeerInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    LeaveParty {
        party_id: PartyId,
        peer_id: PeerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    Heartbeat {
        party_id: PartyId,
        peer_id: PeerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    Signal {
        party_id: PartyId,
        from_peer_id: PeerId,
        to_peer_id: PeerId,
        signal_data: SignalData,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    /// Joins the party of a join code; answered like `join_party`.
    JoinByCode {
        code: String,
        #[serde(deserialize_with = "crate::de::object")]
        peer: PeerInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    /// The host hands the party to another member.
    TransferHost {
        party_id: PartyId,
        new_host_id: PeerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_epoch: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    /// The host removes a member (and keeps it out with `ban`).
    Kick {
        party_id: PartyId,
        peer_id: PeerId,
        #[serde(default)]
        ban: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    Resume {
        party_id: PartyId,
        #[serde(deserialize_with = "crate::de::after_seq")]
        after_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
}

/// What the server sends over the socket. Party events carry the party's
/// `seq`; they are also what the server keeps in a party's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    AuthOk {
        peer_id: PeerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    PartyUpdate {
        party: Party,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        virtual_ip: Option<Ipv4Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
        /// True when this update replaces events the socket missed (a
        /// `resume` past the log, or a resync): the party as a read shows it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        snapshot: bool,
        /// As in a party read (who proved their key, the settings, the
        /// host epoch and succession): sent with snapshots and with the
        /// replies to `register_party` and `join_party`.
        #[serde(flatten)]
        extras: PartyExtras,
    },
    PeerJoined {
        party_id: PartyId,
        peer: Peer,
        seq: u64,
    },
    PeerLeft {
        party_id: PartyId,
        peer_id: PeerId,
        /// `left`, `timeout` or `kicked`; absent from older servers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        seq: u64,
    },
    /// The party has a new host (host authority).
    HostChanged {
        party_id: PartyId,
        old_host_id: PeerId,
        new_host_id: PeerId,
        /// `left`, `absent` or `transferred`.
        reason: String,
        host_epoch: u64,
        seq: u64,
    },
    /// A join code of the party ended early: `host` (revoked by the
    /// host) or `guessing` (too many wrong secrets).
    InviteRevoked {
        party_id: PartyId,
        nameplate: String,
        reason: String,
        seq: u64,
    },
    /// Pairs whose path plan changed (only those).
    PathPlan {
        party_id: PartyId,
        pairs: Vec<PathPair>,
        seq: u64,
    },
    /// The party's recommended relay changed (relay choice).
    RelayRecommendation {
        party_id: PartyId,
        relay_id: Option<RelayId>,
        worst_pair_rtt_ms: Option<u32>,
        reason: String,
        seq: u64,
    },
    /// The host changed the party's settings.
    PartySettings {
        party_id: PartyId,
        settings: PartySettings,
        seq: u64,
    },
    PartyEnded {
        party_id: PartyId,
        reason: String,
        seq: u64,
    },
    Signal {
        party_id: PartyId,
        from_peer_id: PeerId,
        to_peer_id: PeerId,
        signal_data: SignalData,
        sent_at: Timestamp,
    },
    /// The success of a request that has no other answer
    /// (`leave_party`, `heartbeat`, `signal`, `resume`).
    Ack {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<serde_json::Value>,
    },
}

impl ServerMessage {
    /// The party and event number of a party event.
    pub fn party_seq(&self) -> Option<(&PartyId, u64)> {
        match self {
            Self::PartyUpdate { party, seq, .. } => Some((&party.party_id, *seq)),
            Self::PeerJoined { party_id, seq, .. }
            | Self::PeerLeft { party_id, seq, .. }
            | Self::PartyEnded { party_id, seq, .. }
            | Self::HostChanged { party_id, seq, .. }
            | Self::PartySettings { party_id, seq, .. }
            | Self::InviteRevoked { party_id, seq, .. }
            | Self::RelayRecommendation { party_id, seq, .. }
            | Self::PathPlan { party_id, seq, .. } => Some((party_id, *seq)),
            _ => None,
        }
    }
}
