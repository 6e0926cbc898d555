//! Who is in which party: create, join (or move, or refresh), leave, and
//! the removals the cleanup makes. A peer is in at most one party; the
//! host leaving ends the party (v1, [`HostPolicy::End`]) or hands it to
//! the next in succession ([`HostPolicy::Migrate`]); the last member
//! leaving ends it either way.

use lanrage_proto::{HostPolicy, PartyId, PeerId, Timestamp};

use crate::{
    HOST_VIP_INDEX, PARTY_ID_BYTES, Roster, RuleError, addresses::free_vip_index,
    cleanup::is_stale, party_id_from,
};

/// How to create a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePlan {
    /// The new party's ID.
    pub party_id: PartyId,
    /// The host's virtual-IP offset.
    pub host_vip_index: u16,
    /// The party the host is in now: it leaves it first
    /// ([`Removal::Moved`]).
    pub leave_first: Option<PartyId>,
}

/// Creates a party for a host now in `current` (if any), with an ID made
/// of `random`. Creating never fails.
pub fn plan_create(random: [u8; PARTY_ID_BYTES], current: Option<&PartyId>) -> CreatePlan {
    CreatePlan {
        party_id: party_id_from(random),
        host_vip_index: HOST_VIP_INDEX,
        leave_first: current.cloned(),
    }
}

/// How a peer joins a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPlan {
    /// It is a member already: its info is refreshed and it keeps (or, on a
    /// record that had none, gets) this address.
    Refresh { vip_index: u16 },
    /// It becomes a member at this address, once it has left `leave_first`
    /// ([`Removal::Moved`]).
    Admit {
        vip_index: u16,
        leave_first: Option<PartyId>,
    },
}

impl JoinPlan {
    /// The joined peer's virtual-IP offset.
    pub fn vip_index(&self) -> u16 {
        match self {
            Self::Refresh { vip_index } | Self::Admit { vip_index, .. } => *vip_index,
        }
    }
}

/// Decides `peer_id` joining `party_id`, whose roster is `target` (none
/// when there is no such party), while it is in `current` (if any).
///
/// Everything that can refuse the join is checked here, before the caller
/// changes anything: a full party refuses a peer without taking it out of
/// the party it is in.
pub fn plan_join(
    party_id: &PartyId,
    target: Option<&Roster<'_>>,
    peer_id: &PeerId,
    current: Option<&PartyId>,
) -> Result<JoinPlan, RuleError> {
    let Some(target) = target else {
        return Err(RuleError::PartyNotFound(party_id.clone()));
    };
    let full = || RuleError::PartyFull(party_id.clone());
    if let Some(member) = target.member(peer_id) {
        let vip_index = match member.vip_index {
            Some(index) => index,
            None => free_vip_index(target.taken()).ok_or_else(full)?,
        };
        return Ok(JoinPlan::Refresh { vip_index });
    }
    let vip_index = free_vip_index(target.taken()).ok_or_else(full)?;
    Ok(JoinPlan::Admit {
        vip_index,
        leave_first: current.filter(|c| *c != party_id).cloned(),
    })
}

/// Why a member is being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It asked to leave.
    Left,
    /// It created or joined another party.
    Moved,
    /// The host removed it.
    Kicked,
    /// The cleanup found it silent since before `silent_since`; it goes
    /// only if it still is (a heartbeat may have come since the scan).
    TimedOut { silent_since: Timestamp },
}

/// Why a party ended; [`EndReason::as_str`] is the `reason` of its
/// `party_ended` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The host left, moved, or was found missing by the cleanup.
    HostLeft,
    /// The cleanup removed the silent host.
    HostTimedOut,
    /// Its last member went.
    Empty,
    /// The operator ended it (`DELETE /admin/parties/{party_id}`).
    Operator,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostLeft => "host_left",
            Self::HostTimedOut => "host_timed_out",
            Self::Empty => "empty",
            Self::Operator => "operator",
        }
    }
}

/// What removing a member does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalPlan {
    /// The member goes and its address is free again; the party goes on.
    RemoveMember,
    /// The host goes and `new_host` takes over ([`HostPolicy::Migrate`]).
    HandOver { new_host: PeerId },
    /// The whole party ends, with all its members.
    EndParty(EndReason),
}

/// Decides removing `peer_id` from the party of `roster` for `why`; none
/// when it is not a member or, for a timeout, is no longer silent.
pub fn plan_removal(roster: &Roster<'_>, peer_id: &PeerId, why: Removal) -> Option<RemovalPlan> {
    let member = roster.member(peer_id)?;
    if let Removal::TimedOut { silent_since } = why
        && !is_stale(member.last_seen, silent_since)
    {
        return None;
    }
    let is_host = peer_id == roster.host_id;
    let remaining = roster
        .members
        .iter()
        .filter(|m| m.peer_id != peer_id)
        .count();
    if remaining == 0 {
        return Some(RemovalPlan::EndParty(if is_host {
            host_end(why)
        } else {
            EndReason::Empty
        }));
    }
    if !is_host {
        return Some(RemovalPlan::RemoveMember);
    }
    let successor = match roster.host_policy {
        HostPolicy::End => None,
        HostPolicy::Migrate => crate::host::successor_of_leaving_host(roster),
    };
    Some(match successor {
        Some(new_host) => RemovalPlan::HandOver {
            new_host: new_host.clone(),
        },
        None => RemovalPlan::EndParty(host_end(why)),
    })
}

