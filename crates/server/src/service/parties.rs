//! Party rules: create, join (or move, or refresh), leave, read, heartbeat.

use std::{collections::BTreeMap, net::Ipv4Addr};

use std::sync::OnceLock;

use axum::body::Bytes;
use lanrage_proto::{
    Name, Party, PartyId, PartyResponse, Peer, PeerId, PeerInfo, PeersResponse, ServerMessage,
    Timestamp,
};
use serde::Serialize;

use super::{
    Change, Error, Result, Service, random_bytes,
    snapshots::{PartySnapshot, Snapshot},
};
use crate::store::{MemberRecord, PartyRecord};

/// What a member sees of a party.
fn view_of(snapshot: &PartySnapshot) -> PartyView {
    let (record, members) = &**snapshot;
    PartyView {
        virtual_ips: members
            .iter()
            .map(|m| (m.peer.peer_id.clone(), virtual_ip(m.vip_index)))
            .collect(),
        party: party_of(record, members),
        seq: record.seq,
    }
}

/// The JSON of `make()`, from `cell` when it was written before.
fn cached_json<T: Serialize>(cell: &OnceLock<Bytes>, make: impl FnOnce() -> T) -> Result<Bytes> {
    if let Some(json) = cell.get() {
        return Ok(json.clone());
    }
    let json = serde_json::to_vec(&make()).map_err(|e| Error::Internal(Box::new(e)))?;
    Ok(cell.get_or_init(|| json.into()).clone())
}

/// The highest offset in 10.66.0.0/16 a member can get (.255.255 is broadcast).
const MAX_VIP_INDEX: u16 = u16::MAX - 1;

/// The virtual IP at `index` in 10.66.0.0/16; the host's is 10.66.0.1.
pub fn virtual_ip(index: u16) -> Ipv4Addr {
    let [high, low] = index.to_be_bytes();
    Ipv4Addr::new(10, 66, high, low)
}

/// The lowest offset no member holds.
fn free_vip_index(members: &[MemberRecord]) -> Option<u16> {
    let mut taken: Vec<u16> = members.iter().map(|m| m.vip_index).collect();
    taken.sort_unstable();
    let mut candidate = 1;
    for index in taken {
        if index == candidate {
            candidate += 1;
        } else if index > candidate {
            break;
        }
    }
    (candidate <= MAX_VIP_INDEX).then_some(candidate)
}

fn new_party_id() -> Result<PartyId> {
    let hex: String = random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    PartyId::parse(hex).map_err(|e| Error::Internal(Box::new(e)))
}

fn party_of(record: &PartyRecord, members: &[MemberRecord]) -> Party {
    Party {
        party_id: record.party_id.clone(),
        name: record.name.clone(),
        host_id: record.host_id.clone(),
        created_at: record.created_at,
        peers: members
            .iter()
            .map(|m| (m.peer.peer_id.clone(), m.peer.clone()))
            .collect(),
    }
}

fn ids(members: &[MemberRecord]) -> Vec<PeerId> {
    members.iter().map(|m| m.peer.peer_id.clone()).collect()
}

pub(super) fn must_be_caller(caller: &PeerId, peer_id: &PeerId) -> Result<()> {
    if caller == peer_id {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "authenticated as {caller}, cannot act as {peer_id}"
        )))
    }
}

fn party_not_found(party_id: &PartyId) -> Error {
    Error::NotFound(format!("party {party_id} not found"))
}

/// Why a member is being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    /// It asked to leave.
    Left,
    /// It joined another party.
    Moved,
    /// The cleanup loop found it silent since before this instant (it is
    /// removed only if it still is: a heartbeat may have come since).
    TimedOut { silent_since: Timestamp },
}

/// A party and its members as a member sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyView {
    pub party: Party,
    pub virtual_ips: BTreeMap<PeerId, Ipv4Addr>,
    pub seq: u64,
}

