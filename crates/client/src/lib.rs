//! Client library of the LANrage control plane: what a LANrage client links
//! to form a party with its friends' machines, find their endpoints, and
//! exchange hole-punching signals.
//!
//! - [`ControlPlane`]: the one interface, implemented by every backend.
//! - [`HttpClient`]: the server's HTTP API with pooling, timeouts, bearer
//!   tokens renewed transparently (by proving the peer's WireGuard key,
//!   [`PrivateKey`]), retries with backoff, and a heartbeat task.
//! - [`WsClient`]: the server's socket as [`Event`]s, reconnecting and
//!   resuming so that no party change is missed.
//! - [`RemoteControlPlane`]: both of them, falling back to the local plane
//!   when the server stays away.
//! - [`LocalControlPlane`]: no server; state and discovery files.
//! - [`create_control_plane`]: picks one from [`Settings`].
//! - [`proto`]: the wire types (`lanrage-proto`), re-exported so they always
//!   match this crate.
//!
//! # A complete program
//!
//! `examples/party.rs`, run by CI against a real server (`cargo run -p
//! lanrage-client --example party -- http://127.0.0.1:8667`):
//!
//! ```no_run
#![doc = include_str!("../examples/party.rs")]
//! ```
//!
//! # Guarantees
//!
//! - **Retries.** A request is retried (capped exponential backoff with
//!   jitter, `Retry-After` honoured) on transport errors, 5xx and 429,
//!   unless sending it twice could apply it twice: creating or joining a
//!   party, leaving, and sending a signal are retried only when the server
//!   certainly did not act (see [`HttpClient`]).
//! - **Reconnect and resume.** The socket reconnects with backoff, and
//!   resumes the party it follows from the last `seq` it saw: party events
//!   reach the application once each, in order, across reconnects and
//!   server restarts; when the server cannot replay, a
//!   [`Event::PartyUpdated`] with the whole party replaces them.
//! - **Backpressure.** The socket never waits for the application. An
//!   application that reads events too slowly gets [`Event::Lagged`] and
//!   then the party as it is, never a stale view (see [`Events`]).
//! - **Signals.** Each signal reaches the application once: through
//!   [`Events`], or through [`ControlPlane::poll_signals`], whichever takes
//!   it first. Neither way loses one the socket received.
//! - **Fallback.** [`create_control_plane`] uses the local plane when no
//!   server is configured, or when the server does not answer its first
//!   contact within a few seconds ([`ServerSettings::first_contact_timeout`]);
//!   [`LocalReason`] says why. A [`RemoteControlPlane`] whose socket gives
//!   up reconnecting serves from its local plane from then on
//!   ([`RemoteControlPlane::is_local`]). Errors that a fallback would only
//!   hide (a URL this client cannot serve, a certificate not trusted, a
//!   refusal) are returned instead.
//! - **Key-bound identity.** A client built with [`HttpConfig::key_bound`]
//!   (or [`Settings::key_bound`]) holds the WireGuard private key the
//!   application already has ([`PrivateKey`]); the key never leaves the
//!   process: only a proof against a fresh server challenge is sent. It
//!   acts as the peer ID the server answers (the `lr1…` ID derived from
//!   the key, or the peer's first ID after a rotation). A token that
//!   expires or is refused (401: logged out, revoked, rotated away) is
//!   renewed by proving the key again, with no person involved.
//!   [`HttpClient::rotate`] binds a new key to the same peer ID and proves
//!   that key from then on; [`HttpClient::logout`] revokes the token in
//!   use. v1 registration (`/auth/register?peer_id=`) is used only for a
//!   client configured with a peer ID alone, or when the server does not
//!   list `key-identity` in `GET /`'s `features` (a server from before
//!   key-bound identity), so existing users keep working.
//! - **TLS.** `https://` and `wss://` use rustls (ring), trusting the
//!   platform's roots by default; [`TlsConfig`] adds a private root or pins
//!   the server's certificate. A TLS failure is never retried and never
//!   falls back. This crate builds reqwest with `rustls-no-provider` and
//!   hands it its own configuration; an application that also builds
//!   reqwest clients of its own must install a rustls provider first
//!   (`rustls::crypto::ring::default_provider().install_default()`).

mod backoff;
mod control;
mod error;
mod event;
mod factory;
mod heartbeat;
mod http;
mod key;
mod local;
mod remote;
mod tls;
mod ws;

pub use lanrage_proto as proto;

pub use backoff::Backoff;
pub use control::{ControlPlane, LeaveOutcome, PeerDetails};
pub use error::{ClientError, Result, SharedError, TransportError, TransportKind, error_chain};
pub use event::{DisconnectReason, ErrorEvent, Event};
pub use factory::{LocalReason, SelectedPlane, ServerSettings, Settings, create_control_plane};
pub use http::{HttpClient, HttpConfig, KEY_IDENTITY_FEATURE};
pub use key::{PrivateKey, PrivateKeyError};
pub use local::{LocalConfig, LocalControlPlane, SetAside};
pub use remote::RemoteControlPlane;
pub use tls::TlsConfig;
pub use ws::{Events, StateChanges, WsClient, WsConfig, WsState, ws_url};