impl Removal {
    /// The `reason` of the `peer_left` it makes: `left`, `timeout` or
    /// `kicked`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Left | Self::Moved => "left",
            Self::TimedOut { .. } => "timeout",
            Self::Kicked => "kicked",
        }
    }

    /// The `reason` of the `host_changed` it makes when it takes the host
    /// away: `left` or `absent`.
    pub fn host_change_reason(self) -> &'static str {
        match self {
            Self::TimedOut { .. } => "absent",
            Self::Left | Self::Moved | Self::Kicked => "left",
        }
    }
}

/// Why a party whose host goes ends (with [`HostPolicy::End`], or when
/// it was the last member).
fn host_end(why: Removal) -> EndReason {
    match why {
        Removal::TimedOut { .. } => EndReason::HostTimedOut,
        Removal::Left | Removal::Moved | Removal::Kicked => EndReason::HostLeft,
    }
}

/// Decides `peer_id` leaving `party_id`, whose roster is `target` (none
/// when there is no such party).
pub fn plan_leave(
    party_id: &PartyId,
    target: Option<&Roster<'_>>,
    peer_id: &PeerId,
) -> Result<RemovalPlan, RuleError> {
    let Some(target) = target else {
        return Err(RuleError::PartyNotFound(party_id.clone()));
    };
    plan_removal(target, peer_id, Removal::Left).ok_or_else(|| RuleError::NotAMember {
        party_id: party_id.clone(),
        peer_id: peer_id.clone(),
    })
}

