//! What a party's host decides (DESIGN, "Capabilities beyond v1",
//! sections 2 and 4): its settings, handing the party over, and removing
//! a member. Each is checked against the current host inside the write
//! that carries it out, so a host replaced a moment ago can no longer act.

use lanrage_proto::{
    KickResponse, PartyId, PartySettings, PeerId, ServerMessage, SettingsPatch, SettingsResponse,
    Timestamp,
};
use lanrage_rules::{self as rules, Removal, RuleError};

use super::{
    Change, Error, Result, Service, WriteOp,
    parties::{party_of, roster},
};
use crate::store::{PartyRecord, PartyWithMembers};

/// The party after a transfer: what `POST /parties/{id}/host` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transferred {
    pub party: lanrage_proto::Party,
    pub host_epoch: u64,
    pub seq: u64,
}

/// The party (locked for the change) and its members; 404 when gone.
pub(super) async fn party_in(
    change: &mut Change<'_>,
    party_id: &PartyId,
) -> Result<PartyWithMembers> {
    change
        .tx
        .party_and_members(party_id)
        .await?
        .ok_or_else(|| Error::from(RuleError::PartyNotFound(party_id.clone())))
}

impl Service {
    /// The party's settings, for its member `caller`.
    pub async fn party_settings(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
    ) -> Result<SettingsResponse> {
        let snapshot = self
            .member_snapshot(caller, party_id, "its settings")
            .await?;
        Ok(SettingsResponse {
            party_id: party_id.clone(),
            settings: snapshot.0.settings,
            seq: snapshot.0.seq,
        })
    }

    /// The host changes some of its party's settings; members hear of it
    /// with `party_settings`.
    pub async fn patch_settings(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        patch: SettingsPatch,
    ) -> Result<SettingsResponse> {
        let op = WriteOp::PatchSettings {
            caller: caller.clone(),
            party_id: party_id.clone(),
            patch,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn patch_settings_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        patch: &SettingsPatch,
    ) -> Result<SettingsResponse> {
        let now = Timestamp::now();
        let (mut party, members) = party_in(change, party_id).await?;
        rules::check_host(&roster(&party, &members, |_| true), caller)?;
        party.settings = party.settings.patched(patch);
        change.tx.update_party(&party).await?;
        let settings: PartySettings = party.settings;
        let recipients = members.iter().map(|m| m.peer.peer_id.clone()).collect();
        let seq = Self::log_event(change, &party, now, recipients, |seq| {
            ServerMessage::PartySettings {
                party_id: party_id.clone(),
                settings,
                seq,
            }
        })
        .await?;
        Ok(SettingsResponse {
            party_id: party_id.clone(),
            settings,
            seq,
        })
    }

    /// The host hands the party to another member; `expected_epoch`, when
    /// given, must be the current `host_epoch`.
    pub async fn transfer_host(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        new_host_id: &PeerId,
        expected_epoch: Option<u64>,
    ) -> Result<Transferred> {
        let op = WriteOp::TransferHost {
            caller: caller.clone(),
            party_id: party_id.clone(),
            new_host_id: new_host_id.clone(),
            expected_epoch,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn transfer_host_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        new_host_id: &PeerId,
        expected_epoch: Option<u64>,
    ) -> Result<Transferred> {
        let now = Timestamp::now();
        let (party, members) = party_in(change, party_id).await?;
        let plan = rules::check_transfer(
            &roster(&party, &members, |_| true),
            party.host_epoch,
            caller,
            new_host_id,
            expected_epoch,
        )?;
        let party: PartyRecord =
            Self::change_host(change, party, &members, plan, "transferred", now).await?;
        Ok(Transferred {
            party: party_of(&party, &members),
            host_epoch: party.host_epoch,
            seq: party.seq,
        })
    }

    /// The host removes `peer_id` from its party, keeping it (and its
    /// bound key) out until the party ends when `ban` is set.
    pub async fn kick(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<KickResponse> {
        let op = WriteOp::Kick {
            caller: caller.clone(),
            party_id: party_id.clone(),
            peer_id: peer_id.clone(),
            ban,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn kick_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<KickResponse> {
        let now = Timestamp::now();
        let (party, members) = party_in(change, party_id).await?;
        rules::check_kick(&roster(&party, &members, |_| true), caller, peer_id)?;
        if ban {
            let bound = change.tx.bound_key(peer_id).await?;
            change
                .tx
                .ban_from_party(party_id, peer_id, bound.as_deref(), now)
                .await?;
        }
        // Not the host (checked above) and the host stays: one `peer_left`.
        Self::remove_member(change, &party, &members, peer_id, Removal::Kicked, now).await?;
        Ok(KickResponse {
            status: "removed".to_owned(),
            banned: ban,
            seq: party.seq + 1,
        })
    }
}