/// The outcome of creating or joining a party.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub party: Party,
    pub virtual_ip: Ipv4Addr,
    pub seq: u64,
}

/// The outcome of leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The party goes on without the peer.
    Left,
    /// The host left or the party emptied: it is gone.
    PartyDeleted,
}

/// The fewest events a party's log keeps, whatever the settings: what
/// `resume` promises to replay.
pub const MIN_EVENT_LOG: u64 = 256;

impl Service {
    /// Logs a party event for `recipients` under the party's next `seq`,
    /// to be published once the change commits. `party` was read (and
    /// locked) in this change, which logs at most one event per party, so
    /// its `seq` is current.
    pub(super) async fn log_event(
        change: &mut Change<'_>,
        party: &PartyRecord,
        now: Timestamp,
        recipients: Vec<PeerId>,
        event: impl FnOnce(u64) -> ServerMessage,
    ) -> Result<u64> {
        let party_id = &party.party_id;
        let seq = party.seq + 1;
        let message = event(seq);
        let keep_last = change
            .service
            .config
            .event_log_max_per_party
            .max(MIN_EVENT_LOG);
        change
            .tx
            .insert_event(party_id, seq, now, &message, &recipients, keep_last)
            .await?;
        change.publish_party(message, recipients);
        Ok(seq)
    }

    /// Removes `peer_id` from `party`, whose members are `members` (read
    /// in this change), ending the party when the host goes or nobody is
    /// left; `None` when it is not a member or, for a timeout, is no longer
    /// silent.
    pub(super) async fn remove_member(
        change: &mut Change<'_>,
        party: &PartyRecord,
        members: &[MemberRecord],
        peer_id: &PeerId,
        why: Removal,
        now: Timestamp,
    ) -> Result<Option<Left>> {
        let Some(member) = members.iter().find(|m| m.peer.peer_id == *peer_id) else {
            return Ok(None);
        };
        if let Removal::TimedOut { silent_since } = why
            && member.peer.last_seen >= silent_since
        {
            return Ok(None);
        }
        let recipients = ids(members);
        let remaining = members
            .iter()
            .filter(|m| &m.peer.peer_id != peer_id)
            .count();
        if *peer_id == party.host_id || remaining == 0 {
            let reason = match (why, *peer_id == party.host_id) {
                (Removal::TimedOut { .. }, true) => "host_timed_out",
                (_, true) => "host_left",
                (_, false) => "empty",
            };
            Self::log_event(change, party, now, recipients, |seq| {
                ServerMessage::PartyEnded {
                    party_id: party.party_id.clone(),
                    reason: reason.to_owned(),
                    seq,
                }
            })
            .await?;
            change.tx.delete_party(&party.party_id).await?;
            return Ok(Some(Left::PartyDeleted));
        }
        change.tx.delete_member(&party.party_id, peer_id).await?;
        Self::log_event(change, party, now, recipients, |seq| {
            ServerMessage::PeerLeft {
                party_id: party.party_id.clone(),
                peer_id: peer_id.clone(),
                seq,
            }
        })
        .await?;
        Ok(Some(Left::Left))
    }

    /// Creates a party hosted by the caller, moving it out of any other.
    pub async fn create_party(
        &self,
        caller: &PeerId,
        name: Name,
        host: PeerInfo,
    ) -> Result<Joined> {
        must_be_caller(caller, &host.peer_id)?;
        self.retrying(|| {
            self.write(
                (caller.clone(), name.clone(), host.clone()),
                |(caller, name, host), change| {
                    Box::pin(Self::create_in(change, caller, name, host))
                },
            )
        })
        .await
    }