/// Checks that `peer_id` is a member of `party_id`, whose roster is
/// `target` (none when there is no such party): what a heartbeat needs.
pub fn check_member(
    party_id: &PartyId,
    target: Option<&Roster<'_>>,
    peer_id: &PeerId,
) -> Result<(), RuleError> {
    match target {
        None => Err(RuleError::PartyNotFound(party_id.clone())),
        Some(roster) if roster.has_member(peer_id) => Ok(()),
        Some(_) => Err(RuleError::NotAMember {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        MAX_VIP_INDEX,
        testing::{Party, at, party, peer},
    };

    fn full_party() -> Party {
        let mut full = Party::new("full", "host", &[]);
        full.members = (HOST_VIP_INDEX..=MAX_VIP_INDEX)
            .map(|i| (peer(&format!("m{i}")), Some(i), at(0)))
            .collect();
        full.host = peer("m1");
        full
    }

    #[test]
    fn a_host_gets_a_fresh_id_and_the_first_address() {
        let plan = plan_create([7; PARTY_ID_BYTES], None);
        assert_eq!(plan.party_id, party_id_from([7; PARTY_ID_BYTES]));
        assert_eq!(plan.host_vip_index, HOST_VIP_INDEX);
        assert_eq!(plan.leave_first, None);
    }

    #[test]
    fn a_host_in_another_party_leaves_it_first() {
        let plan = plan_create([7; PARTY_ID_BYTES], Some(&party("old")));
        assert_eq!(plan.leave_first, Some(party("old")));
    }

    #[test]
    fn a_newcomer_gets_the_lowest_free_address() {
        let p = Party::new("p", "host", &[("host", 1, 0), ("b", 3, 0)]);
        let plan = plan_join(&p.id, Some(&p.roster()), &peer("c"), None);
        assert_eq!(
            plan,
            Ok(JoinPlan::Admit {
                vip_index: 2,
                leave_first: None
            })
        );
    }

    #[test]
    fn a_member_joining_again_is_refreshed_and_keeps_its_address() {
        let p = Party::new("p", "host", &[("host", 1, 0), ("b", 3, 0)]);
        let plan = plan_join(&p.id, Some(&p.roster()), &peer("b"), Some(&p.id));
        assert_eq!(plan, Ok(JoinPlan::Refresh { vip_index: 3 }));
    }

    #[test]
    fn a_member_recorded_without_an_address_gets_one_on_refresh() {
        let mut p = Party::new("p", "host", &[("host", 1, 0)]);
        p.members.push((peer("b"), None, at(0)));
        let plan = plan_join(&p.id, Some(&p.roster()), &peer("b"), Some(&p.id));
        assert_eq!(plan, Ok(JoinPlan::Refresh { vip_index: 2 }));
    }

    #[test]
    fn a_peer_in_another_party_moves() {
        let p = Party::new("p", "host", &[("host", 1, 0)]);
        let plan = plan_join(&p.id, Some(&p.roster()), &peer("b"), Some(&party("old")));
        assert_eq!(
            plan,
            Ok(JoinPlan::Admit {
                vip_index: 2,
                leave_first: Some(party("old"))
            })
        );
    }

    #[test]
    fn joining_a_missing_party_is_refused() {
        let plan = plan_join(&party("gone"), None, &peer("b"), Some(&party("old")));
        assert_eq!(plan, Err(RuleError::PartyNotFound(party("gone"))));
    }

    #[test]
    fn a_full_party_refuses_a_newcomer_before_it_leaves_its_party() {
        let full = full_party();
        let plan = plan_join(
            &full.id,
            Some(&full.roster()),
            &peer("b"),
            Some(&party("old")),
        );
        // An error, not an Admit: nothing tells the caller to leave "old".
        assert_eq!(plan, Err(RuleError::PartyFull(party("full"))));
        assert_eq!(
            RuleError::PartyFull(party("full")).to_string(),
            "party full is full"
        );
    }

    #[test]
    fn a_full_party_still_refreshes_its_members() {
        let full = full_party();
        let member = peer("m4000");
        let plan = plan_join(&full.id, Some(&full.roster()), &member, Some(&full.id));
        assert_eq!(plan, Ok(JoinPlan::Refresh { vip_index: 4000 }));
    }

    #[test]
    fn a_member_leaving_frees_its_address() {
        let p = Party::new("p", "host", &[("host", 1, 0), ("b", 2, 0), ("c", 3, 0)]);
        assert_eq!(
            plan_leave(&p.id, Some(&p.roster()), &peer("b")),
            Ok(RemovalPlan::RemoveMember)
        );
        let mut after = p;
        after.members.retain(|(id, _, _)| *id != peer("b"));
        let next = plan_join(&after.id, Some(&after.roster()), &peer("d"), None);
        assert_eq!(next.map(|plan| plan.vip_index()), Ok(2));
    }

    #[test]
    fn the_host_leaving_ends_the_party() {
        let p = Party::new("p", "host", &[("host", 1, 0), ("b", 2, 0)]);
        assert_eq!(
            plan_leave(&p.id, Some(&p.roster()), &peer("host")),
            Ok(RemovalPlan::EndParty(EndReason::HostLeft))
        );
        assert_eq!(
            plan_removal(&p.roster(), &peer("host"), Removal::Moved),
            Some(RemovalPlan::EndParty(EndReason::HostLeft))
        );
    }

    #[test]
    fn the_last_member_leaving_ends_the_party() {
        // Only reachable when the host is already gone (an orphan).
        let p = Party::new("p", "host", &[("b", 2, 0)]);
        assert_eq!(
            plan_leave(&p.id, Some(&p.roster()), &peer("b")),
            Ok(RemovalPlan::EndParty(EndReason::Empty))
        );
    }

    #[test]
    fn leaving_a_party_one_is_not_in_is_refused() {
        let p = Party::new("p", "host", &[("host", 1, 0)]);
        assert_eq!(
            plan_leave(&p.id, Some(&p.roster()), &peer("b")),
            Err(RuleError::NotAMember {
                party_id: party("p"),
                peer_id: peer("b")
            })
        );
        assert_eq!(
            plan_leave(&party("gone"), None, &peer("b")),
            Err(RuleError::PartyNotFound(party("gone")))
        );
        assert_eq!(
            RuleError::NotAMember {
                party_id: party("p"),
                peer_id: peer("b")
            }
            .to_string(),
            "peer b is not in party p"
        );
        assert_eq!(
            RuleError::PartyNotFound(party("gone")).to_string(),
            "party gone not found"
        );
    }

    #[test]
    fn a_timeout_removes_only_a_member_still_silent() {
        let p = Party::new("p", "host", &[("host", 1, 100), ("b", 2, 10)]);
        let roster = p.roster();
        let silent_since = |s| Removal::TimedOut {
            silent_since: at(s),
        };
        assert_eq!(plan_removal(&roster, &peer("b"), silent_since(10)), None);
        assert_eq!(
            plan_removal(&roster, &peer("b"), silent_since(11)),
            Some(RemovalPlan::RemoveMember)
        );
        assert_eq!(
            plan_removal(&roster, &peer("host"), silent_since(100)),
            None
        );
        assert_eq!(
            plan_removal(&roster, &peer("host"), silent_since(101)),
            Some(RemovalPlan::EndParty(EndReason::HostTimedOut))
        );
        assert_eq!(plan_removal(&roster, &peer("x"), silent_since(101)), None);
    }

    #[test]
    fn a_heartbeat_needs_a_membership() {
        let p = Party::new("p", "host", &[("host", 1, 0)]);
        assert_eq!(
            check_member(&p.id, Some(&p.roster()), &peer("host")),
            Ok(())
        );
        assert_eq!(
            check_member(&p.id, Some(&p.roster()), &peer("b")),
            Err(RuleError::NotAMember {
                party_id: party("p"),
                peer_id: peer("b")
            })
        );
        assert_eq!(
            check_member(&party("gone"), None, &peer("b")),
            Err(RuleError::PartyNotFound(party("gone")))
        );
    }

    #[test]
    fn end_reasons_are_the_event_texts() {
        assert_eq!(EndReason::HostLeft.as_str(), "host_left");
        assert_eq!(EndReason::HostTimedOut.as_str(), "host_timed_out");
        assert_eq!(EndReason::Empty.as_str(), "empty");
    }
}
