//! The party rules of the LANrage control plane, written once for the
//! server's service layer and the client's local plane.
//!
//! Pure: no I/O, no async, no clock and no randomness of its own. A caller
//! reads what it holds about a party into a [`Roster`], passes in the time
//! and random bytes, and gets back a decision as plain data (a
//! [`JoinPlan`], a [`RemovalPlan`], a [`RuleError`]). It then carries the
//! decision out on its own storage: the server inside one database
//! transaction, the local plane on its in-memory (or file-shared) book.
//! Deciding everything before changing anything is what keeps a refused
//! request from leaving a half-done change behind.
//!
//! What lives here:
//! - party IDs: [`party_id_from`];
//! - virtual IPs: [`virtual_ip`], [`free_vip_index`] (the range running out
//!   is what makes a party full);
//! - create, join, leave and heartbeat: [`plan_create`], [`plan_join`],
//!   [`plan_leave`], [`plan_removal`], [`check_member`];
//! - cleanup: [`stale_cutoff`], [`is_stale`], [`stale_members`],
//!   [`orphan_end`].

mod addresses;
mod cleanup;
mod membership;
mod party_id;

pub use addresses::{HOST_VIP_INDEX, MAX_VIP_INDEX, free_vip_index, vip_index, virtual_ip};
pub use cleanup::{is_stale, orphan_end, stale_cutoff, stale_members};
pub use membership::{
    CreatePlan, EndReason, JoinPlan, Removal, RemovalPlan, check_member, plan_create, plan_join,
    plan_leave, plan_removal,
};
pub use party_id::{PARTY_ID_BYTES, party_id_from};

use lanrage_proto::{PartyId, PeerId, Timestamp};

/// What the rules need to know of one party, borrowed from the caller's
/// own records: who hosts it and, per member, its address and its last
/// sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster<'a> {
    pub party_id: &'a PartyId,
    pub host_id: &'a PeerId,
    pub members: Vec<Member<'a>>,
}

/// One member of a [`Roster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    pub peer_id: &'a PeerId,
    /// The offset of its virtual IP ([`virtual_ip`]); none when the record
    /// holds no address these rules hand out (a book written by hand).
    pub vip_index: Option<u16>,
    pub last_seen: Timestamp,
}

impl Roster<'_> {
    /// The member `peer_id`, if it is one.
    pub fn member(&self, peer_id: &PeerId) -> Option<&Member<'_>> {
        self.members.iter().find(|m| m.peer_id == peer_id)
    }

    /// Whether `peer_id` is a member.
    pub fn has_member(&self, peer_id: &PeerId) -> bool {
        self.member(peer_id).is_some()
    }

    /// The virtual-IP offsets members hold.
    pub fn taken(&self) -> impl Iterator<Item = u16> + '_ {
        self.members.iter().filter_map(|m| m.vip_index)
    }
}

/// Why the rules refuse a request. The texts are the `detail` clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No such party (answered 404).
    #[error("party {0} not found")]
    PartyNotFound(PartyId),
    /// The party exists, the peer is not in it (answered 404).
    #[error("peer {peer_id} is not in party {party_id}")]
    NotAMember { party_id: PartyId, peer_id: PeerId },
    /// Every virtual IP of the party is taken (answered 409).
    #[error("party {0} is full")]
    PartyFull(PartyId),
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rosters built from short literals, for the unit tests.

    use lanrage_proto::{PartyId, PeerId, Timestamp};

    use crate::{Member, Roster};

    pub fn peer(id: &str) -> PeerId {
        PeerId::parse(id).expect("valid peer id")
    }

    pub fn party(id: &str) -> PartyId {
        PartyId::parse(id).expect("valid party id")
    }

    pub fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(1_700_000_000_000_000 + secs * 1_000_000)
    }

    /// Owned ids behind a [`Roster`]: (peer, address, last seen in seconds).
    pub struct Party {
        pub id: PartyId,
        pub host: PeerId,
        pub members: Vec<(PeerId, Option<u16>, Timestamp)>,
    }

    impl Party {
        pub fn new(id: &str, host: &str, members: &[(&str, u16, i64)]) -> Self {
            Self {
                id: party(id),
                host: peer(host),
                members: members
                    .iter()
                    .map(|(p, vip, seen)| (peer(p), Some(*vip), at(*seen)))
                    .collect(),
            }
        }

        pub fn roster(&self) -> Roster<'_> {
            Roster {
                party_id: &self.id,
                host_id: &self.host,
                members: self
                    .members
                    .iter()
                    .map(|(peer_id, vip_index, last_seen)| Member {
                        peer_id,
                        vip_index: *vip_index,
                        last_seen: *last_seen,
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Party, peer};

    #[test]
    fn a_roster_finds_its_members_and_their_addresses() {
        let party = Party::new("p", "host", &[("host", 1, 0), ("guest", 3, 0)]);
        let roster = party.roster();
        assert!(roster.has_member(&peer("guest")));
        assert!(!roster.has_member(&peer("stranger")));
        assert_eq!(roster.taken().collect::<Vec<_>>(), [1, 3]);
    }
}
