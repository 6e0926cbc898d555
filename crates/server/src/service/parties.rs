//! Parties: create, join (or move, or refresh), leave, read.
//!
//! The rules themselves (party IDs, which virtual IP a member gets, when a
//! join is refused, what a leave ends) live in `lanrage-rules`, shared with
//! the client's local plane. This module reads what they need inside the
//! write transaction, asks them, and carries out their decision: rows,
//! events and the answer.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::OnceLock};

use axum::body::Bytes;
use lanrage_proto::{
    Name, Party, PartyId, PartyResponse, Peer, PeerId, PeerInfo, PeersResponse, PublicKey,
    ServerMessage, Timestamp,
};
use lanrage_rules::{
    self as rules, JoinPlan, Member, PARTY_ID_BYTES, Removal, RemovalPlan, Roster, RuleError,
    virtual_ip,
};
use serde::Serialize;

use super::{
    Change, Error, Result, Service, WriteOp, random_bytes,
    snapshots::{PartySnapshot, Snapshot},
};
use crate::store::{MemberRecord, PartyRecord, PartyWithMembers};

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
        verified: verified_of(members),
    }
}

/// Who of `members` proved the key they announce.
fn verified_of(members: &[MemberRecord]) -> BTreeMap<PeerId, bool> {
    members
        .iter()
        .map(|m| (m.peer.peer_id.clone(), m.verified))
        .collect()
}

/// The JSON of `make()`, from `cell` when it was written before.
fn cached_json<T: Serialize>(cell: &OnceLock<Bytes>, make: impl FnOnce() -> T) -> Result<Bytes> {
    if let Some(json) = cell.get() {
        return Ok(json.clone());
    }
    let json = serde_json::to_vec(&make()).map_err(|e| Error::Internal(Box::new(e)))?;
    Ok(cell.get_or_init(|| json.into()).clone())
}

/// The party as the shared rules see it.
pub(super) fn roster<'a>(party: &'a PartyRecord, members: &'a [MemberRecord]) -> Roster<'a> {
    Roster {
        party_id: &party.party_id,
        host_id: &party.host_id,
        members: members
            .iter()
            .map(|m| Member {
                peer_id: &m.peer.peer_id,
                vip_index: Some(m.vip_index),
                last_seen: m.peer.last_seen,
            })
            .collect(),
    }
}

/// The roster of a party read with its members, if there is one.
pub(super) fn roster_of(read: Option<&PartyWithMembers>) -> Option<Roster<'_>> {
    read.map(|(party, members)| roster(party, members))
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
    RuleError::PartyNotFound(party_id.clone()).into()
}

/// A party and its members as a member sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyView {
    pub party: Party,
    pub virtual_ips: BTreeMap<PeerId, Ipv4Addr>,
    pub seq: u64,
    pub verified: BTreeMap<PeerId, bool>,
}

