//! The cleanup: members silent for longer than the peer timeout are
//! removed (through [`plan_removal`](crate::plan_removal), so a silent
//! host ends its party), and a party left without its host ends.
//!
//! A pass runs in two steps on both sides: [`stale_members`] (on the
//! server, the equivalent `last_seen < cutoff` query) lists candidates,
//! then each is removed only if [`plan_removal`](crate::plan_removal) with
//! [`Removal::TimedOut`](crate::Removal::TimedOut) still finds it silent
//! when it is removed; finally [`orphan_end`] ends parties without a host.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lanrage_proto::{PartyId, PeerId, Timestamp};

use crate::{EndReason, Roster};

/// The instant before which a member counts as silent, for a cleanup at
/// `now` with peers timing out after `timeout`.
pub fn stale_cutoff(now: Timestamp, timeout: Duration) -> Timestamp {
    let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    // Clamped to the earliest instant there is: a timeout longer than all
    // of time makes nobody silent.
    let earliest = DateTime::<Utc>::MIN_UTC.timestamp_micros();
    Timestamp::from_micros(now.as_micros().saturating_sub(micros).max(earliest))
}

/// Whether a member last seen at `last_seen` is silent as of `cutoff`.
/// The server's stale-member query (`last_seen < cutoff`) is the same test
/// in SQL, used only to find candidates: this one decides.
pub fn is_stale(last_seen: Timestamp, cutoff: Timestamp) -> bool {
    last_seen < cutoff
}

/// The members of `parties` silent as of `cutoff`: the candidates of a
/// cleanup pass, in the order given.
pub fn stale_members<'a, 'r: 'a>(
    parties: impl IntoIterator<Item = &'a Roster<'r>>,
    cutoff: Timestamp,
) -> Vec<(PartyId, PeerId)> {
    parties
        .into_iter()
        .flat_map(|roster| {
            roster
                .members
                .iter()
                .filter(move |m| is_stale(m.last_seen, cutoff))
                .map(|m| (roster.party_id.clone(), m.peer_id.clone()))
        })
        .collect()
}

/// How a party whose host is not among its members (or that has none)
/// ends; none for a party that goes on. The party rules never leave one
/// behind, but storage written by other versions or by hand may.
pub fn orphan_end(roster: &Roster<'_>) -> Option<EndReason> {
    (!roster.has_member(roster.host_id)).then_some(EndReason::HostLeft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Removal, RemovalPlan, plan_removal,
        testing::{Party, at, party, peer},
    };

    #[test]
    fn the_cutoff_is_the_timeout_before_now() {
        assert_eq!(stale_cutoff(at(300), Duration::from_secs(300)), at(0));
        assert_eq!(
            stale_cutoff(at(1), Duration::from_millis(500)).as_micros(),
            at(1).as_micros() - 500_000
        );
        // A timeout beyond any date does not overflow.
        let far = stale_cutoff(at(0), Duration::MAX);
        assert!(far < at(-1_000_000_000));
    }

    #[test]
    fn silent_means_last_seen_before_the_cutoff() {
        assert!(is_stale(at(9), at(10)));
        assert!(!is_stale(at(10), at(10)));
        assert!(!is_stale(at(11), at(10)));
    }

    #[test]
    fn stale_members_are_listed_across_parties() {
        let a = Party::new("a", "h1", &[("h1", 1, 50), ("b", 2, 5)]);
        let c = Party::new("c", "h2", &[("h2", 1, 5), ("d", 2, 50)]);
        let rosters = [a.roster(), c.roster()];
        assert_eq!(
            stale_members(&rosters, at(10)),
            [(party("a"), peer("b")), (party("c"), peer("h2"))]
        );
        assert!(stale_members(&rosters, at(5)).is_empty());
    }

    #[test]
    fn a_pass_removes_silent_members_and_ends_a_silent_host_party() {
        let a = Party::new("a", "h1", &[("h1", 1, 50), ("b", 2, 5)]);
        let c = Party::new("c", "h2", &[("h2", 1, 5), ("d", 2, 50)]);
        let cutoff = at(10);
        let why = Removal::TimedOut {
            silent_since: cutoff,
        };
        let plans: Vec<_> = [&a, &c]
            .iter()
            .flat_map(|p| {
                let roster = p.roster();
                stale_members([&roster], cutoff)
                    .into_iter()
                    .map(move |(_, peer_id)| plan_removal(&p.roster(), &peer_id, why))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            plans,
            [
                Some(RemovalPlan::RemoveMember),
                Some(RemovalPlan::EndParty(EndReason::HostTimedOut))
            ]
        );
    }

    #[test]
    fn a_party_without_its_host_ends() {
        let hosted = Party::new("a", "h", &[("h", 1, 0), ("b", 2, 0)]);
        assert_eq!(orphan_end(&hosted.roster()), None);
        let orphan = Party::new("a", "h", &[("b", 2, 0)]);
        assert_eq!(orphan_end(&orphan.roster()), Some(EndReason::HostLeft));
        let empty = Party::new("a", "h", &[]);
        assert_eq!(orphan_end(&empty.roster()), Some(EndReason::HostLeft));
    }
}
