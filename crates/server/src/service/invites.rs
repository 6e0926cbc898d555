//! Join codes (DESIGN, "Capabilities beyond v1", section 3): a host makes
//! short codes (`FROG-7421`) that players say to each other; redeeming one
//! joins its party exactly as a join by ID would.
//!
//! What keeps codes from being guessed:
//! - every wrong secret counts against its nameplate's invite, which is
//!   revoked (reason `guessing`, so the host sees the attack) at
//!   `--invite-max-failures`: with 4 digits and 3 failures a guesser wins
//!   at most 3 times in 10,000 per invite, however many invites are live;
//! - failed look-ups (a code that leads nowhere, or a wrong secret) are
//!   limited per client address and per token, each under its own key
//!   ([`FailedLookups`]), so one guesser never locks out the others;
//! - every way a code can lead nowhere answers the same 404 detail.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use lanrage_proto::{Invite, InvitePreview, PartyId, PeerId, PeerInfo, ServerMessage, Timestamp};
use lanrage_rules::{
    self as rules, Admission, CodeError, INVITE_NOT_FOUND, InviteCode, InviteDigits, InviteSecret,
    Nameplate,
    invite_code::{generate_secret, nameplate_rest_cutoff, needs_two_words, pick_nameplate},
};
use parking_lot::Mutex;

use super::{
    Change, Error, Joined, Result, Service, WriteOp,
    host::party_in,
    parties::{must_be_caller, roster},
    random_bytes,
};
use crate::store::InviteRecord;

/// How long a failed look-up counts against its keys.
const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; beyond, windows that ended are forgotten (and, if
/// that is not enough, all: a flood of fresh addresses must not grow the
/// map without bound).
const MAX_TRACKED: usize = 100_000;

/// Who is looking a code up: its client address (IPv6 per /64) and its
/// token, each limited on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupKeys {
    pub client: String,
    pub token: String,
}

impl LookupKeys {
    pub fn new(client: impl std::fmt::Display, token_hash: &str) -> Self {
        Self {
            client: format!("client {client}"),
            token: format!("token {token_hash}"),
        }
    }

    fn keys(&self) -> [&String; 2] {
        [&self.client, &self.token]
    }
}

/// Failed join-code look-ups per key in the current minute.
#[derive(Debug, Default)]
pub(crate) struct FailedLookups {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl FailedLookups {
    /// Counts a look-up by `keys` against both keys' windows before it
    /// runs (so look-ups sent at once cannot all pass a check made before
    /// any is counted), or refuses it when either key has `limit` in its
    /// window already. A look-up that finds its code gives its count back
    /// ([`FailedLookups::found`]).
    fn begin(&self, keys: &LookupKeys, limit: u64) -> Result<()> {
        let mut windows = self.windows.lock();
        let now = Instant::now();
        for key in keys.keys() {
            if let Some((start, failed)) = windows.get(key) {
                let elapsed = start.elapsed();
                if elapsed < WINDOW && *failed >= limit {
                    return Err(Error::Throttled {
                        detail: "too many failed join-code look-ups; try again later".into(),
                        retry_after_secs: (WINDOW - elapsed).as_secs() + 1,
                    });
                }
            }
        }
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        for key in keys.keys() {
            if !windows.contains_key(key) && windows.len() >= MAX_TRACKED {
                // Full of live windows: no new key is tracked, and none
                // is forgotten either (forgetting would lift a guesser's
                // count); look-ups wait until windows end.
                return Err(Error::Throttled {
                    detail: "too many failed join-code look-ups; try again later".into(),
                    retry_after_secs: WINDOW.as_secs(),
                });
            }
            let (start, failed) = windows.entry(key.clone()).or_insert((now, 0));
            if start.elapsed() >= WINDOW {
                (*start, *failed) = (now, 0);
            }
            *failed += 1;
        }
        Ok(())
    }