/// The outcome of creating or joining a party.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub party: Party,
    pub virtual_ip: Ipv4Addr,
    pub seq: u64,
    pub verified: BTreeMap<PeerId, bool>,
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
        let keep_last = change.config.event_log_max_per_party.max(MIN_EVENT_LOG);
        change
            .tx
            .insert_event(party_id, seq, now, &message, &recipients, keep_last)
            .await?;
        change.publish_party(message, recipients);
        Ok(seq)
    }

    /// Removes `peer_id` from `party`, whose members are `members` (read
    /// in this change), as the rules decide for `why`; `None` when it is
    /// not a member or, for a timeout, is no longer silent.
    pub(super) async fn remove_member(
        change: &mut Change<'_>,
        party: &PartyRecord,
        members: &[MemberRecord],
        peer_id: &PeerId,
        why: Removal,
        now: Timestamp,
    ) -> Result<Option<Left>> {
        let Some(plan) = rules::plan_removal(&roster(party, members), peer_id, why) else {
            return Ok(None);
        };
        Self::carry_out_removal(change, party, members, peer_id, plan, now)
            .await
            .map(Some)
    }

    /// Carries out a removal the rules decided: the member goes, or the
    /// whole party ends; every member hears of it.
    async fn carry_out_removal(
        change: &mut Change<'_>,
        party: &PartyRecord,
        members: &[MemberRecord],
        peer_id: &PeerId,
        plan: RemovalPlan,
        now: Timestamp,
    ) -> Result<Left> {
        let recipients = ids(members);
        if let RemovalPlan::EndParty(reason) = plan {
            Self::end_party(change, party, recipients, reason.as_str(), now).await?;
            return Ok(Left::PartyDeleted);
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
        Ok(Left::Left)
    }

    /// Ends `party`, telling `recipients` why.
    pub(super) async fn end_party(
        change: &mut Change<'_>,
        party: &PartyRecord,
        recipients: Vec<PeerId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        Self::log_event(change, party, now, recipients, |seq| {
            ServerMessage::PartyEnded {
                party_id: party.party_id.clone(),
                reason: reason.to_owned(),
                seq,
            }
        })
        .await?;
        change.tx.delete_party(&party.party_id).await?;
        Ok(())
    }

    /// Creates a party hosted by the caller, moving it out of any other.
    pub async fn create_party(
        &self,
        caller: &PeerId,
        name: Name,
        host: PeerInfo,
    ) -> Result<Joined> {
        must_be_caller(caller, &host.peer_id)?;
        let op = WriteOp::CreateParty {
            caller: caller.clone(),
            name,
            host,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn create_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        name: &Name,
        host: &PeerInfo,
    ) -> Result<Joined> {
        let now = Timestamp::now();
        let verified =
            super::identity::check_announced_key(change, caller, &host.public_key).await?;
        let current = change.tx.membership(caller).await?;
        let plan = rules::plan_create(random_bytes::<PARTY_ID_BYTES>()?, current.as_ref());
        if let Some(old) = &plan.leave_first
            && let Some((party, members)) = change.tx.party_and_members(old).await?
        {
            Self::remove_member(change, &party, &members, caller, Removal::Moved, now).await?;
        }
        let record = PartyRecord {
            party_id: plan.party_id,
            name: name.clone(),
            host_id: caller.clone(),
            created_at: now,
            seq: 0,
        };
        change.tx.insert_party(&record).await?;
        let host = MemberRecord {
            peer: host.clone().into_peer(now),
            vip_index: plan.host_vip_index,
            verified,
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
            verified: verified_of(std::slice::from_ref(&host)),
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
        let op = WriteOp::JoinParty {
            caller: caller.clone(),
            party_id: party_id.clone(),
            info,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn join_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        info: &PeerInfo,
    ) -> Result<Joined> {
        let now = Timestamp::now();
        let verified =
            super::identity::check_announced_key(change, caller, &info.public_key).await?;
        let (target, previous) = change.tx.join_parties(party_id, caller).await?;
        // Decided before anything changes: a full party refuses the peer
        // without taking it out of the party it is in.
        let plan = rules::plan_join(
            party_id,
            roster_of(target.as_ref()).as_ref(),
            caller,
            previous.as_ref().map(|(party, _)| &party.party_id),
        )?;
        let Some((mut record, mut members)) = target else {
            return Err(party_not_found(party_id));
        };
        if let JoinPlan::Admit {
            leave_first: Some(old),
            ..
        } = &plan
            && let Some((party, previous_members)) = previous.filter(|(p, _)| p.party_id == *old)
        {
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
        let vip_index = plan.vip_index();
        let peer = info.clone().into_peer(now);
        if let JoinPlan::Refresh { .. } = plan {
            if let Some(member) = members.iter_mut().find(|m| m.peer.peer_id == *caller) {
                member.peer = peer.clone();
            }
            record.seq = Self::update_member_in(change, &record, &members, &peer, now).await?;
        } else {
            let member = MemberRecord {
                peer,
                vip_index,
                verified,
            };
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
            verified: verified_of(&members),
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
        let op = WriteOp::LeaveParty {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn leave_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<Left> {
        let now = Timestamp::now();
        let target = change.tx.party_and_members(party_id).await?;
        let plan = rules::plan_leave(party_id, roster_of(target.as_ref()).as_ref(), peer_id)?;
        let Some((party, members)) = target else {
            return Err(party_not_found(party_id));
        };
        Self::carry_out_removal(change, &party, &members, peer_id, plan, now).await
    }

    /// Announces `peer_id`'s new WireGuard key (a rotation) in its
    /// party, if it is in one: its member row takes the key and every
    /// member gets a `party_update`.
    pub(super) async fn rekey_member_in(
        change: &mut Change<'_>,
        peer_id: &PeerId,
        key: &PublicKey,
    ) -> Result<()> {
        let Some(party_id) = change.tx.membership(peer_id).await? else {
            return Ok(());
        };
        // Read again under the party's lock: the peer may have moved since.
        let Some((record, mut members)) = change.tx.party_and_members(&party_id).await? else {
            return Ok(());
        };
        let Some(member) = members.iter_mut().find(|m| m.peer.peer_id == *peer_id) else {
            return Ok(());
        };
        member.peer.public_key = key.clone();
        let peer = member.peer.clone();
        Self::update_member_in(change, &record, &members, &peer, Timestamp::now()).await?;
        Ok(())
    }

    /// Stores a member's new info (`members` already holds it) and tells
    /// every member with one `party_update`; returns the event's `seq`.
    async fn update_member_in(
        change: &mut Change<'_>,
        record: &PartyRecord,
        members: &[MemberRecord],
        peer: &Peer,
        now: Timestamp,
    ) -> Result<u64> {
        change.tx.update_member(&record.party_id, peer).await?;
        Self::log_event(change, record, now, ids(members), |seq| {
            ServerMessage::PartyUpdate {
                party: party_of(
                    &PartyRecord {
                        seq,
                        ..record.clone()
                    },
                    members,
                ),
                seq,
                virtual_ip: None,
                request_id: None,
                snapshot: false,
                verified: BTreeMap::new(),
            }
        })
        .await
    }

    /// The party's snapshot, for its member `caller`; refused to others
    /// as reading `what` ("it", "its signals").
    pub(super) async fn member_snapshot(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        what: &str,
    ) -> Result<Snapshot> {
        let is_member = |snapshot: &Snapshot| snapshot.1.iter().any(|m| m.peer.peer_id == *caller);
        let Some(mut snapshot) = self.snapshot(party_id).await? else {
            return Err(party_not_found(party_id));
        };
        if !is_member(&snapshot) && self.snapshots_may_lag() {
            // The caller may have joined through another instance a moment
            // ago: the database, not a view that may lag, refuses it.
            snapshot = self
                .stored_snapshot(party_id)
                .await?
                .ok_or_else(|| party_not_found(party_id))?;
        }
        if !is_member(&snapshot) {
            return Err(Error::Forbidden(format!(
                "only members of party {party_id} can read {what}"
            )));
        }
        Ok(snapshot)
    }

    /// The party as its member `caller` sees it.
    pub async fn party_view(&self, caller: &PeerId, party_id: &PartyId) -> Result<PartyView> {
        let snapshot = self.member_snapshot(caller, party_id, "it").await?;
        Ok(view_of(&snapshot))
    }

    /// The JSON of [`PartyResponse`] for member `caller`: written once per
    /// snapshot, as every member reads the same.
    pub async fn party_json(&self, caller: &PeerId, party_id: &PartyId) -> Result<Bytes> {
        let snapshot = self.member_snapshot(caller, party_id, "it").await?;
        cached_json(&snapshot.party_json, || {
            let view = view_of(&snapshot);
            PartyResponse {
                party: view.party,
                virtual_ips: view.virtual_ips,
                seq: view.seq,
                verified: view.verified,
            }
        })
    }

    /// The JSON of [`PeersResponse`] for member `caller`, written once per
    /// snapshot.
    pub async fn peers_json(&self, caller: &PeerId, party_id: &PartyId) -> Result<Bytes> {
        let snapshot = self.member_snapshot(caller, party_id, "it").await?;
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
        view.party.peers.remove(peer_id).ok_or_else(|| {
            RuleError::NotAMember {
                party_id: party_id.clone(),
                peer_id: peer_id.clone(),
            }
            .into()
        })
    }
}
