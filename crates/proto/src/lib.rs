//! Wire types of the LANrage control plane, shared by the server, the client
//! library and the command line.
//!
//! Identifiers and fields are validating newtypes ("parse, don't validate"):
//! a value of [`PeerId`], [`PublicKey`] or [`Name`] is valid by construction,
//! whether it was built in code or deserialized from JSON.
//!
//! The object types [`Peer`], [`Party`] and [`Relay`] reject unknown keys when
//! deserialized: existing Python clients build them with `cls(**data)`, so an
//! extra key is a compatibility break and our own tests must see it as one.

mod admin;
mod api;
pub mod de;
mod fields;
mod ids;
mod invites;
mod objects;
mod paths;
mod relay_choice;
#[cfg(feature = "openapi")]
pub mod schema;
mod settings;
mod time;
mod ws;

pub use admin::*;
pub use api::*;
pub use fields::{IpOrUnknown, Name, NatType, PublicKey, SignalData};
pub use ids::{PartyId, PeerId, Region, RelayId};
pub use invites::*;
pub use objects::{Party, Peer, PeerInfo, Relay, RelayRegistration, Signal};
pub use paths::*;
pub use relay_choice::*;
pub use settings::*;
pub use time::Timestamp;
pub use ws::{ClientMessage, ServerMessage};

/// Why a value was refused by one of the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Limits of the contract, in characters (Unicode scalar values).
pub mod limits {
    /// The largest request body the server reads.
    pub const MAX_BODY_CHARS: usize = 64 * 1024;
    /// The largest `signal_data` object, as serialized JSON.
    pub const MAX_SIGNAL_CHARS: usize = 16 * 1024;
    /// The deepest `signal_data` nests, in objects and arrays, counting
    /// itself: a drain answer wraps it in three more levels and must stay
    /// well within the 128 that common JSON parsers accept.
    pub const MAX_SIGNAL_DEPTH: usize = 32;
    /// Party and peer names.
    pub const MAX_NAME_CHARS: usize = 100;
    /// Peer, party and relay identifiers and regions.
    pub const MAX_ID_CHARS: usize = 64;
}
