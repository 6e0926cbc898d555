//! What the application is told: one [`Event`] type for party changes,
//! signals and the connection's state, whatever the socket's protocol
//! frames looked like.

use std::{fmt, net::Ipv4Addr, sync::Arc, time::Duration};

use lanrage_proto::{Party, PartyId, Peer, PeerId, Signal};

use crate::error::SharedError;

/// Something the application should know, in the order it happened.
///
/// Party events (`PeerJoined`, `PeerLeft`, `PartyUpdated`, `PartyEnded`)
/// of the party the plane follows come once each, in `seq` order, across
/// reconnects. A `Signal` is handed out once, either here or by
/// [`ControlPlane::poll_signals`](crate::ControlPlane::poll_signals),
/// whichever takes it first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A peer joined the party.
    PeerJoined {
        party_id: PartyId,
        peer: Peer,
        seq: u64,
    },
    /// A peer left the party (or was removed by the server's cleanup, or
    /// by the host).
    PeerLeft {
        party_id: PartyId,
        peer_id: PeerId,
        /// `left`, `timeout` or `kicked`; none from older servers.
        reason: Option<String>,
        seq: u64,
    },
    /// The party has a new host (host authority: `left`, `absent` or
    /// `transferred`); a [`Event::PartyUpdated`] with the new `host_id`
    /// follows.
    HostChanged {
        party_id: PartyId,
        old_host_id: PeerId,
        new_host_id: PeerId,
        reason: String,
        host_epoch: u64,
        seq: u64,
    },
    /// A join code of the party ended early: `host` (revoked by the host)
    /// or `guessing` (too many wrong secrets).
    InviteRevoked {
        party_id: PartyId,
        nameplate: String,
        reason: String,
        seq: u64,
    },
    /// The plan of these member pairs changed (path plan): how each pair
    /// should connect now. Only the changed pairs;
    /// [`HttpClient::party_paths`](crate::HttpClient::party_paths) has
    /// them all.
    PathPlan {
        party_id: PartyId,
        pairs: Vec<lanrage_proto::PathPair>,
        seq: u64,
    },
    /// The party's recommended relay changed (relay choice): re-read
    /// [`HttpClient::party_relay`](crate::HttpClient::party_relay) for the
    /// details (its address, each member's round trip).
    RelayRecommended {
        party_id: PartyId,
        relay_id: Option<lanrage_proto::RelayId>,
        worst_pair_rtt_ms: Option<u32>,
        reason: String,
        seq: u64,
    },
    /// The host changed the party's settings.
    SettingsChanged {
        party_id: PartyId,
        settings: lanrage_proto::PartySettings,
        seq: u64,
    },
    /// The whole party as it is now: after a member refreshed its info,
    /// after a reconnect that could not replay what was missed, and after
    /// [`Event::Lagged`]. Replaces whatever view the application held.
    PartyUpdated {
        party: Party,
        seq: u64,
        /// This peer's virtual IP, when the server said it.
        virtual_ip: Option<Ipv4Addr>,
    },
    /// The party ended (its host left, or it emptied).
    PartyEnded {
        party_id: PartyId,
        reason: String,
        seq: u64,
    },
    /// A hole-punching signal from another member.
    Signal(Signal),
    /// After a reconnect the party could not be resumed: it ended, or this
    /// peer is no longer in it, while the socket was down.
    PartyLost { party_id: PartyId, detail: String },
    /// The application read too slowly and `dropped` events were shed.
    /// When a party is followed, a [`Event::PartyUpdated`] with the current
    /// party comes right after this; signals that were shed come after it
    /// too (or from `poll_signals`): none is lost.
    Lagged { dropped: u64 },
    /// The socket is authenticated (`reconnect` is false the first time).
    Connected { peer_id: PeerId, reconnect: bool },
    /// The socket was lost; reconnecting follows.
    Disconnected { reason: DisconnectReason },
    /// Reconnect attempt `attempt` will start in `retry_in`; `error` is why
    /// the previous attempt (or the connection) failed.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        error: ErrorEvent,
    },
    /// Every reconnect attempt failed; the socket stopped. A
    /// [`RemoteControlPlane`](crate::RemoteControlPlane) serves from its
    /// local plane from now on.
    GaveUp { attempts: u32, error: ErrorEvent },
}

/// Why a socket was lost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server closed the socket with this close code and reason (4401:
    /// the token expired or was revoked).
    ClosedByServer { code: Option<u16>, reason: String },
    /// The connection ended without a close frame.
    ConnectionClosed,
    /// Nothing, not even a ping, arrived for this long.
    Silent { after: Duration },
    /// Reading or writing the socket failed.
    Failed(ErrorEvent),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClosedByServer {
                code: Some(code),
                reason,
            } => write!(f, "the server closed the socket ({code} {reason})"),
            Self::ClosedByServer { code: None, .. } => f.write_str("the server closed the socket"),
            Self::ConnectionClosed => f.write_str("the connection closed"),
            Self::Silent { after } => write!(f, "nothing from the server for {after:?}"),
            Self::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// An error carried by an event: shared, since events are cloned, and
/// equal only to itself.
#[derive(Debug, Clone)]
pub struct ErrorEvent(pub SharedError);

impl ErrorEvent {
    pub(crate) fn new(error: crate::ClientError) -> Self {
        Self(Arc::new(error))
    }

    /// The error.
    pub fn error(&self) -> &crate::ClientError {
        &self.0
    }
}

impl PartialEq for ErrorEvent {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for ErrorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::error::error_chain(self.0.as_ref()))
    }
}