    async fn create_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        name: &Name,
        host: &PeerInfo,
    ) -> Result<Joined> {
        let now = Timestamp::now();
        if let Some(current) = change.tx.membership(caller).await?
            && let Some((party, members)) = change.tx.party_and_members(&current).await?
        {
            Self::remove_member(change, &party, &members, caller, Removal::Moved, now).await?;
        }
        let record = PartyRecord {
            party_id: new_party_id()?,
            name: name.clone(),
            host_id: caller.clone(),
            created_at: now,
            seq: 0,
        };
        change.tx.insert_party(&record).await?;
        let host = MemberRecord {
            peer: host.clone().into_peer(now),
            vip_index: 1,
        };
        change.tx.insert_member(&record.party_id, &host).await?;
        let seq = Self::log_event(change, &record, now, vec![caller.clone()], |seq| {
            ServerMessage::PeerJoined {
                party_id: record.party_id.clone(),
                peer: host.peer.clone(),
                seq,
            }
        })
        .await?;
        Ok(Joined {
            party: party_of(&PartyRecord { seq, ..record }, std::slice::from_ref(&host)),
            virtual_ip: virtual_ip(host.vip_index),
            seq,
        })
    }

    /// Joins the caller to a party: a new member gets the lowest free
    /// virtual IP; a member joining again refreshes its info and keeps it.
    pub async fn join_party(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        info: PeerInfo,
    ) -> Result<Joined> {
        must_be_caller(caller, &info.peer_id)?;
        self.retrying(|| {
            self.write(
                (caller.clone(), party_id.clone(), info.clone()),
                |(caller, party_id, info), change| {
                    Box::pin(Self::join_in(change, caller, party_id, info))
                },
            )
        })
        .await
    }

    pub(super) async fn join_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        info: &PeerInfo,
    ) -> Result<Joined> {
        let now = Timestamp::now();
        let (target, previous) = change.tx.join_parties(party_id, caller).await?;
        let Some((mut record, mut members)) = target else {
            return Err(party_not_found(party_id));
        };
        let existing = members.iter().position(|m| m.peer.peer_id == *caller);
        // Settled before leaving the previous party: a full party refuses
        // the peer without moving it.
        let vip_index = match existing {
            Some(at) => members[at].vip_index,
            None => free_vip_index(&members)
                .ok_or_else(|| Error::Conflict(format!("party {party_id} is full")))?,
        };
        if let Some((party, previous_members)) = previous {
            Self::remove_member(
                change,
                &party,
                &previous_members,
                caller,
                Removal::Moved,
                now,
            )
            .await?;
        }
        let peer = info.clone().into_peer(now);
        if let Some(at) = existing {
            members[at].peer = peer.clone();
            change.tx.update_member(party_id, &peer).await?;
            record.seq = Self::log_event(change, &record, now, ids(&members), |seq| {
                ServerMessage::PartyUpdate {
                    party: party_of(
                        &PartyRecord {
                            seq,
                            ..record.clone()
                        },
                        &members,
                    ),
                    seq,
                    virtual_ip: None,
                    request_id: None,
                }
            })
            .await?;
        } else {
            let member = MemberRecord { peer, vip_index };
            change.tx.insert_member(party_id, &member).await?;
            let joined = member.peer.clone();
            members.push(member);
            record.seq = Self::log_event(change, &record, now, ids(&members), |seq| {
                ServerMessage::PeerJoined {
                    party_id: party_id.clone(),
                    peer: joined,
                    seq,
                }
            })
            .await?;
        }
        Ok(Joined {
            party: party_of(&record, &members),
            virtual_ip: virtual_ip(vip_index),
            seq: record.seq,
        })
    }

    /// Takes the caller out of a party.
    pub async fn leave_party(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<Left> {
        must_be_caller(caller, peer_id)?;
        self.retrying(|| {
            self.write(
                (party_id.clone(), peer_id.clone()),
                |(party_id, peer_id), change| Box::pin(Self::leave_in(change, party_id, peer_id)),
            )
        })
        .await
    }

    async fn leave_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<Left> {
        let now = Timestamp::now();
        let Some((party, members)) = change.tx.party_and_members(party_id).await? else {
            return Err(party_not_found(party_id));
        };
        Self::remove_member(change, &party, &members, peer_id, Removal::Left, now)
            .await?
            .ok_or_else(|| Error::NotFound(format!("peer {peer_id} is not in party {party_id}")))
    }

    /// The party's snapshot, for its member `caller`.
    async fn member_snapshot(&self, caller: &PeerId, party_id: &PartyId) -> Result<Snapshot> {
        let Some(snapshot) = self.snapshot(party_id).await? else {
            return Err(party_not_found(party_id));
        };
        if !snapshot.1.iter().any(|m| m.peer.peer_id == *caller) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can read it"
            )));
        }
        Ok(snapshot)
    }

    /// The party as its member `caller` sees it.
    pub async fn party_view(&self, caller: &PeerId, party_id: &PartyId) -> Result<PartyView> {
        let snapshot = self.member_snapshot(caller, party_id).await?;
        Ok(view_of(&snapshot))
    }

    /// The JSON of [`PartyResponse`] for member `caller`: written once per
    /// snapshot, as every member reads the same.
    pub async fn party_json(&self, caller: &PeerId, party_id: &PartyId) -> Result<Bytes> {
        let snapshot = self.member_snapshot(caller, party_id).await?;
        cached_json(&snapshot.party_json, || {
            let view = view_of(&snapshot);
            PartyResponse {
                party: view.party,
                virtual_ips: view.virtual_ips,
                seq: view.seq,
            }
        })
    }

    /// The JSON of [`PeersResponse`] for member `caller`, written once per
    /// snapshot.
    pub async fn peers_json(&self, caller: &PeerId, party_id: &PartyId) -> Result<Bytes> {
        let snapshot = self.member_snapshot(caller, party_id).await?;
        cached_json(&snapshot.peers_json, || PeersResponse {
            peers: party_of(&snapshot.0, &snapshot.1).peers,
        })
    }

    /// One member of the party, as its member `caller` sees it.
    pub async fn party_peer(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<Peer> {
        let mut view = self.party_view(caller, party_id).await?;
        view.party
            .peers
            .remove(peer_id)
            .ok_or_else(|| Error::NotFound(format!("peer {peer_id} is not in party {party_id}")))
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::{IpOrUnknown, NatType, PublicKey};

    use super::*;

    fn member(vip_index: u16) -> MemberRecord {
        MemberRecord {
            peer: Peer {
                peer_id: PeerId::parse(format!("p{vip_index}")).unwrap(),
                name: Name::parse("n").unwrap(),
                public_key: PublicKey::from_bytes(&[0; 32]),
                nat_type: NatType::Open,
                public_ip: IpOrUnknown::Unknown,
                public_port: 0,
                local_ip: IpOrUnknown::Unknown,
                local_port: 0,
                last_seen: Timestamp::now(),
            },
            vip_index,
        }
    }

    #[test]
    fn virtual_ips_cover_the_slash_16() {
        assert_eq!(virtual_ip(1), Ipv4Addr::new(10, 66, 0, 1));
        assert_eq!(virtual_ip(256), Ipv4Addr::new(10, 66, 1, 0));
        assert_eq!(virtual_ip(MAX_VIP_INDEX), Ipv4Addr::new(10, 66, 255, 254));
    }

    #[test]
    fn the_lowest_free_index_is_handed_out() {
        assert_eq!(free_vip_index(&[]), Some(1));
        assert_eq!(free_vip_index(&[member(1), member(2)]), Some(3));
        assert_eq!(free_vip_index(&[member(3), member(1)]), Some(2));
    }

    #[test]
    fn a_full_party_has_no_index() {
        let all: Vec<_> = (1..=MAX_VIP_INDEX).map(member).collect();
        assert_eq!(free_vip_index(&all), None);
    }

    #[test]
    fn party_ids_are_128_bit_hex() {
        let a = new_party_id().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_party_id().unwrap());
    }
}
