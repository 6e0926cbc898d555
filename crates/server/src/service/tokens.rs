//! Bearer tokens: 256 random bits, URL-safe, stored only as a SHA-256 hash.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use lanrage_proto::{PeerId, Timestamp, TokenResponse};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Error, Result, Service, random_bytes};

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

impl Service {
    /// Issues a token for `peer_id`. `registration_key` is the caller's
    /// `X-Registration-Key`, checked when the operator set one.
    pub async fn register(
        &self,
        peer_id: PeerId,
        registration_key: Option<&str>,
    ) -> Result<TokenResponse> {
        if let Some(expected) = &self.config.registration_key {
            match registration_key {
                None => {
                    return Err(Error::Unauthorized(
                        "registration requires the X-Registration-Key header".into(),
                    ));
                }
                Some(given) if !secrets_match(given, expected.expose()) => {
                    return Err(Error::Forbidden("invalid registration key".into()));
                }
                Some(_) => {}
            }
        }
        let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let now = Timestamp::now();
        let ttl = i64::try_from(self.config.token_ttl_secs).unwrap_or(i64::MAX);
        let expires_at = now.plus_secs(ttl);
        self.store
            .insert_token(&token_hash(&token), &peer_id, now, expires_at)
            .await?;
        Ok(TokenResponse {
            token,
            peer_id,
            expires_at,
        })
    }

    /// The peer a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<PeerId> {
        let record = self
            .store
            .token(&token_hash(token))
            .await?
            .ok_or_else(|| Error::Unauthorized("invalid token".into()))?;
        if record.expires_at <= Timestamp::now() {
            return Err(Error::Unauthorized("token expired".into()));
        }
        Ok(record.peer_id)
    }

    /// Checks a relay operator's bearer credential.
    pub fn authorize_relay_operator(&self, bearer: Option<&str>) -> Result<()> {
        let Some(expected) = &self.config.relay_key else {
            return Err(Error::Forbidden(
                "relay registration is disabled: the operator has not set LANRAGE_RELAY_KEY".into(),
            ));
        };
        match bearer {
            None => Err(Error::Unauthorized(
                "relay registration requires Authorization: Bearer <relay key>".into(),
            )),
            Some(given) if secrets_match(given, expected.expose()) => Ok(()),
            Some(_) => Err(Error::Forbidden("invalid relay key".into())),
        }
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
