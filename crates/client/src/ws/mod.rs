//! The remote control plane's real-time channel: a WebSocket to `/ws` that
//! authenticates, turns server frames into the application's events, and
//! reconnects by an explicit state machine, resuming the party so that no
//! change is lost.
//!
//! - `client`: [`WsClient`], the application's handle on the socket task.
//! - `config`, `events`: what the application sets and what it is told.
//! - `connect`: the socket URL, opening a socket and authenticating it.
//! - `tracker`: the followed party kept from the server's messages (`seq`
//!   order, gaps, resumes, snapshots); no I/O, so it is tested directly.
//! - `delivery`: events handed to a reader that may be slow, shedding
//!   when it falls too far behind.
//! - `signals`: signals kept until the application takes them, from the
//!   events or from `poll_signals`.
//! - `task`: the state machine of connections, which drives all of them.

mod client;
mod config;
mod connect;
mod delivery;
mod events;
#[cfg(test)]
mod fixtures;
mod signals;
mod task;
mod tracker;

pub use client::WsClient;
pub use config::WsConfig;
pub use connect::ws_url;
pub use events::{Events, StateChanges, WsState};
