//! Host authority (DESIGN, "Capabilities beyond v1", section 4): who takes
//! over a party, who may join it, and what only its host may do.
//!
//! Succession is a rule every member can predict from a party read: the
//! present members other than the host, in the order they first joined
//! (ties, within one microsecond, by peer ID).

use lanrage_proto::{JoinPolicy, PartyId, PartySettings, PeerId};

use crate::{Member, Roster, RuleError};

/// The present members other than the host, first to take over first.
pub fn succession<'r>(roster: &'r Roster<'_>) -> Vec<&'r PeerId> {
    in_join_order(roster)
        .filter(|m| m.present && m.peer_id != roster.host_id)
        .map(|m| m.peer_id)
        .collect()
}

fn in_join_order<'r>(roster: &'r Roster<'_>) -> impl Iterator<Item = &'r Member<'r>> {
    let mut members: Vec<&Member<'_>> = roster.members.iter().collect();
    members.sort_by(|a, b| (a.joined_at, a.peer_id).cmp(&(b.joined_at, b.peer_id)));
    members.into_iter()
}

/// Who takes over from a host that is leaving: the first of
/// [`succession`] or, with nobody present, the member who joined first (a
/// party always has a host among its members); none when nobody remains.
pub(crate) fn successor_of_leaving_host<'r>(roster: &'r Roster<'_>) -> Option<&'r PeerId> {
    let others = || in_join_order(roster).filter(|m| m.peer_id != roster.host_id);
    others()
        .find(|m| m.present)
        .or_else(|| others().next())
        .map(|m| m.peer_id)
}

/// A change of host the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostChange {
    pub new_host: PeerId,
    /// The `host_epoch` the party moves to.
    pub host_epoch: u64,
}

/// For a migrating party whose host is absent: who replaces it (the first
/// of [`succession`]), at the next epoch; none when the host is present,
/// the party ends with its host, or nobody present could take over (the
/// party waits).
pub fn plan_absent_host(roster: &Roster<'_>, host_epoch: u64) -> Option<HostChange> {
    if roster.host_policy != lanrage_proto::HostPolicy::Migrate {
        return None;
    }
    let host = roster.member(roster.host_id)?;
    if host.present {
        return None;
    }
    let new_host = succession(roster).first().copied()?.clone();
    Some(HostChange {
        new_host,
        host_epoch: host_epoch + 1,
    })
}

/// How a peer asks to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// By the party's ID.
    ById,
    /// With a join code of the party.
    ByCode,
}

/// Whether `peer_id` may become a member of the party of `roster` with
/// `settings`; `banned` says whether its host banned the peer (or its
/// key). A member refreshing its info is always let in: call this for
/// newcomers only.
pub fn check_admission(
    roster: &Roster<'_>,
    settings: &PartySettings,
    peer_id: &PeerId,
    banned: bool,
    how: Admission,
) -> Result<(), RuleError> {
    let party_id = roster.party_id;
    if banned {
        return Err(RuleError::Banned {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
        });
    }
    if settings.join_policy == JoinPolicy::Invite && how == Admission::ById {
        return Err(RuleError::InviteOnly(party_id.clone()));
    }
    if let Some(max) = settings.max_members
        && roster.members.len() >= usize::from(max)
    {
        return Err(RuleError::PartyFull(party_id.clone()));
    }
    Ok(())
}

/// Whether `caller` hosts the party of `roster`.
pub fn check_host(roster: &Roster<'_>, caller: &PeerId) -> Result<(), RuleError> {
    if roster.host_id == caller {
        Ok(())
    } else {
        Err(RuleError::NotHost(roster.party_id.clone()))
    }
}

fn check_target(party_id: &PartyId, roster: &Roster<'_>, target: &PeerId) -> Result<(), RuleError> {
    if roster.has_member(target) {
        Ok(())
    } else {
        Err(RuleError::NotAMember {
            party_id: party_id.clone(),
            peer_id: target.clone(),
        })
    }
}

