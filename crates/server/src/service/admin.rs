//! The operator's view and actions (`/admin/…`, with the admin key):
//! parties with their members a page at a time, ending a party, removing a
//! member, relays with their state, and the numbers the dashboard shows.
//! Removals go through the same party rules as a member's own leave, so
//! every member hears of them and a migrating party keeps a host.

use std::time::Instant;

use lanrage_proto::{AdminMember, AdminParty, AdminRelay, AdminStats, PartyId, PeerId, Timestamp};
use lanrage_rules::{EndReason, Removal, RuleError, virtual_ip};

use super::{
    Change, Error, Result, Service, WriteOp,
    host::party_in,
    parties::{Left, ids},
    relay_choice::relay_state,
};
use crate::store::{MemberRecord, PartyRecord};

/// The operator's view of a party read with its members.
fn admin_party(party: PartyRecord, members: Vec<MemberRecord>) -> AdminParty {
    AdminParty {
        party_id: party.party_id,
        name: party.name,
        host_id: party.host_id,
        created_at: party.created_at,
        seq: party.seq,
        host_epoch: party.host_epoch,
        settings: party.settings,
        members: members
            .into_iter()
            .map(|m| AdminMember {
                virtual_ip: virtual_ip(m.vip_index),
                peer_id: m.peer.peer_id,
                name: m.peer.name,
                nat_type: m.peer.nat_type,
                joined_at: m.joined_at,
                last_seen: m.peer.last_seen,
                verified: m.verified,
            })
            .collect(),
    }
}

impl Service {
    /// Up to `limit` parties after `after`, by party ID, and the `after`
    /// of the next page (none when this one is the last).
    pub async fn admin_parties(
        &self,
        after: Option<&PartyId>,
        limit: u32,
    ) -> Result<(Vec<AdminParty>, Option<PartyId>)> {
        // One more than asked tells whether another page follows.
        let mut page = self.store().party_page(after, u64::from(limit) + 1).await?;
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next = more
            .then(|| page.last().map(|(party, _)| party.party_id.clone()))
            .flatten();
        let parties = page
            .into_iter()
            .map(|(party, members)| admin_party(party, members))
            .collect();
        Ok((parties, next))
    }

    /// One party as the operator sees it.
    pub async fn admin_party(&self, party_id: &PartyId) -> Result<AdminParty> {
        let (party, members) = self
            .store()
            .snapshot(party_id)
            .await?
            .ok_or_else(|| Error::from(RuleError::PartyNotFound(party_id.clone())))?;
        Ok(admin_party(party, members))
    }

    /// Ends the party: every member gets `party_ended {reason:
    /// "operator"}`.
    pub async fn admin_end_party(&self, party_id: &PartyId) -> Result<()> {
        let op = WriteOp::EndParty {
            party_id: party_id.clone(),
        };
        let _: Left = self.retrying(|| self.write(op.clone())).await?.try_into()?;
        Ok(())
    }

    pub(super) async fn end_party_in(change: &mut Change<'_>, party_id: &PartyId) -> Result<Left> {
        let (party, members) = party_in(change, party_id).await?;
        let now = Timestamp::now();
        Self::end_party(
            change,
            &party,
            ids(&members),
            EndReason::Operator.as_str(),
            now,
        )
        .await?;
        Ok(Left::PartyDeleted)
    }

    /// Takes `peer_id` out of the party, as the host's kick does (without
    /// a ban): `peer_left {reason: "kicked"}`; a host's party is handed
    /// over or ends by its host policy.
    pub async fn admin_remove_member(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Left> {
        let op = WriteOp::RemoveMember {
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn remove_member_in(
        change: &mut Change<'_>,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<Left> {
        let (party, members) = party_in(change, party_id).await?;
        let now = Timestamp::now();
        Self::remove_member(change, &party, &members, peer_id, Removal::Kicked, now)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "peer {peer_id} is not a member of party {party_id}"
                ))
            })
    }

    /// Every relay with when it was last heard from and its state.
    pub async fn admin_relays(&self) -> Result<Vec<AdminRelay>> {
        let now = Timestamp::now();
        let statuses = self.store().relay_statuses().await?;
        Ok(statuses
            .into_iter()
            .map(|status| AdminRelay {
                state: relay_state(&status, &self.config, now).as_str().to_owned(),
                last_seen: status.last_seen,
                sessions: status.sessions,
                load: status.load,
                relay: status.relay,
            })
            .collect())
    }

    /// What the dashboard shows besides parties and relays; the database
    /// check's failure is reported, not raised.
    pub async fn admin_stats(&self) -> Result<AdminStats> {
        let counts = self.counts().await?;
        let started = Instant::now();
        let database = match self.check_database().await {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.to_string(),
        };
        let database_ms = started.elapsed().as_secs_f64() * 1000.0;
        let metrics = self.metrics();
        Ok(AdminStats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: metrics.uptime().as_secs(),
            parties: counts.parties,
            peers: counts.peers,
            relays: counts.relays,
            sockets: u64::try_from(metrics.sockets.get()).unwrap_or(0),
            requests_total: metrics.requests_answered(),
            socket_messages_total: metrics.ws_messages_out.get(),
            database,
            database_ms,
        })
    }
}
