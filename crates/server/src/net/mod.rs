//! The connection layer under the HTTP API and the WebSocket channel: the
//! accept loop, who a connection stands for, and the bounds every
//! connection lives within (per-address count, header, body and idle
//! timeouts, abort of a socket that does not read).

pub mod address;
pub mod counts;
pub mod http;
pub mod io;
pub mod listener;
mod stack_errors;

pub use address::ClientKey;
pub use http::{BodyTimedOut, HttpTimeouts};
pub use io::Connection;

use std::net::SocketAddr;

/// The client address of a request (the TCP peer), as handlers get it:
/// `ConnectInfo<ClientAddr>`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);
