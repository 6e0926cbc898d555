//! Key-bound identity: a peer proves it holds its WireGuard key against a
//! one-use challenge and gets a token for the peer ID derived from that
//! key (or for the peer the key is bound to). The proof itself is
//! `lanrage-identity`'s; this module keeps challenges in the store, so any
//! instance can check an answer, and each is used at most once.

use lanrage_identity::{ChallengeKey, ProofError, Purpose, WireGuardKey, derived_peer_id};
use lanrage_proto::{ChallengeResponse, KeyProof, KeyTokenResponse, PeerId, PublicKey, Timestamp};

use super::{
    Error, Result, Service, WriteOp, random_bytes,
    tokens::{NewToken, banned},
    write::{Change, Outcome},
};
use crate::{
    events::Revoked,
    store::{ChallengeRecord, KeyGrant},
};

/// Unanswered, unexpired challenges one client address may hold: enough
/// for a few peers behind one NAT retrying, too few to fill the table.
pub const MAX_CHALLENGES_PER_CLIENT: u64 = 32;

/// The one answer to every failed proof, whatever failed: an attacker
/// learns nothing about which challenges exist.
fn failed() -> Error {
    Error::Unauthorized("the key proof was not accepted; ask for a new challenge".into())
}

fn parse_key(text: &str) -> Result<WireGuardKey> {
    WireGuardKey::parse(text).map_err(|e| Error::Invalid(e.to_string()))
}

fn low_order(error: ProofError) -> Error {
    match error {
        ProofError::LowOrderKey => Error::Invalid(error.to_string()),
        ProofError::Random(_) => Error::Internal(Box::new(error)),
        _ => failed(),
    }
}

impl Service {
    /// A fresh challenge for `public_key`, asked for from `client` (its
    /// address, to bound how many it holds).
    pub async fn challenge(
        &self,
        public_key: &str,
        client: &str,
        registration_key: Option<&str>,
    ) -> Result<ChallengeResponse> {
        self.check_registration_key(registration_key)?;
        let key = parse_key(public_key)?;
        if self
            .store
            .banned(&derived_peer_id(&key), Some(key.as_str()))
            .await?
        {
            return Err(Error::Forbidden(
                "this WireGuard key is banned by the operator".into(),
            ));
        }
        let challenge = ChallengeKey::generate().map_err(low_order)?;
        // Refused now rather than after the client's work: no proof for a
        // low-order key proves anything.
        challenge.check_key(&key).map_err(low_order)?;
        let id = random_bytes::<16>()?;
        let record = ChallengeRecord {
            challenge_id: format!(
                "ch_{}",
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            public_key: key.as_str().to_owned(),
            secret: challenge.private_bytes(),
            client: client.to_owned(),
            expires_at: Timestamp::now()
                .plus_secs(i64::try_from(self.config.challenge_ttl_secs).unwrap_or(i64::MAX)),
        };
        if !self
            .store
            .insert_challenge(&record, Timestamp::now(), MAX_CHALLENGES_PER_CLIENT)
            .await?
        {
            return Err(Error::TooManyRequests(format!(
                "this address holds {MAX_CHALLENGES_PER_CLIENT} unanswered challenges; \
                 answer them or wait until they expire"
            )));
        }
        Ok(ChallengeResponse {
            challenge_id: record.challenge_id,
            server_key: challenge.public_key().to_string(),
            expires_at: record.expires_at,
        })
    }

    /// Uses up the challenge `proof` answers and checks the proof of `key`
    /// for `purpose`: every failure but a low-order key is the one 401.
    async fn redeem(&self, proof: &KeyProof, key: &WireGuardKey, purpose: Purpose) -> Result<()> {
        let challenge = self
            .store
            .take_challenge(&proof.challenge_id)
            .await?
            .ok_or_else(failed)?;
        if challenge.expires_at <= Timestamp::now() || challenge.public_key != key.as_str() {
            return Err(failed());
        }
        ChallengeKey::from_private_bytes(challenge.secret)
            .verify(key, purpose, &proof.challenge_id, &proof.proof)
            .map_err(low_order)
    }

    /// A token for the peer whose key `proof` proves: the first attempt on
    /// a challenge uses it up, whether it succeeds or not.
    pub async fn register_with_key(
        &self,
        proof: &KeyProof,
        registration_key: Option<&str>,
    ) -> Result<KeyTokenResponse> {
        self.check_registration_key(registration_key)?;
        let key = parse_key(&proof.public_key)?;
        self.redeem(proof, &key, Purpose::Register).await?;
        let derived = derived_peer_id(&key);
        if self.store.banned(&derived, Some(key.as_str())).await? {
            return Err(banned(&derived));
        }
        let since = self.tokens.generation();
        let (token, grant) = self
            .retrying(|| async {
                let token = NewToken::generate(&self.config)?;
                let grant = self
                    .store
                    .grant_key_token(
                        key.as_str(),
                        &derived,
                        &token.hash,
                        token.created_at,
                        token.expires_at,
                    )
                    .await?;
                Ok((token, grant))
            })
            .await?;
        let peer_id = match grant {
            KeyGrant::Issued(peer_id) => peer_id,
            KeyGrant::Banned(peer_id) => return Err(super::tokens::banned(&peer_id)),
            KeyGrant::Retired => {
                return Err(Error::Forbidden(format!(
                    "this key was rotated away from {derived}; register with the peer's current key"
                )));
            }
        };
        let response = self.remember(token, peer_id, since);
        Ok(KeyTokenResponse {
            token: response.token,
            peer_id: response.peer_id,
            expires_at: response.expires_at,
            key_bound: true,
        })
    }
}

impl Service {
    /// Moves the key-bound peer holding `token` to the key `proof` proves
    /// (with the `rotate` purpose): a new token for the same peer, every
    /// other token of the peer revoked, the asking one included.
    pub async fn rotate(&self, token: &str, proof: &KeyProof) -> Result<KeyTokenResponse> {
        let grant = self.grant(token).await?;
        let peer_id = grant.peer_id;
        let key = parse_key(&proof.public_key)?;
        if self.store.bound_key(&peer_id).await?.is_none() {
            return Err(not_key_bound(&peer_id));
        }
        self.redeem(proof, &key, Purpose::Rotate).await?;
        let public_key =
            PublicKey::parse(key.as_str()).map_err(|e| Error::Invalid(e.to_string()))?;
        let since = self.tokens.generation();
        let token = self
            .retrying(|| async {
                let token = NewToken::generate(&self.config)?;
                let op = WriteOp::RotateKey {
                    peer_id: peer_id.clone(),
                    public_key: public_key.clone(),
                    token_hash: token.hash.clone(),
                    created_at: token.created_at,
                    expires_at: token.expires_at,
                };
                match self.write(op).await? {
                    Outcome::Rotated => Ok(token),
                    other => Err(other.mismatch("Rotated")),
                }
            })
            .await?;
        let response = self.remember(token, peer_id, since);
        Ok(KeyTokenResponse {
            token: response.token,
            peer_id: response.peer_id,
            expires_at: response.expires_at,
            key_bound: true,
        })
    }

