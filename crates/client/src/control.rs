//! The one interface an application codes against, whatever serves it: the
//! remote server ([`HttpClient`](crate::HttpClient),
//! [`RemoteControlPlane`](crate::RemoteControlPlane)) or the local plane
//! ([`LocalControlPlane`](crate::LocalControlPlane)), and how the plane's
//! own peer describes itself.

use std::collections::BTreeMap;

use async_trait::async_trait;
use lanrage_proto::{
    IpOrUnknown, JoinPartyResponse, Name, NatType, PartyId, PartyResponse, Peer, PeerId, PeerInfo,
    PublicKey, Region, Relay, Signal, SignalData,
};

use crate::error::Result;

/// What leaving a party did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveOutcome {
    /// The peer left; the party goes on.
    Left,
    /// The party is gone: its last member left, or its host left a party
    /// that ends with its host (the v1 rule, `host_policy` `end`).
    PartyDeleted,
}

impl LeaveOutcome {
    /// The `status` the server answers with: `left` or `party_deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::PartyDeleted => "party_deleted",
        }
    }
}

/// How the plane's own peer shows itself to the party: everything the
/// server keeps of a member but its ID, which is the plane's.
///
/// ```
/// use lanrage_client::PeerDetails;
/// use lanrage_client::proto::{Name, NatType, PublicKey};
///
/// let me = PeerDetails::new(Name::parse("Alice").unwrap(), PublicKey::from_bytes(&[7; 32]))
///     .with_nat_type(NatType::FullCone)
///     .with_local_endpoint("192.168.1.20".parse().unwrap(), 51820);
/// assert_eq!(me.local_port, 51820);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerDetails {
    /// The name other members see.
    pub name: Name,
    /// The WireGuard public key.
    pub public_key: PublicKey,
    pub nat_type: NatType,
    /// The endpoint other members reach over the internet, when known.
    pub public_ip: IpOrUnknown,
    pub public_port: u16,
    /// The endpoint on the local network.
    pub local_ip: IpOrUnknown,
    pub local_port: u16,
}

impl PeerDetails {
    /// A peer called `name` with `public_key`, its NAT and endpoints
    /// unknown (port 0) until said.
    pub fn new(name: Name, public_key: PublicKey) -> Self {
        Self {
            name,
            public_key,
            nat_type: NatType::Unknown,
            public_ip: IpOrUnknown::Unknown,
            public_port: 0,
            local_ip: IpOrUnknown::Unknown,
            local_port: 0,
        }
    }

    pub fn with_nat_type(mut self, nat_type: NatType) -> Self {
        self.nat_type = nat_type;
        self
    }

    /// The endpoint other members reach over the internet.
    pub fn with_public_endpoint(mut self, ip: IpOrUnknown, port: u16) -> Self {
        self.public_ip = ip;
        self.public_port = port;
        self
    }

    /// The endpoint on the local network.
    pub fn with_local_endpoint(mut self, ip: IpOrUnknown, port: u16) -> Self {
        self.local_ip = ip;
        self.local_port = port;
        self
    }

    /// The wire form, for the peer `peer_id`.
    pub fn into_info(self, peer_id: PeerId) -> PeerInfo {
        PeerInfo {
            peer_id,
            name: self.name,
            public_key: self.public_key,
            nat_type: self.nat_type,
            public_ip: self.public_ip,
            public_port: self.public_port,
            local_ip: self.local_ip,
            local_port: self.local_port,
        }
    }
}

impl From<PeerInfo> for PeerDetails {
    /// A peer's details without its ID.
    fn from(info: PeerInfo) -> Self {
        Self {
            name: info.name,
            public_key: info.public_key,
            nat_type: info.nat_type,
            public_ip: info.public_ip,
            public_port: info.public_port,
            local_ip: info.local_ip,
            local_port: info.local_port,
        }
    }
}

/// Party membership, discovery, liveness, signalling and relays, for the
/// one peer the plane acts for ([`ControlPlane::peer_id`]).
///
/// Every implementation follows the server's rules: a peer is in at most one
/// party (joining another moves it), the host leaving ends the party
/// (unless a server party's `host_policy` is `migrate`), and a refusal is a
/// [`ClientError::Refused`](crate::ClientError::Refused) with the status and
/// `detail` the server would give.
///
/// Host authority (party settings, handing the party over, removing a
/// member) is not here: only a server has it, so it is a set of methods of
/// [`HttpClient`](crate::HttpClient) and
/// [`RemoteControlPlane`](crate::RemoteControlPlane) (see the crate
/// documentation, "Host authority").
///
/// ```no_run
/// use lanrage_client::{ControlPlane, LocalConfig, LocalControlPlane, PeerDetails};
/// use lanrage_client::proto::{Name, PeerId, PublicKey};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// // Any implementation will do: this one needs no server.
/// let plane: Box<dyn ControlPlane> = Box::new(LocalControlPlane::open(LocalConfig::new(me)).await?);
/// let details = PeerDetails::new(Name::parse("Alice").expect("valid name"), PublicKey::from_bytes(&[7; 32]))
///     .with_local_endpoint("192.168.1.20".parse().expect("valid ip"), 51820);
/// let joined = plane.register_party(Name::parse("Friday LAN").expect("valid"), details).await?;
/// println!("party {} on {}", joined.party.party_id, joined.virtual_ip);
/// plane.close().await?;
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// The peer this plane acts for.
    fn peer_id(&self) -> &PeerId;

    /// Creates a party hosted by this plane's peer, shown as `me`, and
    /// starts keeping the host alive.
    async fn register_party(&self, name: Name, me: PeerDetails) -> Result<JoinPartyResponse>;

    /// Joins `party_id` as this plane's peer, shown as `me` (or refreshes
    /// its details if already a member), and starts keeping it alive.
    async fn join_party(&self, party_id: &PartyId, me: PeerDetails) -> Result<JoinPartyResponse>;

    /// Removes this plane's peer from the party; stops its heartbeat.
    async fn leave_party(&self, party_id: &PartyId) -> Result<LeaveOutcome>;

    /// The party with its members, their virtual IPs and its event number.
    async fn get_party(&self, party_id: &PartyId) -> Result<PartyResponse>;

    /// The party's members by peer id.
    async fn get_peers(&self, party_id: &PartyId) -> Result<BTreeMap<PeerId, Peer>>;

    /// One member of the party.
    async fn discover_peer(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Peer>;

    /// Marks this plane's peer alive now (the plane's own heartbeat task
    /// does this on its own after a create or a join).
    async fn heartbeat(&self, party_id: &PartyId) -> Result<()>;

    /// Sends a hole-punching signal to another member.
    async fn send_signal(
        &self,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: SignalData,
    ) -> Result<()>;

    /// Takes the signals waiting for this plane's peer in the party. Each
    /// signal is handed out once.
    async fn poll_signals(&self, party_id: &PartyId) -> Result<Vec<Signal>>;

    /// Every relay, ordered by region then id.
    async fn list_relays(&self) -> Result<Vec<Relay>>;

    /// The relays of one region, ordered by id.
    async fn relays_by_region(&self, region: &Region) -> Result<Vec<Relay>>;

    /// Stops background work (heartbeats, sockets, cleanup) and flushes
    /// what must be saved. The party is not left: call
    /// [`leave_party`](ControlPlane::leave_party) for that.
    async fn close(&self) -> Result<()>;
}
