//! Bearer tokens: 256 random bits, URL-safe, stored only as a SHA-256 hash.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use lanrage_proto::{PeerId, Timestamp, TokenResponse};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use subtle::ConstantTimeEq;

use super::{
    Error, Result, Service, random_bytes,
    write::{Outcome, WriteOp},
};
use crate::{
    config::{Config, IdentityMode, Secret},
    events::Event,
    store::TokenRecord,
};

/// Tokens found in the store, so an authenticated request costs no
/// database read. A revoked token leaves it as its [`Event::Revoked`]
/// reaches the bus (see [`TokenCache::observe`]): on the instance that
/// revoked it before the revoking request is answered, on the others as
/// the database's notification arrives. While that feed is down
/// ([`Event::Interrupted`] until [`Event::Resync`]) a revocation made
/// elsewhere could go unheard, so the cache answers nothing and every
/// request reads the store; the resync empties it. Entries are re-read
/// after a while anyway, and the cache is emptied when it grows past its
/// bound.
#[derive(Debug)]
pub(crate) struct TokenCache {
    state: RwLock<CacheState>,
}

#[derive(Debug)]
struct CacheState {
    entries: HashMap<String, (TokenRecord, Instant)>,
    /// Moves on with every revocation and feed change: a store read that
    /// began before one is not cached, as it may hold a revoked token.
    generation: u64,
    /// False while the event feed is down, and for good once disabled.
    trusted: bool,
    disabled: bool,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            state: RwLock::new(CacheState {
                entries: HashMap::new(),
                generation: 0,
                trusted: true,
                disabled: false,
            }),
        }
    }
}

impl TokenCache {
    const FRESH_FOR: Duration = Duration::from_secs(60);
    const MAX_ENTRIES: usize = 100_000;

    fn get(&self, hash: &str) -> Option<TokenRecord> {
        let state = self.state.read();
        if !state.trusted {
            return None;
        }
        let (record, cached_at) = state.entries.get(hash)?;
        (cached_at.elapsed() < Self::FRESH_FOR).then(|| record.clone())
    }

    /// Where the cache stands before a store read whose result may be
    /// cached ([`TokenCache::put`]).
    pub(crate) fn generation(&self) -> u64 {
        self.state.read().generation
    }

    /// Caches `record`, read from the store when the cache was at
    /// `since`, unless a revocation or a feed change came meanwhile.
    fn put(&self, hash: String, record: TokenRecord, since: u64) {
        let mut state = self.state.write();
        if state.generation != since || !state.trusted {
            return;
        }
        if state.entries.len() >= Self::MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert(hash, (record, Instant::now()));
    }

    /// Never trusts a cached token again: for a service whose bus has
    /// another observer, so revocations would not reach this cache.
    pub(crate) fn disable(&self) {
        let mut state = self.state.write();
        state.disabled = true;
        state.trusted = false;
        state.entries.clear();
    }

    /// Follows the bus: called with each event as it is published.
    pub(crate) fn observe(&self, event: &Event) {
        match event {
            Event::Revoked { peer_id, tokens } => {
                let mut state = self.state.write();
                state.generation += 1;
                state
                    .entries
                    .retain(|hash, (record, _)| record.peer_id != *peer_id || !tokens.covers(hash));
            }
            Event::Interrupted | Event::Resync => {
                let mut state = self.state.write();
                state.generation += 1;
                state.entries.clear();
                state.trusted = matches!(event, Event::Resync) && !state.disabled;
            }
            Event::Party { .. } | Event::Signal { .. } => {}
        }
    }
}

/// What a valid token grants: its peer, until when, and the token's hash
/// (to see later whether it was revoked) but never the token itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub peer_id: PeerId,
    pub expires_at: Timestamp,
    hash: String,
}

impl Grant {
    /// The hash of the token granted: what a revocation names.
    pub fn token_hash(&self) -> &str {
        &self.hash
    }

    pub fn expired(&self) -> bool {
        self.expires_at <= Timestamp::now()
    }

    /// Time left until the token expires (zero once it has).
    pub fn remaining(&self) -> std::time::Duration {
        let micros = self
            .expires_at
            .as_micros()
            .saturating_sub(Timestamp::now().as_micros());
        std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }
}

/// The refusal for a banned peer or key.
pub(super) fn banned(peer_id: &PeerId) -> Error {
    Error::Forbidden(format!("peer {peer_id} is banned by the operator"))
}