    /// [`WriteOp::RotateKey`]: rebinds, revokes every other token, stores
    /// the new one and tells the peer's party of its new key.
    pub(super) async fn rotate_in(
        change: &mut Change<'_>,
        peer_id: &PeerId,
        key: &PublicKey,
        (token_hash, created_at, expires_at): (&str, Timestamp, Timestamp),
    ) -> Result<()> {
        if change.tx.bound_key(peer_id).await?.is_none() {
            return Err(not_key_bound(peer_id));
        }
        for (peer, bound) in change.tx.key_bindings(peer_id, key.as_str()).await? {
            if peer != *peer_id && bound == key.as_str() {
                return Err(Error::Conflict(format!(
                    "this WireGuard key is bound to peer {peer}: rotate to a key of your own"
                )));
            }
        }
        change
            .tx
            .rebind_key(peer_id, key.as_str(), created_at)
            .await?;
        Self::revoke_in(
            change,
            peer_id,
            Revoked::AllBut(Some(token_hash.to_owned())),
        )
        .await?;
        if !change
            .tx
            .insert_token(token_hash, peer_id, created_at, expires_at)
            .await?
        {
            return Err(super::tokens::banned(peer_id));
        }
        Self::rekey_member_in(change, peer_id, key).await
    }
}

/// The refusal of a rotation by a peer that never proved a key.
fn not_key_bound(peer_id: &PeerId) -> Error {
    Error::Forbidden(format!(
        "{peer_id} is not bound to a WireGuard key: only key-bound peers \
         (registered with POST /auth/register/key) rotate keys"
    ))
}

/// Refuses a key `caller` may not announce as its own (in a create, join
/// or refresh): a key-bound peer announces its bound key only (403), and no
/// one else announces a key bound to a key-bound peer (409). Read inside
/// the change's transaction, so a binding made meanwhile is seen. `true`
/// when the caller is key-bound (so the key is the one it proved).
pub(super) async fn check_announced_key(
    change: &mut Change<'_>,
    caller: &PeerId,
    key: &PublicKey,
) -> Result<bool> {
    let mut verified = false;
    for (peer, bound) in change.tx.key_bindings(caller, key.as_str()).await? {
        if peer == *caller && bound != key.as_str() {
            return Err(Error::Forbidden(format!(
                "{caller} is bound to its WireGuard key {bound}: announce that key"
            )));
        }
        if peer != *caller && bound == key.as_str() {
            return Err(Error::Conflict(format!(
                "this WireGuard key is bound to peer {peer}, which proved it holds it"
            )));
        }
        verified |= peer == *caller;
    }
    Ok(verified)
}