/// Whether `caller` may hand the party of `roster`, now at `host_epoch`,
/// to `new_host`, having last seen `expected_epoch` (if it says), checked
/// in DESIGN's order: not the host, then a stale epoch, then the target.
pub fn check_transfer(
    roster: &Roster<'_>,
    host_epoch: u64,
    caller: &PeerId,
    new_host: &PeerId,
    expected_epoch: Option<u64>,
) -> Result<HostChange, RuleError> {
    check_host(roster, caller)?;
    if let Some(expected) = expected_epoch
        && expected != host_epoch
    {
        return Err(RuleError::StaleEpoch {
            expected,
            current: host_epoch,
        });
    }
    if new_host == caller {
        return Err(RuleError::SelfTarget(
            "new_host_id is the host itself: name another member",
        ));
    }
    check_target(roster.party_id, roster, new_host)?;
    Ok(HostChange {
        new_host: new_host.clone(),
        host_epoch: host_epoch + 1,
    })
}

/// Whether `caller` may remove `target` from the party of `roster`.
pub fn check_kick(roster: &Roster<'_>, caller: &PeerId, target: &PeerId) -> Result<(), RuleError> {
    check_host(roster, caller)?;
    if target == caller {
        return Err(RuleError::SelfTarget(
            "the host cannot remove itself: leave the party instead",
        ));
    }
    check_target(roster.party_id, roster, target)
}

#[cfg(test)]
mod tests {
    use lanrage_proto::HostPolicy;

    use super::*;
    use crate::{
        Removal, RemovalPlan, plan_removal,
        testing::{Party, peer},
    };

    /// A migrating party hosted by `host`; members (peer, joined at, present).
    fn party(host: &str, members: &[(&str, i64, bool)]) -> (Party, Vec<bool>) {
        let mut party = Party::new(
            "p",
            host,
            &members
                .iter()
                .enumerate()
                .map(|(i, (id, joined, _))| (*id, i as u16 + 1, *joined))
                .collect::<Vec<_>>(),
        );
        party.policy = HostPolicy::Migrate;
        (party, members.iter().map(|m| m.2).collect())
    }

