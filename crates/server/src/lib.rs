//! The LANrage control plane server: the HTTP API over a storage backend,
//! the service layer holding the party rules, the event bus and the cleanup
//! loop.
//!
//! [`Server::start`] opens the database and binds the listener; tests bind
//! port 0 and read [`Server::local_addr`], then [`Server::run`] serves until
//! the shutdown future completes.

pub mod api;
pub mod app;
pub mod config;
pub mod config_file;
pub mod events;
pub mod http;
pub mod metrics;
pub mod net;
pub mod process;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ws;

mod server;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod testing;

pub use config::Config;
pub use server::{Server, StartError};
