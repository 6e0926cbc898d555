//! The objects of the contract: peers, parties, relays and signals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    IpOrUnknown, Name, NatType, PartyId, PeerId, PublicKey, Region, RelayId, SignalData, Timestamp,
};

/// A party member as the server reports it: exactly these nine keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub peer_id: PeerId,
    pub name: Name,
    pub public_key: PublicKey,
    pub nat_type: NatType,
    pub public_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub public_port: u16,
    pub local_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub local_port: u16,
    pub last_seen: Timestamp,
}

/// A peer as a client describes itself when creating or joining a party.
///
/// Unknown keys are ignored, and so is `last_seen`: the server keeps the
/// clock, a client's claim of when it was last seen means nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerInfo {
    pub peer_id: PeerId,
    pub name: Name,
    pub public_key: PublicKey,
    pub nat_type: NatType,
    pub public_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub public_port: u16,
    pub local_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub local_port: u16,
}

impl PeerInfo {
    pub fn into_peer(self, last_seen: Timestamp) -> Peer {
        Peer {
            peer_id: self.peer_id,
            name: self.name,
            public_key: self.public_key,
            nat_type: self.nat_type,
            public_ip: self.public_ip,
            public_port: self.public_port,
            local_ip: self.local_ip,
            local_port: self.local_port,
            last_seen,
        }
    }
}

impl From<Peer> for PeerInfo {
    fn from(peer: Peer) -> Self {
        Self {
            peer_id: peer.peer_id,
            name: peer.name,
            public_key: peer.public_key,
            nat_type: peer.nat_type,
            public_ip: peer.public_ip,
            public_port: peer.public_port,
            local_ip: peer.local_ip,
            local_port: peer.local_port,
        }
    }
}

/// A party: exactly these five keys, its members keyed by peer id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub party_id: PartyId,
    pub name: Name,
    pub host_id: PeerId,
    pub created_at: Timestamp,
    pub peers: BTreeMap<PeerId, Peer>,
}

/// A relay server as listed to peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub relay_id: RelayId,
    pub public_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub port: u16,
    pub region: Region,
    #[serde(deserialize_with = "crate::de::count")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Capacity))]
    pub capacity: u32,
    pub registered_at: Timestamp,
}

fn default_capacity() -> u32 {
    100
}

/// The body of `POST /relays`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayRegistration {
    pub relay_id: RelayId,
    pub public_ip: IpOrUnknown,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Port))]
    #[serde(deserialize_with = "crate::de::port")]
    pub port: u16,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "unknown"))]
    pub region: Region,
    #[serde(default = "default_capacity", deserialize_with = "crate::de::count")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Capacity, default = 100))]
    pub capacity: u32,
}

/// A NAT hole-punching message from one party member to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signal {
    pub party_id: PartyId,
    pub from_peer_id: PeerId,
    pub to_peer_id: PeerId,
    pub signal_data: SignalData,
    pub sent_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn python_peer_dict() -> serde_json::Value {
        // What LANrage's PeerInfo.to_dict() sends, naive timestamp included.
        json!({
            "peer_id": "peer_0123456789ab",
            "name": "alice",
            "public_key": "A".repeat(43) + "=",
            "nat_type": "unknown",
            "public_ip": "unknown",
            "public_port": 0,
            "local_ip": "192.168.1.20",
            "local_port": 51820,
            "last_seen": "2025-11-24T16:00:00.123456"
        })
    }

    #[test]
    fn peer_info_takes_what_the_python_client_sends() {
        let info: PeerInfo = serde_json::from_value(python_peer_dict()).unwrap();
        assert_eq!(info.public_ip, IpOrUnknown::Unknown);
        assert_eq!(info.local_port, 51820);
    }

    #[test]
    fn peer_info_ignores_unknown_keys_but_requires_known_ones() {
        let mut body = python_peer_dict();
        body["extra"] = json!(true);
        assert!(serde_json::from_value::<PeerInfo>(body.clone()).is_ok());
        body.as_object_mut().unwrap().remove("local_port");
        assert!(serde_json::from_value::<PeerInfo>(body).is_err());
    }

    #[test]
    fn peer_rejects_extra_keys() {
        let mut body = python_peer_dict();
        body["last_seen"] = json!("2025-11-24T16:00:00.123456+00:00");
        assert!(serde_json::from_value::<Peer>(body.clone()).is_ok());
        body["virtual_ip"] = json!("10.66.0.1");
        assert!(serde_json::from_value::<Peer>(body).is_err());
    }

    #[test]
    fn relay_registration_defaults_region_and_capacity() {
        let relay: RelayRegistration = serde_json::from_value(
            json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 51820}),
        )
        .unwrap();
        assert_eq!(relay.region.as_str(), "unknown");
        assert_eq!(relay.capacity, 100);
    }

    #[test]
    fn ports_out_of_range_are_refused() {
        let mut body = python_peer_dict();
        body["public_port"] = json!(65536);
        assert!(serde_json::from_value::<PeerInfo>(body.clone()).is_err());
        body["public_port"] = json!(-1);
        assert!(serde_json::from_value::<PeerInfo>(body.clone()).is_err());
        body["public_port"] = json!("80");
        assert!(serde_json::from_value::<PeerInfo>(body).is_err());
    }
}