    /// Gives back the count of a look-up that found its code.
    fn found(&self, keys: &LookupKeys) {
        let mut windows = self.windows.lock();
        for key in keys.keys() {
            if let Some((_, failed)) = windows.get_mut(key) {
                *failed = failed.saturating_sub(1);
            }
        }
    }
}

/// What redeeming a code came to.
#[derive(Debug)]
pub(crate) enum Redeemed {
    Joined(Joined),
    /// It leads nowhere (gone, or a wrong secret, counted): 404.
    NotFound,
}

fn not_found() -> Error {
    Error::NotFound(INVITE_NOT_FOUND.into())
}

/// A typed code: 422 when it is not the shape of one, the one 404 when its
/// words are not list words.
fn read_code(code: &str) -> Result<InviteCode> {
    InviteCode::parse(code).map_err(|error| match error {
        CodeError::Malformed(_) => Error::Invalid(error.to_string()),
        _ => not_found(),
    })
}

fn invite_of(record: &InviteRecord) -> Invite {
    Invite {
        code: format!(
            "{}-{}",
            record.nameplate.to_ascii_uppercase(),
            record.secret
        ),
        nameplate: record.nameplate.clone(),
        party_id: record.party_id.clone(),
        created_by: record.created_by.clone(),
        created_at: record.created_at,
        expires_at: record.expires_at,
        max_uses: record.max_uses,
        uses: record.uses,
    }
}

fn random_u64() -> Result<u64> {
    random_bytes::<8>().map(u64::from_le_bytes)
}

fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "{name} must be from {min} to {max}, not {value}"
        )))
    }
}

impl Service {
    /// The host makes a join code for its party.
    pub async fn create_invite(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        max_uses: Option<u32>,
        ttl_secs: Option<u64>,
    ) -> Result<Invite> {
        use lanrage_proto::{
            MAX_INVITE_TTL_SECS, MAX_INVITE_USES, MIN_INVITE_TTL_SECS, MIN_INVITE_USES,
        };
        let default_uses = u32::try_from(self.config.invite_max_uses).unwrap_or(MAX_INVITE_USES);
        let max_uses = in_range(
            "max_uses",
            max_uses.unwrap_or(default_uses),
            MIN_INVITE_USES,
            MAX_INVITE_USES,
        )?;
        let ttl_secs = in_range(
            "ttl_secs",
            ttl_secs.unwrap_or(self.config.invite_ttl_secs),
            MIN_INVITE_TTL_SECS,
            MAX_INVITE_TTL_SECS,
        )?;
        let op = WriteOp::CreateInvite {
            caller: caller.clone(),
            party_id: party_id.clone(),
            max_uses,
            ttl_secs,
        };
        self.retrying(|| self.write(op.clone())).await?.try_into()
    }