/// The form a token is stored in: SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares secrets without leaking their common prefix through timing.
pub(crate) fn secrets_match(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

/// A token about to be stored.
pub(super) struct NewToken {
    token: String,
    pub(super) hash: String,
    pub(super) created_at: Timestamp,
    pub(super) expires_at: Timestamp,
}

impl NewToken {
    pub(super) fn generate(config: &Config) -> Result<Self> {
        let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let created_at = Timestamp::now();
        let ttl = i64::try_from(config.token_ttl_secs).unwrap_or(i64::MAX);
        Ok(Self {
            hash: token_hash(&token),
            token,
            created_at,
            expires_at: created_at.plus_secs(ttl),
        })
    }
}

impl Service {
    /// Issues a token for `peer_id`. `registration_key` is the caller's
    /// `X-Registration-Key`, checked when the operator set one.
    pub async fn register(
        &self,
        peer_id: PeerId,
        registration_key: Option<&str>,
    ) -> Result<TokenResponse> {
        self.check_registration_key(registration_key)?;
        if self.config.identity_mode == IdentityMode::KeyOnly {
            return Err(Error::Forbidden(
                "this server registers only peers that prove their WireGuard key \
                 (LANRAGE_IDENTITY_MODE=key-only): use POST /auth/challenge"
                    .into(),
            ));
        }
        if lanrage_identity::is_derived_peer_id(peer_id.as_str()) {
            return Err(Error::Forbidden(format!(
                "peer IDs of the form lr1… belong to key-bound peers: prove the key with \
                 POST /auth/challenge and POST /auth/register/key to act as {peer_id}"
            )));
        }
        // A ban is checked as the token is stored, in the same statement.
        let token = NewToken::generate(&self.config)?;
        let since = self.tokens.generation();
        self.store_token(&token, &peer_id).await?;
        Ok(self.remember(token, peer_id, since))
    }

    /// Stores a v1 token for `peer_id`.
    async fn store_token(&self, token: &NewToken, peer_id: &PeerId) -> Result<()> {
        match &self.mode {
            // One writer: the insert joins the writer's next batch, one
            // commit for many registrations.
            super::Mode::SingleWriter { .. } => {
                let op = WriteOp::IssueToken {
                    token_hash: token.hash.clone(),
                    peer_id: peer_id.clone(),
                    created_at: token.created_at,
                    expires_at: token.expires_at,
                };
                match self.write(op).await? {
                    Outcome::TokenIssued => Ok(()),
                    other => Err(other.mismatch("TokenIssued")),
                }
            }
            // A statement alone: its own transaction would cost a BEGIN
            // and a COMMIT round trip more.
            super::Mode::SharedDatabase => {
                let stored = self
                    .store
                    .insert_token(&token.hash, peer_id, token.created_at, token.expires_at)
                    .await?;
                if stored { Ok(()) } else { Err(banned(peer_id)) }
            }
        }
    }

    /// Refuses a registration without the operator's registration key,
    /// when one is configured.
    pub(super) fn check_registration_key(&self, given: Option<&str>) -> Result<()> {
        let Some(expected) = &self.config.registration_key else {
            return Ok(());
        };
        match given {
            None => Err(Error::Unauthorized(
                "registration requires the X-Registration-Key header".into(),
            )),
            Some(given) if !secrets_match(given, expected.expose()) => {
                Err(Error::Forbidden("invalid registration key".into()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Caches a token just stored for `peer_id` (unless a revocation
    /// came since the cache's generation `since`, taken before the write),
    /// and answers with it.
    pub(super) fn remember(&self, token: NewToken, peer_id: PeerId, since: u64) -> TokenResponse {
        self.tokens.put(
            token.hash,
            TokenRecord {
                peer_id: peer_id.clone(),
                expires_at: token.expires_at,
            },
            since,
        );
        TokenResponse {
            token: token.token,
            peer_id,
            expires_at: token.expires_at,
        }
    }

    /// The peer a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<PeerId> {
        self.grant(token).await.map(|grant| grant.peer_id)
    }

    /// What a bearer token grants, and until when: a socket holds on to it
    /// so its authority ends with the token's.
    pub async fn grant(&self, token: &str) -> Result<Grant> {
        let hash = token_hash(token);
        let record = match self.tokens.get(&hash) {
            Some(record) => record,
            None => {
                let since = self.tokens.generation();
                let record = self
                    .store
                    .token(&hash)
                    .await?
                    .ok_or_else(|| Error::Unauthorized("invalid token".into()))?;
                self.tokens.put(hash.clone(), record.clone(), since);
                record
            }
        };
        let now = Timestamp::now();
        if record.expires_at <= now {
            return Err(Error::Unauthorized("token expired".into()));
        }
        self.presence.heard(&record.peer_id, now);
        Ok(Grant {
            peer_id: record.peer_id,
            expires_at: record.expires_at,
            hash,
        })
    }

    /// Whether a granted token still stands: unexpired and still in the
    /// store. Reads the store, not the cache, because revoking a token
    /// deletes its row (on whichever instance revoked it); one primary-key
    /// read, so an open socket can afford it every ping interval.
    pub async fn still_granted(&self, grant: &Grant) -> Result<bool> {
        if grant.expired() {
            return Ok(false);
        }
        Ok(self.store.token(&grant.hash).await?.is_some())
    }

    /// Checks a relay operator's bearer credential.
    pub fn authorize_relay_operator(&self, bearer: Option<&str>) -> Result<()> {
        check_operator_secret(
            self.config.relay_key.as_ref(),
            bearer,
            OperatorRefusals {
                unset: "relay registration is disabled: the operator has not set LANRAGE_RELAY_KEY",
                missing: "relay registration requires Authorization: Bearer <relay key>",
                wrong: "invalid relay key",
            },
        )
    }
}

/// What an operator-secret check answers when the secret is not
/// configured (403), not given (401) or wrong (403).
pub(super) struct OperatorRefusals {
    pub(super) unset: &'static str,
    pub(super) missing: &'static str,
    pub(super) wrong: &'static str,
}

/// The one check of an operator's bearer secret (the relay key, the admin
/// key): compared in constant time, refused with `refusals`.
pub(super) fn check_operator_secret(
    expected: Option<&Secret>,
    given: Option<&str>,
    refusals: OperatorRefusals,
) -> Result<()> {
    let Some(expected) = expected else {
        return Err(Error::Forbidden(refusals.unset.into()));
    };
    match given {
        None => Err(Error::Unauthorized(refusals.missing.into())),
        Some(given) if secrets_match(given, expected.expose()) => Ok(()),
        Some(_) => Err(Error::Forbidden(refusals.wrong.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match("key", "key"));
        assert!(!secrets_match("key", "key2"));
        assert!(!secrets_match("", "key"));
    }
}
