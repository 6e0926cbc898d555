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
    Name, Party, PartyExtras, PartyId, PartyResponse, Peer, PeerId, PeerInfo, PeersResponse,
    PublicKey, ServerMessage, SettingsPatch, Timestamp,
};
use lanrage_rules::{
    self as rules, Admission, HostChange, JoinPlan, Member, PARTY_ID_BYTES, Removal, RemovalPlan,
    Roster, RuleError, virtual_ip,
};
use serde::Serialize;

use super::{
    Change, Error, Result, Service, WriteOp, random_bytes,
    snapshots::{PartySnapshot, Snapshot},
};
use crate::store::{MemberRecord, PartyRecord, PartyWithMembers};

/// What a member sees of a party; `present` says who is.
fn view_of(snapshot: &PartySnapshot, present: impl Fn(&MemberRecord) -> bool) -> PartyView {
    let (record, members) = &**snapshot;
    PartyView {
        virtual_ips: members
            .iter()
            .map(|m| (m.peer.peer_id.clone(), virtual_ip(m.vip_index)))
            .collect(),
        party: party_of(record, members),
        seq: record.seq,
        extras: extras_of(record, members, present),
    }
}

/// The top-level extras of a party read: who proved their key, the
/// settings, the host epoch and the succession.
pub(super) fn extras_of(
    record: &PartyRecord,
    members: &[MemberRecord],
    present: impl Fn(&MemberRecord) -> bool,
) -> PartyExtras {
    let succession = rules::succession(&roster(record, members, present))
        .into_iter()
        .cloned()
        .collect();
    PartyExtras {
        verified: verified_of(members),
        settings: Some(record.settings),
        host_epoch: Some(record.host_epoch),
        succession: Some(succession),
    }
}

/// Presence as the database holds it (for decisions inside a write, the
/// same on every instance): seen or heard from since `cutoff`.
pub(super) fn stored_presence(cutoff: Timestamp) -> impl Fn(&MemberRecord) -> bool {
    move |m| m.peer.last_seen >= cutoff || m.heard_at >= cutoff
}

/// [`stored_presence`] as of `now` with the grace period of `config`.
fn presence_in(change: &Change<'_>, now: Timestamp) -> impl Fn(&MemberRecord) -> bool + use<> {
    stored_presence(rules::stale_cutoff(
        now,
        std::time::Duration::from_secs(change.config.host_grace_secs),
    ))
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

/// The party as the shared rules see it; `present` says who is.
pub(super) fn roster<'a>(
    party: &'a PartyRecord,
    members: &'a [MemberRecord],
    present: impl Fn(&MemberRecord) -> bool,
) -> Roster<'a> {
    Roster {
        party_id: &party.party_id,
        host_id: &party.host_id,
        host_policy: party.settings.host_policy,
        members: members
            .iter()
            .map(|m| Member {
                peer_id: &m.peer.peer_id,
                vip_index: Some(m.vip_index),
                last_seen: m.peer.last_seen,
                joined_at: m.joined_at,
                present: present(m),
            })
            .collect(),
    }
}

/// The roster of a party read with its members, if there is one, for
/// rules that do not ask who is present.
pub(super) fn roster_of(read: Option<&PartyWithMembers>) -> Option<Roster<'_>> {
    read.map(|(party, members)| roster(party, members, |_| true))
}

