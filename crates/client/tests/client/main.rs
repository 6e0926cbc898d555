//! The client library against the real server (port 0, a fresh SQLite file
//! per test) and the local plane against real files.

#![allow(clippy::unwrap_used)]

mod agreement;
mod factory;
mod helpers;
mod host;
mod http;
mod identity;
mod invites;
mod local;
mod paths;
mod relay_choice;
mod retries;
mod tls;
mod ws;
