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
//!   [`orphan_end`];
//! - host authority: [`succession`], who may join ([`check_admission`]),
//!   transfer and kick ([`check_transfer`], [`check_kick`]), replacing an
//!   absent host ([`plan_absent_host`]);
//! - relay choice: [`choose_relay`];
//! - path plan: [`plan_pair`], [`nat_table`];
//! - join codes (`FROG-7421`): [`InviteCode`], [`Nameplate`],
//!   [`pick_nameplate`], [`generate_secret`], [`needs_two_words`]
//!   (module [`invite_code`]).

mod addresses;
mod cleanup;
mod host;
pub mod invite_code;
mod membership;
mod party_id;
mod path_plan;
mod relay_choice;

pub use addresses::{HOST_VIP_INDEX, MAX_VIP_INDEX, free_vip_index, vip_index, virtual_ip};
pub use cleanup::{is_stale, orphan_end, stale_cutoff, stale_members};
pub use host::{
    Admission, HostChange, check_admission, check_host, check_kick, check_transfer,
    plan_absent_host, succession,
};
pub use invite_code::{
    CodeError, INVITE_NOT_FOUND, InviteCode, InviteDigits, InviteSecret, MalformedCode, Nameplate,
    generate_secret, needs_two_words, pick_nameplate,
};
pub use membership::{
    CreatePlan, EndReason, JoinPlan, Removal, RemovalPlan, check_member, plan_create, plan_join,
    plan_leave, plan_removal,
};
pub use party_id::{PARTY_ID_BYTES, party_id_from};
pub use path_plan::{ClassOutcomes, PairPlan, PairSide, class_pair, nat_table, plan_pair};
pub use relay_choice::{Measurements, Pairs, RelayChoice, RelayState, RelayView, choose_relay};

use lanrage_proto::{HostPolicy, PartyId, PeerId, Timestamp};

/// What the rules need to know of one party, borrowed from the caller's
/// own records: who hosts it and, per member, its address and its last
/// sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster<'a> {
    pub party_id: &'a PartyId,
    pub host_id: &'a PeerId,
    /// What the host leaving does (v1: [`HostPolicy::End`]).
    pub host_policy: HostPolicy,
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
    /// When it first joined the party: the order of succession.
    pub joined_at: Timestamp,
    /// Whether it is present (an open socket, or heard from within the
    /// host grace period): only present members take over a party.
    pub present: bool,
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
    /// Every virtual IP of the party is taken, or its `max_members` is
    /// reached (answered 409).
    #[error("party {0} is full")]
    PartyFull(PartyId),
    /// Only the host may do this (answered 403).
    #[error("only the host of party {0} can do this")]
    NotHost(PartyId),
    /// The caller's view of the host is out of date (answered 409).
    #[error("host_epoch is {current}, not {expected}: the host changed since")]
    StaleEpoch { expected: u64, current: u64 },
    /// The host named itself where another member is meant (answered 422).
    #[error("{0}")]
    SelfTarget(&'static str),
    /// The party takes new members by join code only (answered 403).
    #[error("party {0} is invite-only: use a join code")]
    InviteOnly(PartyId),
    /// The host banned the peer from this party (answered 403).
    #[error("peer {peer_id} is banned from party {party_id}")]
    Banned { party_id: PartyId, peer_id: PeerId },
}

/// How a [`RuleError`] is answered, as an HTTP status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404.
    NotFound,
    /// 403.
    Forbidden,
    /// 409.
    Conflict,
    /// 422.
    Invalid,
}

impl RuleError {
    /// How this refusal is answered.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::PartyNotFound(_) | Self::NotAMember { .. } => Refusal::NotFound,
            Self::PartyFull(_) | Self::StaleEpoch { .. } => Refusal::Conflict,
            Self::NotHost(_) | Self::InviteOnly(_) | Self::Banned { .. } => Refusal::Forbidden,
            Self::SelfTarget(_) => Refusal::Invalid,
        }
    }
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
        pub policy: lanrage_proto::HostPolicy,
        pub members: Vec<(PeerId, Option<u16>, Timestamp)>,
    }

    impl Party {
        pub fn new(id: &str, host: &str, members: &[(&str, u16, i64)]) -> Self {
            Self {
                id: party(id),
                host: peer(host),
                policy: lanrage_proto::HostPolicy::End,
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
                host_policy: self.policy,
                members: self
                    .members
                    .iter()
                    .map(|(peer_id, vip_index, last_seen)| Member {
                        peer_id,
                        vip_index: *vip_index,
                        last_seen: *last_seen,
                        joined_at: *last_seen,
                        present: true,
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