    fn roster<'a>(party: &'a Party, present: &[bool]) -> Roster<'a> {
        let mut roster = party.roster();
        for (member, present) in roster.members.iter_mut().zip(present) {
            member.present = *present;
        }
        roster
    }

    #[test]
    fn succession_is_present_members_in_join_order_without_the_host() {
        let (party, present) = party(
            "h",
            &[
                ("c", 30, true),
                ("h", 0, true),
                ("b", 20, true),
                ("a", 10, false),
            ],
        );
        let roster = roster(&party, &present);
        assert_eq!(succession(&roster), [&peer("b"), &peer("c")]);
    }

    #[test]
    fn a_leaving_host_hands_over_to_the_first_present_else_the_first_joined() {
        let (party, present) = party("h", &[("h", 0, true), ("a", 10, false), ("b", 20, true)]);
        let plan = plan_removal(&roster(&party, &present), &peer("h"), Removal::Left);
        assert_eq!(
            plan,
            Some(RemovalPlan::HandOver {
                new_host: peer("b")
            })
        );

        let nobody = [true, false, false];
        let plan = plan_removal(&roster(&party, &nobody), &peer("h"), Removal::Left);
        assert_eq!(
            plan,
            Some(RemovalPlan::HandOver {
                new_host: peer("a")
            })
        );
    }

    #[test]
    fn the_last_member_leaving_still_ends_a_migrating_party() {
        let (party, present) = party("h", &[("h", 0, true)]);
        let plan = plan_removal(&roster(&party, &present), &peer("h"), Removal::Left);
        assert!(matches!(plan, Some(RemovalPlan::EndParty(_))));
    }

    #[test]
    fn an_absent_host_is_replaced_only_by_someone_present() {
        let (party, _) = party("h", &[("h", 0, false), ("a", 10, false), ("b", 20, true)]);
        let change = plan_absent_host(&roster(&party, &[false, false, true]), 4);
        assert_eq!(
            change,
            Some(HostChange {
                new_host: peer("b"),
                host_epoch: 5
            })
        );
        assert_eq!(
            plan_absent_host(&roster(&party, &[false, false, false]), 4),
            None
        );
        assert_eq!(
            plan_absent_host(&roster(&party, &[true, true, true]), 4),
            None
        );
        let mut ending = party;
        ending.policy = HostPolicy::End;
        assert_eq!(
            plan_absent_host(&roster(&ending, &[false, false, true]), 4),
            None
        );
    }

    #[test]
    fn transfer_checks_host_then_epoch_then_target() {
        let (party, present) = party("h", &[("h", 0, true), ("a", 10, true)]);
        let roster = roster(&party, &present);
        let (h, a) = (peer("h"), peer("a"));
        assert_eq!(
            check_transfer(&roster, 3, &h, &a, Some(3)).unwrap(),
            HostChange {
                new_host: a.clone(),
                host_epoch: 4
            }
        );
        assert!(check_transfer(&roster, 3, &h, &a, None).is_ok());
        let refusal = |r: Result<HostChange, RuleError>| r.unwrap_err().refusal();
        assert_eq!(
            refusal(check_transfer(&roster, 3, &h, &a, Some(2))),
            crate::Refusal::Conflict
        );
        assert_eq!(
            refusal(check_transfer(&roster, 3, &a, &h, None)),
            crate::Refusal::Forbidden
        );
        assert_eq!(
            refusal(check_transfer(&roster, 3, &h, &h, None)),
            crate::Refusal::Invalid
        );
        assert_eq!(
            refusal(check_transfer(&roster, 3, &h, &peer("x"), None)),
            crate::Refusal::NotFound
        );
    }

    #[test]
    fn kick_is_for_the_host_on_another_member() {
        let (party, present) = party("h", &[("h", 0, true), ("a", 10, true)]);
        let roster = roster(&party, &present);
        assert!(check_kick(&roster, &peer("h"), &peer("a")).is_ok());
        let refusal = |r: Result<(), RuleError>| r.unwrap_err().refusal();
        assert_eq!(
            refusal(check_kick(&roster, &peer("a"), &peer("h"))),
            crate::Refusal::Forbidden
        );
        assert_eq!(
            refusal(check_kick(&roster, &peer("h"), &peer("h"))),
            crate::Refusal::Invalid
        );
        assert_eq!(
            refusal(check_kick(&roster, &peer("h"), &peer("x"))),
            crate::Refusal::NotFound
        );
    }

    #[test]
    fn admission_checks_bans_policy_and_the_cap() {
        let (party, present) = party("h", &[("h", 0, true), ("a", 10, true)]);
        let roster = roster(&party, &present);
        let newcomer = peer("n");
        let open = PartySettings::default();
        assert!(check_admission(&roster, &open, &newcomer, false, Admission::ById).is_ok());
        assert!(matches!(
            check_admission(&roster, &open, &newcomer, true, Admission::ByCode),
            Err(RuleError::Banned { .. })
        ));
        let invite = PartySettings {
            join_policy: JoinPolicy::Invite,
            ..open
        };
        assert!(matches!(
            check_admission(&roster, &invite, &newcomer, false, Admission::ById),
            Err(RuleError::InviteOnly(_))
        ));
        assert!(check_admission(&roster, &invite, &newcomer, false, Admission::ByCode).is_ok());
        let capped = PartySettings {
            max_members: Some(2),
            ..open
        };
        assert!(matches!(
            check_admission(&roster, &capped, &newcomer, false, Admission::ByCode),
            Err(RuleError::PartyFull(_))
        ));
    }

    #[test]
    fn join_order_ties_break_by_peer_id() {
        let (party, present) = party("h", &[("h", 0, true), ("z", 10, true), ("y", 10, true)]);
        assert_eq!(
            succession(&roster(&party, &present)),
            [&peer("y"), &peer("z")]
        );
    }
}
