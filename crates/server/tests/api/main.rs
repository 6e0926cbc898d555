//! Integration tests: the real server on an ephemeral port over a fresh
//! SQLite file, spoken to over real HTTP.

// A test fails by panicking; unwrap is how these say "this must work".
#![allow(clippy::unwrap_used)]

mod helpers;

mod auth;
mod cleanup;
mod input;
mod parties;
mod persistence;
mod relays;
mod signals;
mod socket;
mod ws;
