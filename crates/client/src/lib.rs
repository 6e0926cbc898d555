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
//! # Host authority
//!
//! A server that lists `host-migration` ([`HOST_MIGRATION_FEATURE`]) in
//! `GET /`'s `features` gives a party's host more to do, and the party
//! settings that decide whether it outlives its host. These are methods of
//! [`HttpClient`] and [`RemoteControlPlane`], not of [`ControlPlane`]: the
//! local plane has no host authority (its host leaving ends the party, as
//! in v1), and a trait method it could only refuse would promise what it
//! cannot do.
//!
//! - [`HttpClient::register_party_with_settings`]: create a party with
//!   [`proto::SettingsPatch`] (`host_policy` `end`/`migrate`, `join_policy`
//!   `open`/`invite`, `max_members`).
//! - [`HttpClient::party_settings`] and
//!   [`HttpClient::update_party_settings`]: read (members) and change (the
//!   host) them; members hear [`Event::SettingsChanged`].
//! - [`HttpClient::transfer_host`]: hand the party to another member,
//!   optionally fenced by the `host_epoch` last seen (409 if it moved).
//! - [`HttpClient::kick`]: remove a member, optionally banning it from the
//!   party; everyone hears [`Event::PeerLeft`] with reason `kicked`.
//!
//! Against a server that does not list the feature they fail with
//! [`ClientError::Unsupported`] before sending anything (so an older server
//! never silently drops the settings of a new party); refusals are
//! [`ClientError::Refused`] with the server's status and `detail`. Who
//! hosts, and since which change, is in every party read and in the
//! socket's view: `party.host_id` and `extras.host_epoch` of
//! [`ControlPlane::get_party`] or [`WsClient::party`]. When a `migrate`
//! party's host leaves or goes quiet, the socket delivers
//! [`Event::HostChanged`] then [`Event::PartyUpdated`] with the new host,
//! and its view follows.
//!
//! # Join codes
//!
//! A server that lists `invites` ([`INVITES_FEATURE`]) lets a host hand out
//! short codes (`FROG-7421`) that expire and count their uses, instead of
//! the party ID. Like host authority, these are methods of [`HttpClient`]
//! and [`RemoteControlPlane`] only, and fail with
//! [`ClientError::Unsupported`] before sending anything to a server
//! without the feature (or once a remote plane is local):
//!
//! - [`HttpClient::create_invite`] (`max_uses`, `ttl`),
//!   [`HttpClient::invites`] and [`HttpClient::revoke_invite`] (by
//!   nameplate): the host's; members hear [`Event::InviteRevoked`] when a
//!   code ends early (`host`, or `guessing` after too many wrong secrets).
//! - [`HttpClient::preview_invite`]: where a code leads, without joining.
//! - [`HttpClient::join_by_code`]: joins exactly as
//!   [`ControlPlane::join_party`] does; the heartbeat, and a remote
//!   plane's socket, follow that party from then on.
//!
//! Codes are read as people type them, by the rules the server applies; a
//! code that is not the shape of one is refused (422) without being sent,
//! and every code that leads nowhere gets the server's one 404. Joining by
//! code is retried only when the server certainly did not act, since it
//! spends a use.
//!
//! # Relay choice and path plans
//!
//! A server that lists `relay-choice` ([`RELAY_CHOICE_FEATURE`])
//! recommends one relay per party, the one best for its worst relayed
//! pair; one that lists `path-plan` ([`PATH_PLAN_FEATURE`]) plans how
//! each pair of members should connect (`lan`, `direct`, `attempt` or
//! `relay`). Like join codes, these are methods of [`HttpClient`] and
//! [`RemoteControlPlane`] only, and fail with [`ClientError::Unsupported`]
//! before sending anything to a server without the feature (or once a
//! remote plane is local):
//!
//! - [`HttpClient::report_relay_rtts`]: this peer's round trip to each
//!   relay (`None`: unreachable), replacing its last report;
//!   [`HttpClient::party_relay`]: the party's relay, the worst pair
//!   through it, each member's round trip, the alternates and why;
//!   members hear [`Event::RelayRecommended`] when it changes.
//!   [`HttpClient::relay_statuses`] lists every relay's load and state;
//!   [`HttpClient::report_relay_status`] is the relay operator's report
//!   (sessions, load, draining), with the relay key.
//! - [`HttpClient::report_nat`]: this peer's NAT behaviour, from RFC 5780
//!   tests the application ran ([`Rfc5780Results`] reads them, `unknown`
//!   wherever a test could not run); [`HttpClient::report_paths`]: how
//!   reaching other members went (`direct`, `relayed`, `failed`, a round
//!   trip); [`HttpClient::party_paths`]: the plan of every pair; members
//!   hear [`Event::PathPlan`] with the pairs whose plan changed.
//!
//! After a snapshot [`Event::PartyUpdated`] (a reconnect that could not
//! replay what was missed, or [`Event::Lagged`]), read the relay and the
//! paths again: changes in between were not delivered one by one.
//!
//! # Guarantees
//!
//! - **Retries.** A request is retried (capped exponential backoff with
//!   jitter, `Retry-After` honoured) on transport errors, 5xx and 429,
//!   unless sending it twice could apply it twice: creating or joining a
//!   party (by ID or by code), leaving, making a join code, sending a
//!   signal, and reporting connection outcomes are retried only when the
//!   server certainly did not act (see [`HttpClient`]).
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
mod nat;
mod remote;
mod tls;
mod ws;

pub use lanrage_proto as proto;

pub use backoff::Backoff;
pub use control::{ControlPlane, LeaveOutcome, PeerDetails};
pub use error::{ClientError, Result, SharedError, TransportError, TransportKind, error_chain};
pub use event::{DisconnectReason, ErrorEvent, Event};
pub use factory::{LocalReason, SelectedPlane, ServerSettings, Settings, create_control_plane};
pub use http::{
    HOST_MIGRATION_FEATURE, HttpClient, HttpConfig, INVITES_FEATURE, KEY_IDENTITY_FEATURE,
    PATH_PLAN_FEATURE, RELAY_CHOICE_FEATURE,
};
pub use key::{PrivateKey, PrivateKeyError};
pub use local::{LocalConfig, LocalControlPlane, SetAside};
pub use nat::{FilteringTest, MappingTest, Rfc5780Results};
pub use remote::RemoteControlPlane;
pub use tls::TlsConfig;
pub use ws::{Events, StateChanges, WsClient, WsConfig, WsState, ws_url};
