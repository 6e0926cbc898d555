//! Client library of the LANrage control plane: what a LANrage client links
//! to find its party's peers.
//!
//! - [`ControlPlane`]: the one interface, implemented by every backend.
//! - [`HttpClient`]: the server's HTTP API with pooling, timeouts, bearer
//!   tokens renewed transparently, retries with backoff, and a heartbeat task.
//! - [`WsClient`]: the server's socket as typed [`WsEvent`]s, reconnecting
//!   and resuming so that no party change is missed.
//! - [`RemoteControlPlane`]: both of them, falling back to the local plane
//!   when the server stays away.
//! - [`LocalControlPlane`]: no server; state and discovery files.
//! - [`create_control_plane`]: picks one from [`Settings`].
//!
//! ```no_run
//! use lanrage_client::{ControlPlane, Settings, create_control_plane};
//! use lanrage_proto::{IpOrUnknown, Name, NatType, PeerId, PeerInfo, PublicKey};
//!
//! # async fn example() -> Result<(), lanrage_client::ClientError> {
//! let me = PeerId::parse("alice").expect("valid id");
//! let selected =
//!     create_control_plane(Settings::new(Some("http://127.0.0.1:8667".into()), me.clone())).await?;
//! let plane = selected.control_plane();
//! let joined = plane
//!     .register_party(
//!         Name::parse("Friday LAN").expect("valid name"),
//!         PeerInfo {
//!             peer_id: me,
//!             name: Name::parse("Alice").expect("valid name"),
//!             public_key: PublicKey::from_bytes(&[1; 32]),
//!             nat_type: NatType::Unknown,
//!             public_ip: IpOrUnknown::Unknown,
//!             public_port: 0,
//!             local_ip: IpOrUnknown::Unknown,
//!             local_port: 51820,
//!         },
//!     )
//!     .await?;
//! println!("share this party id: {}", joined.party.party_id);
//! # Ok(())
//! # }
//! ```

mod backoff;
mod control;
mod error;
mod factory;
pub mod files;
mod heartbeat;
mod http;
mod local;
mod remote;
mod ws;

pub use backoff::{Backoff, retry, retry_if};
pub use control::{ControlPlane, LeaveOutcome};
pub use error::{ClientError, Result, TransportKind, error_chain};
pub use factory::{LocalReason, SelectedPlane, ServerSettings, Settings, create_control_plane};
pub use http::{HttpClient, HttpConfig};
pub use local::{LocalConfig, LocalControlPlane, SetAside};
pub use remote::RemoteControlPlane;
pub use ws::{WsClient, WsConfig, WsEvent, WsEvents, WsState, ws_url};
