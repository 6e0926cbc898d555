//! Parties, peers and party events for the socket units' tests.

use std::collections::BTreeMap;

use lanrage_proto::{
    IpOrUnknown, Name, NatType, Party, PartyId, PartyResponse, Peer, PeerId, PublicKey,
    ServerMessage, Timestamp,
};

pub(super) fn peer_id(id: &str) -> PeerId {
    PeerId::parse(id).expect("valid peer id")
}

/// The party every fixture event belongs to.
pub(super) fn party_id() -> PartyId {
    PartyId::parse("friday").expect("valid party id")
}

pub(super) fn peer(id: &str) -> Peer {
    Peer {
        peer_id: peer_id(id),
        name: Name::parse(id).expect("valid name"),
        public_key: PublicKey::from_bytes(&[1; 32]),
        nat_type: NatType::Unknown,
        public_ip: IpOrUnknown::Unknown,
        public_port: 0,
        local_ip: IpOrUnknown::Unknown,
        local_port: 51820,
        last_seen: Timestamp::from_micros(0),
    }
}

/// The party at `seq` with `members`, the first one hosting.
pub(super) fn party(seq: u64, members: &[&str]) -> PartyResponse {
    PartyResponse {
        party: Party {
            party_id: party_id(),
            name: Name::parse("Friday LAN").expect("valid name"),
            host_id: peer_id(members.first().copied().unwrap_or("alice")),
            created_at: Timestamp::from_micros(0),
            peers: members.iter().map(|id| (peer_id(id), peer(id))).collect(),
        },
        virtual_ips: BTreeMap::new(),
        seq,
        extras: Default::default(),
    }
}

pub(super) fn joined(id: &str, seq: u64) -> ServerMessage {
    ServerMessage::PeerJoined {
        party_id: party_id(),
        peer: peer(id),
        seq,
    }
}

pub(super) fn left(id: &str, seq: u64) -> ServerMessage {
    ServerMessage::PeerLeft {
        party_id: party_id(),
        peer_id: peer_id(id),
        reason: Some("left".into()),
        seq,
    }
}

pub(super) fn ended(seq: u64) -> ServerMessage {
    ServerMessage::PartyEnded {
        party_id: party_id(),
        reason: "host left".into(),
        seq,
    }
}

/// `party` as a `party_update`, unrequested.
pub(super) fn update(party: &PartyResponse) -> ServerMessage {
    ServerMessage::PartyUpdate {
        party: party.party.clone(),
        seq: party.seq,
        virtual_ip: None,
        request_id: None,
        snapshot: false,
        extras: Default::default(),
    }
}

/// A message that is no party event.
pub(super) fn ack(request: &str) -> ServerMessage {
    ServerMessage::Ack {
        status: "ok".into(),
        request_id: Some(serde_json::json!(request)),
    }
}
