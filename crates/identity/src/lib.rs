//! Key-bound identity (DESIGN, "Capabilities beyond v1", section 1): a peer
//! proves it holds the private half of its WireGuard key against a fresh
//! server challenge, and its peer ID is derived from that key.
//!
//! Both sides of the proof live here, so the server that checks a proof
//! and the client that makes one cannot disagree on the transcript:
//!
//! - [`WireGuardKey`]: a public key exactly as WireGuard prints it;
//! - [`ChallengeKey`]: the server's one-use X25519 key for a challenge;
//! - [`prove`] (client) and [`ChallengeKey::verify`] (server);
//! - [`derived_peer_id`] and [`is_derived_peer_id`].

mod key;
mod peer_id;
mod proof;

pub use key::{KeyError, WireGuardKey};
pub use peer_id::{derived_peer_id, is_derived_peer_id};
pub use proof::{ChallengeKey, ProofError, Purpose, prove, public_key_of};