    pub(super) async fn create_invite_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        max_uses: u32,
        ttl_secs: u64,
    ) -> Result<Invite> {
        let now = Timestamp::now();
        let (party, members) = party_in(change, party_id).await?;
        rules::check_host(&roster(&party, &members, |_| true), caller)?;
        let live = change.tx.live_invites(party_id, now).await?;
        if live.len() >= lanrage_proto::MAX_LIVE_INVITES {
            return Err(Error::Conflict(format!(
                "party {party_id} has {} live invites, the most it may have: revoke one first",
                live.len()
            )));
        }
        let rested_since = nameplate_rest_cutoff(now);
        let held_now = change.tx.held_nameplates(rested_since, now).await?;
        // Two words once half the one-word nameplates are live (resting
        // ones are held, but do not count toward the switch).
        let one_word = held_now
            .iter()
            .filter(|(n, live)| *live && !n.contains('-'))
            .count();
        let mut held: HashSet<String> = held_now.into_iter().map(|(n, _)| n).collect();
        let digits = u8::try_from(change.config.invite_digits)
            .ok()
            .and_then(|d| InviteDigits::new(d).ok())
            .unwrap_or_default();
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        // Another instance may claim the drawn nameplate first: draw again.
        for _ in 0..3 {
            let Some(nameplate) = pick_nameplate(
                needs_two_words(one_word),
                |n: Nameplate| held.contains(&n.to_string()),
                random_u64,
            )?
            else {
                break;
            };
            let record = InviteRecord {
                nameplate: nameplate.to_string(),
                party_id: party_id.clone(),
                secret: generate_secret(digits, random_u64)?.expose().to_owned(),
                created_by: caller.clone(),
                created_at: now,
                expires_at: now.plus_secs(ttl),
                max_uses,
                uses: 0,
                failures: 0,
                ended_at: None,
                end_reason: None,
            };
            if change.tx.claim_nameplate(&record, rested_since).await? {
                return Ok(invite_of(&record));
            }
            held.insert(record.nameplate);
        }
        Err(Error::Conflict(
            "no nameplate is free right now; try again shortly".into(),
        ))
    }

    /// The party's live invites, for its host.
    pub async fn invites(&self, caller: &PeerId, party_id: &PartyId) -> Result<Vec<Invite>> {
        let snapshot = self
            .member_snapshot(caller, party_id, "its invites")
            .await?;
        rules::check_host(&roster(&snapshot.0, &snapshot.1, |_| true), caller)?;
        let live = self.store.live_invites(party_id, Timestamp::now()).await?;
        Ok(live.iter().map(invite_of).collect())
    }

    /// The host revokes one of its party's live invites by nameplate;
    /// members get `invite_revoked`.
    pub async fn revoke_invite(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        nameplate: &str,
    ) -> Result<()> {
        let nameplate =
            Nameplate::parse(nameplate).map_err(|_| Error::NotFound("invite not found".into()))?;
        let op = WriteOp::RevokeInvite {
            caller: caller.clone(),
            party_id: party_id.clone(),
            nameplate: nameplate.to_string(),
        };
        match self.retrying(|| self.write(op.clone())).await? {
            super::write::Outcome::InviteRevoked => Ok(()),
            other => Err(other.mismatch("InviteRevoked")),
        }
    }

    pub(super) async fn revoke_invite_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        party_id: &PartyId,
        nameplate: &str,
    ) -> Result<()> {
        let now = Timestamp::now();
        // The invite first, then its party, as a redemption locks them
        // (a party ending locks the other way round; on PostgreSQL the
        // rare deadlock between the two is retried).
        let invite = change.tx.invite(nameplate).await?;
        let (party, members) = party_in(change, party_id).await?;
        rules::check_host(&roster(&party, &members, |_| true), caller)?;
        let Some(mut invite) = invite.filter(|i| i.party_id == *party_id && i.is_live(now)) else {
            return Err(Error::NotFound(format!(
                "party {party_id} has no live invite {nameplate}"
            )));
        };
        Self::end_invite_in(change, &mut invite, "host", now).await
    }

    /// Ends `invite` now for `reason` and tells its party's members.
    async fn end_invite_in(
        change: &mut Change<'_>,
        invite: &mut InviteRecord,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        invite.ended_at = Some(now);
        invite.end_reason = Some(reason.to_owned());
        change.tx.update_invite(invite).await?;
        let Some((party, members)) = change.tx.party_and_members(&invite.party_id).await? else {
            return Ok(());
        };
        let recipients = members.into_iter().map(|m| m.peer.peer_id).collect();
        Self::log_event(change, &party, now, recipients, |seq| {
            ServerMessage::InviteRevoked {
                party_id: party.party_id.clone(),
                nameplate: invite.nameplate.clone(),
                reason: reason.to_owned(),
                seq,
            }
        })
        .await?;
        Ok(())
    }

    /// Counts a wrong secret against `invite`; at the limit, revokes it
    /// (reason `guessing`).
    async fn count_failure_in(
        change: &mut Change<'_>,
        invite: &mut InviteRecord,
        now: Timestamp,
    ) -> Result<()> {
        invite.failures = invite.failures.saturating_add(1);
        if u64::from(invite.failures) >= change.config.invite_max_failures {
            return Self::end_invite_in(change, invite, "guessing", now).await;
        }
        Ok(change.tx.update_invite(invite).await?)
    }

    pub(super) async fn invite_failure_in(change: &mut Change<'_>, nameplate: &str) -> Result<()> {
        let now = Timestamp::now();
        if let Some(mut invite) = change
            .tx
            .invite(nameplate)
            .await?
            .filter(|i| i.is_live(now))
        {
            Self::count_failure_in(change, &mut invite, now).await?;
        }
        Ok(())
    }

    /// Runs a look-up by `keys`, counting it as failed when it leads
    /// nowhere (a 404).
    /// Off with `--rate-limit off`, like every per-address limit (test
    /// rigs, or a proxy that limits); the per-invite failure count, which
    /// revokes a guessed code, always applies.
    async fn looking_up<T>(
        &self,
        keys: &LookupKeys,
        look_up: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let limited = self.config.rate_limit == crate::config::Switch::On;
        if limited {
            self.failed_lookups
                .begin(keys, self.config.invite_failures_per_min)?;
        }
        let found = look_up.await;
        if limited && !matches!(found, Err(Error::NotFound(_))) {
            self.failed_lookups.found(keys);
        }
        found
    }

    /// What a code leads to, for anyone with a token.
    pub async fn preview_invite(&self, keys: &LookupKeys, code: &str) -> Result<InvitePreview> {
        self.looking_up(keys, self.preview(code)).await
    }

    async fn preview(&self, code: &str) -> Result<InvitePreview> {
        let (nameplate, secret) = read_code(code)?.into_parts();
        let nameplate = nameplate.to_string();
        let now = Timestamp::now();
        let Some(invite) = self
            .store
            .invite(&nameplate)
            .await?
            .filter(|i| i.is_live(now))
        else {
            return Err(not_found());
        };
        if !secret.matches(&invite.secret) {
            self.retrying(|| {
                self.write(WriteOp::InviteFailure {
                    nameplate: nameplate.clone(),
                })
            })
            .await?;
            return Err(not_found());
        }
        let snapshot = self
            .snapshot(&invite.party_id)
            .await?
            .ok_or_else(not_found)?;
        let (party, members) = &**snapshot;
        let host_name = members
            .iter()
            .find(|m| m.peer.peer_id == party.host_id)
            .map(|m| m.peer.name.to_string())
            .unwrap_or_default();
        Ok(InvitePreview {
            party_id: party.party_id.clone(),
            party_name: party.name.to_string(),
            host_name,
            members: u64::try_from(members.len()).unwrap_or(u64::MAX),
            expires_at: invite.expires_at,
            uses_left: invite.max_uses.saturating_sub(invite.uses),
        })
    }

    /// Joins the caller to the party of `code`, exactly as a join by ID
    /// would answer; a use is spent only by a newcomer whose join
    /// succeeds, in the same write.
    pub async fn join_by_code(
        &self,
        caller: &PeerId,
        keys: &LookupKeys,
        code: &str,
        info: PeerInfo,
    ) -> Result<Joined> {
        must_be_caller(caller, &info.peer_id)?;
        self.looking_up(keys, async {
            let (nameplate, secret) = read_code(code)?.into_parts();
            let op = WriteOp::JoinByCode {
                caller: caller.clone(),
                nameplate: nameplate.to_string(),
                secret,
                info,
            };
            match self.retrying(|| self.write(op.clone())).await?.try_into()? {
                Redeemed::Joined(joined) => Ok(joined),
                Redeemed::NotFound => Err(not_found()),
            }
        })
        .await
    }

    pub(super) async fn join_by_code_in(
        change: &mut Change<'_>,
        caller: &PeerId,
        nameplate: &str,
        secret: &InviteSecret,
        info: &PeerInfo,
    ) -> Result<Redeemed> {
        let now = Timestamp::now();
        // Locked: concurrent redemptions of one code take turns, so k uses
        // left admit exactly k.
        let Some(mut invite) = change
            .tx
            .invite(nameplate)
            .await?
            .filter(|i| i.is_live(now))
        else {
            return Ok(Redeemed::NotFound);
        };
        if !secret.matches(&invite.secret) {
            Self::count_failure_in(change, &mut invite, now).await?;
            return Ok(Redeemed::NotFound);
        }
        let party_id = invite.party_id.clone();
        let member = change.tx.membership(caller).await?.as_ref() == Some(&party_id);
        let joined = match Self::join_in(change, caller, &party_id, info, Admission::ByCode).await {
            Ok(joined) => joined,
            // The party ended while its invite lived on: a code that leads
            // nowhere, like any other.
            Err(Error::NotFound(_)) => return Ok(Redeemed::NotFound),
            Err(error) => return Err(error),
        };
        if !member {
            invite.uses += 1;
            if invite.uses >= invite.max_uses {
                invite.ended_at = Some(now);
                invite.end_reason = Some("used_up".into());
            }
            change.tx.update_invite(&invite).await?;
        }
        Ok(Redeemed::Joined(joined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_look_ups_are_limited_per_key_and_never_under_a_shared_one() {
        let failed = FailedLookups::default();
        let guesser = LookupKeys::new("198.51.100.7", "aaaa");
        let same_address = LookupKeys::new("198.51.100.7", "bbbb");
        let other = LookupKeys::new("203.0.113.9", "cccc");
        for _ in 0..3 {
            failed.begin(&guesser, 3).unwrap();
        }
        let refused = failed.begin(&guesser, 3).unwrap_err();
        assert!(matches!(
            refused,
            Error::Throttled { retry_after_secs, .. } if (1..=61).contains(&retry_after_secs)
        ));
        assert!(
            failed.begin(&same_address, 3).is_err(),
            "the address is spent"
        );
        failed.begin(&other, 3).unwrap();
        // A look-up that finds its code costs nothing.
        for _ in 0..5 {
            failed.begin(&other, 3).unwrap();
            failed.found(&other);
        }
    }

    #[test]
    fn a_flood_of_keys_does_not_grow_the_map_without_bound_nor_free_a_guesser() {
        let failed = FailedLookups::default();
        let guesser = LookupKeys::new("198.51.100.7", "aaaa");
        for _ in 0..3 {
            failed.begin(&guesser, 3).unwrap();
        }
        for i in 0..(MAX_TRACKED / 2 + 10) {
            let _ = failed.begin(&LookupKeys::new(i, &i.to_string()), 3);
        }
        assert!(failed.windows.lock().len() <= MAX_TRACKED);
        assert!(failed.begin(&guesser, 3).is_err(), "still counted");
    }
}
