//! Integration tests: the real server on an ephemeral port over a fresh
//! SQLite file, spoken to over real HTTP.

// A test fails by panicking; unwrap is how these say "this must work".
#![allow(clippy::unwrap_used)]

mod helpers;

/// This binary runs the suite on SQLite; `tests/api_postgres` runs it on
/// PostgreSQL.
pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod admin;
mod auth;
mod cleanup;
mod connections;
mod dashboard;
mod host;
mod identity;
mod input;
mod invites;
mod lifecycle;
mod limits;
mod metrics;
mod openapi;
mod parties;
mod paths;
mod persistence;
mod relay_choice;
mod relays;
mod revocation;
mod signals;
mod socket;
mod sqlite_only;
mod tls;
mod ws;
mod ws_abuse;
