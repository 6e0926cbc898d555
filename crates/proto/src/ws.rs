//! WebSocket messages: JSON text frames tagged by `type`.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{Name, Party, PartyId, Peer, PeerId, PeerInfo, SignalData, Timestamp};

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
        /// As in a party read: who proved their key. Sent with snapshots
        /// and with the replies to `register_party` and `join_party`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        verified: BTreeMap<PeerId, bool>,
    },
    PeerJoined {
        party_id: PartyId,
        peer: Peer,
        seq: u64,
    },
    PeerLeft {
        party_id: PartyId,
        peer_id: PeerId,
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
            | Self::PartyEnded { party_id, seq, .. } => Some((party_id, *seq)),
            _ => None,
        }
    }
}
