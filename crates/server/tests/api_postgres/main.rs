//! The integration suite of `tests/api` on PostgreSQL: the same tests, each
//! on a database of its own. Needs a PostgreSQL server
//! (`LANRAGE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`); without one the binary
//! says so and skips, unless `LANRAGE_REQUIRE_POSTGRES=1` (CI) makes that a
//! failure.

#![allow(clippy::unwrap_used)]

#[path = "../api/helpers.rs"]
mod helpers;

pub const BACKEND: helpers::Backend = helpers::Backend::Postgres;

#[path = "../api/admin.rs"]
mod admin;
#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/cleanup.rs"]
mod cleanup;
#[path = "../api/host.rs"]
mod host;
#[path = "../api/identity.rs"]
mod identity;
#[path = "../api/input.rs"]
mod input;
#[path = "../api/invites.rs"]
mod invites;
#[path = "../api/lifecycle.rs"]
mod lifecycle;
#[path = "../api/limits.rs"]
mod limits;
#[path = "../api/parties.rs"]
mod parties;
#[path = "../api/paths.rs"]
mod paths;
#[path = "../api/persistence.rs"]
mod persistence;
#[path = "../api/relay_choice.rs"]
mod relay_choice;
#[path = "../api/relays.rs"]
mod relays;
#[path = "../api/revocation.rs"]
mod revocation;
#[path = "../api/signals.rs"]
mod signals;
#[path = "../api/socket.rs"]
mod socket;
#[path = "../api/tls.rs"]
mod tls;
#[path = "../api/ws.rs"]
mod ws;

mod instances;
mod outage;
mod schema;