pub(super) fn party_of(record: &PartyRecord, members: &[MemberRecord]) -> Party {
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

pub(super) fn ids(members: &[MemberRecord]) -> Vec<PeerId> {
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
    pub extras: PartyExtras,
}

/// The outcome of creating or joining a party.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub party: Party,
    pub virtual_ip: Ipv4Addr,
    pub seq: u64,
    pub extras: PartyExtras,
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
        let present = presence_in(change, now);
        let Some(plan) = rules::plan_removal(&roster(party, members, present), peer_id, why) else {
            return Ok(None);
        };
        Self::carry_out_removal(change, party, members, peer_id, plan, why, now)
            .await
            .map(Some)
    }

    /// Carries out a removal the rules decided for `why`: the member goes
    /// (handing the party over, if it hosted it), or the whole party
    /// ends; every member hears of it, the removed one included.
    async fn carry_out_removal(
        change: &mut Change<'_>,
        party: &PartyRecord,
        members: &[MemberRecord],
        peer_id: &PeerId,
        plan: RemovalPlan,
        why: Removal,
        now: Timestamp,
    ) -> Result<Left> {
        let recipients = ids(members);
        let new_host = match plan {
            RemovalPlan::EndParty(reason) => {
                Self::end_party(change, party, recipients, reason.as_str(), now).await?;
                return Ok(Left::PartyDeleted);
            }
            RemovalPlan::RemoveMember => None,
            RemovalPlan::HandOver { new_host } => Some(new_host),
        };
        change.tx.delete_member(&party.party_id, peer_id).await?;
        let seq = Self::log_event(change, party, now, recipients, |seq| {
            ServerMessage::PeerLeft {
                party_id: party.party_id.clone(),
                peer_id: peer_id.clone(),
                reason: Some(why.reason().to_owned()),
                seq,
            }
        })
        .await?;
        if let Some(new_host) = new_host {
            let party = PartyRecord {
                seq,
                ..party.clone()
            };
            let remaining: Vec<MemberRecord> = members
                .iter()
                .filter(|m| m.peer.peer_id != *peer_id)
                .cloned()
                .collect();
            let plan = HostChange {
                new_host,
                host_epoch: party.host_epoch + 1,
            };
            Self::change_host(
                change,
                party,
                &remaining,
                plan,
                why.host_change_reason(),
                now,
            )
            .await?;
        }
        Ok(Left::Left)
    }

    /// Makes `plan.new_host` the host of `party` (whose members are
    /// `members`): the row, then `host_changed` and a `party_update` with
    /// the new `host_id`, consecutive events. Returns the party as it is
    /// now.
    pub(super) async fn change_host(
        change: &mut Change<'_>,
        mut party: PartyRecord,
        members: &[MemberRecord],
        plan: HostChange,
        reason: &str,
        now: Timestamp,
    ) -> Result<PartyRecord> {
        let old_host_id = std::mem::replace(&mut party.host_id, plan.new_host);
        party.host_epoch = plan.host_epoch;
        change.tx.update_party(&party).await?;
        let recipients = ids(members);
        party.seq = Self::log_event(change, &party, now, recipients.clone(), |seq| {
            ServerMessage::HostChanged {
                party_id: party.party_id.clone(),
                old_host_id,
                new_host_id: party.host_id.clone(),
                reason: reason.to_owned(),
                host_epoch: party.host_epoch,
                seq,
            }
        })
        .await?;
        party.seq = Self::log_party_update(change, &party, members, now).await?;
        Ok(party)
    }

    /// Tells every member the party as it is now, with one `party_update`.
    async fn log_party_update(
        change: &mut Change<'_>,
        party: &PartyRecord,
        members: &[MemberRecord],
        now: Timestamp,
    ) -> Result<u64> {
        Self::log_event(change, party, now, ids(members), |seq| {
            ServerMessage::PartyUpdate {
                party: party_of(
                    &PartyRecord {
                        seq,
                        ..party.clone()
                    },
                    members,
                ),
                seq,
                virtual_ip: None,
                request_id: None,
                snapshot: false,
                extras: PartyExtras::default(),
            }
        })
        .await
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
        change.tx.end_invites(&party.party_id, now).await?;
        change.tx.delete_party(&party.party_id).await?;
        Ok(())
    }

    /// Creates a party hosted by the caller, moving it out of any other;
    /// `settings` other than the server's defaults.
    pub async fn create_party(
        &self,
        caller: &PeerId,
        name: Name,
        host: PeerInfo,
        settings: Option<SettingsPatch>,
    ) -> Result<Joined> {
        must_be_caller(caller, &host.peer_id)?;
        let op = WriteOp::CreateParty {
            caller: caller.clone(),
            name,
            host,
            settings,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn create_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        name: &Name,
        host: &PeerInfo,
        settings: Option<&SettingsPatch>,
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
            settings: change.config.party_settings(settings),
            host_epoch: 1,
        };
        change.tx.insert_party(&record).await?;
        let host = MemberRecord {
            peer: host.clone().into_peer(now),
            vip_index: plan.host_vip_index,
            verified,
            joined_at: now,
            heard_at: now,
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
        let record = PartyRecord { seq, ..record };
        let members = std::slice::from_ref(&host);
        Ok(Joined {
            party: party_of(&record, members),
            virtual_ip: virtual_ip(host.vip_index),
            seq,
            extras: extras_of(&record, members, presence_in(change, now)),
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
            how: Admission::ById,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn join_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        info: &PeerInfo,
        how: Admission,
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
        if let JoinPlan::Admit { .. } = plan {
            let banned = change
                .tx
                .banned_from_party(party_id, caller, info.public_key.as_str())
                .await?;
            let roster = roster(&record, &members, |_| true);
            rules::check_admission(&roster, &record.settings, caller, banned, how)?;
        }
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
                joined_at: now,
                heard_at: now,
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
            extras: extras_of(&record, &members, presence_in(change, now)),
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
        let present = presence_in(change, now);
        let roster = target.as_ref().map(|(p, m)| roster(p, m, &present));
        let plan = rules::plan_leave(party_id, roster.as_ref(), peer_id)?;
        let Some((party, members)) = target else {
            return Err(party_not_found(party_id));
        };
        Self::carry_out_removal(change, &party, &members, peer_id, plan, Removal::Left, now).await
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
        Self::log_party_update(change, record, members, now).await
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

    /// Who is present as this instance knows it now: the database's
    /// record, or what this instance heard itself.
    pub(super) fn presence_now(&self) -> impl Fn(&MemberRecord) -> bool + '_ {
        let cutoff = self.presence_cutoff(Timestamp::now());
        let stored = stored_presence(cutoff);
        move |m| stored(m) || self.presence.is_present_here(&m.peer.peer_id, cutoff)
    }

    /// The party as its member `caller` sees it.
    pub async fn party_view(&self, caller: &PeerId, party_id: &PartyId) -> Result<PartyView> {
        let snapshot = self.member_snapshot(caller, party_id, "it").await?;
        Ok(view_of(&snapshot, self.presence_now()))
    }

    /// The extras of a read of `party_id` (for a snapshot `party_update`):
    /// none when the party is gone.
    pub async fn party_extras(&self, party_id: &PartyId) -> Result<Option<PartyExtras>> {
        let Some(snapshot) = self.snapshot(party_id).await? else {
            return Ok(None);
        };
        let (record, members) = &**snapshot;
        Ok(Some(extras_of(record, members, self.presence_now())))
    }

    /// The JSON of [`PartyResponse`] for member `caller`: written once per
    /// snapshot, as every member reads the same (a snapshot lives no longer
    /// than the heartbeat flush interval, so the succession it shows is as
    /// fresh as `last_seen`).
    pub async fn party_json(&self, caller: &PeerId, party_id: &PartyId) -> Result<Bytes> {
        let snapshot = self.member_snapshot(caller, party_id, "it").await?;
        cached_json(&snapshot.party_json, || {
            let view = view_of(&snapshot, self.presence_now());
            PartyResponse {
                party: view.party,
                virtual_ips: view.virtual_ips,
                seq: view.seq,
                extras: view.extras,
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
