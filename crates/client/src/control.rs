//! The one interface an application codes against, whatever serves it: the
//! remote server ([`HttpClient`](crate::HttpClient),
//! [`RemoteControlPlane`](crate::RemoteControlPlane)) or the local plane
//! ([`LocalControlPlane`](crate::LocalControlPlane)).

use std::collections::BTreeMap;

use async_trait::async_trait;
use lanrage_proto::{
    JoinPartyResponse, Name, PartyId, PartyResponse, Peer, PeerId, PeerInfo, Region, Relay, Signal,
    SignalData,
};

use crate::error::Result;

/// What leaving a party did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The peer left; the party goes on.
    Left,
    /// The host left, or the last member: the party is gone.
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

/// Party membership, discovery, liveness, signalling and relays.
///
/// Every implementation follows the server's rules: a peer is in at most one
/// party (joining another moves it), the host leaving ends the party, and a
/// refusal is a [`ClientError::Refused`](crate::ClientError::Refused) with
/// the status and `detail` the server would give.
///
/// ```no_run
/// use lanrage_client::{ControlPlane, LocalConfig, LocalControlPlane};
/// use lanrage_proto::{IpOrUnknown, Name, NatType, PeerId, PeerInfo, PublicKey};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// // Any implementation will do: this one needs no server.
/// let plane: Box<dyn ControlPlane> =
///     Box::new(LocalControlPlane::open(LocalConfig::new(me.clone())).await?);
/// let info = PeerInfo {
///     peer_id: me,
///     name: Name::parse("Alice").expect("valid name"),
///     public_key: PublicKey::from_bytes(&[7; 32]),
///     nat_type: NatType::Unknown,
///     public_ip: IpOrUnknown::Unknown,
///     public_port: 0,
///     local_ip: "192.168.1.20".parse().expect("valid ip"),
///     local_port: 51820,
/// };
/// let joined = plane.register_party(Name::parse("Friday LAN").expect("valid"), info).await?;
/// println!("party {} on {}", joined.party.party_id, joined.virtual_ip);
/// plane.close().await?;
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// The peer this plane acts for.
    fn peer_id(&self) -> &PeerId;

    /// Creates a party hosted by `host` (this plane's peer) and starts
    /// keeping the host alive.
    async fn register_party(&self, name: Name, host: PeerInfo) -> Result<JoinPartyResponse>;

    /// Joins `party_id` as `peer` (or refreshes `peer`'s info if already a
    /// member) and starts keeping it alive.
    async fn join_party(&self, party_id: &PartyId, peer: PeerInfo) -> Result<JoinPartyResponse>;

    /// Removes `peer_id` from the party; stops its heartbeat.
    async fn leave_party(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<LeaveOutcome>;

    /// The party with its members, their virtual IPs and its event number.
    async fn get_party(&self, party_id: &PartyId) -> Result<PartyResponse>;

    /// The party's members by peer id.
    async fn get_peers(&self, party_id: &PartyId) -> Result<BTreeMap<PeerId, Peer>>;

    /// One member of the party.
    async fn discover_peer(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Peer>;

    /// Marks `peer_id` alive now.
    async fn heartbeat(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<()>;

    /// Sends a hole-punching signal to another member.
    async fn send_signal(
        &self,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: SignalData,
    ) -> Result<()>;

    /// Takes the signals waiting for this plane's peer in the party.
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
