//! The key proof: HMAC-SHA256, keyed with the X25519 secret shared by the
//! peer's WireGuard key and the challenge key, over
//! `"lanrage/key-proof/v1\n" + purpose + "\n" + challenge_id + "\n" + key`.
//!
//! Only the holder of the WireGuard private key (or of the challenge's
//! private half, which never leaves the server) can compute it; binding the
//! purpose, the challenge and the key's text keeps a proof from being
//! replayed for anything else.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};

use crate::WireGuardKey;

type HmacSha256 = Hmac<Sha256>;

/// What a proof is for: each purpose signs a different transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// `POST /auth/register/key`.
    Register,
    /// `POST /auth/rotate`.
    Rotate,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Rotate => "rotate",
        }
    }
}

/// Why a proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The key is a low-order point: the shared secret would be all zeros,
    /// known to anyone, so nothing is proven (422, not 401).
    #[error("public_key is a low-order point, not a usable WireGuard key")]
    LowOrderKey,
    /// The proof does not match (401).
    #[error("the proof does not match")]
    Mismatch,
    /// The operating system's random source failed.
    #[error("no randomness for a challenge key: {0}")]
    Random(String),
}

/// The server's X25519 key for one challenge. Its private half is stored
/// with the challenge (so any instance can check the proof) and deleted
/// once the challenge is used or expires.
#[derive(Clone)]
pub struct ChallengeKey(StaticSecret);

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChallengeKey")
            .field(&self.public_key().as_str())
            .finish()
    }
}

impl ChallengeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, ProofError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ProofError::Random(e.to_string()))?;
        Ok(Self::from_private_bytes(bytes))
    }

    /// The key as stored by [`ChallengeKey::private_bytes`].
    pub fn from_private_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    pub fn private_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The `server_key` a client proves against.
    pub fn public_key(&self) -> WireGuardKey {
        WireGuardKey::from_bytes(PublicKey::from(&self.0).to_bytes())
    }

    /// Whether a proof for `key` could prove anything: not for a low-order
    /// point, whose secret with this key is all zeros.
    pub fn check_key(&self, key: &WireGuardKey) -> Result<(), ProofError> {
        contributory(self.0.diffie_hellman(&PublicKey::from(*key.as_bytes()))).map(drop)
    }

    /// Checks `proof` (base64, as sent) for `key` in constant time.
    pub fn verify(
        &self,
        key: &WireGuardKey,
        purpose: Purpose,
        challenge_id: &str,
        proof: &str,
    ) -> Result<(), ProofError> {
        let shared = contributory(self.0.diffie_hellman(&PublicKey::from(*key.as_bytes())))?;
        let proof = STANDARD.decode(proof).map_err(|_| ProofError::Mismatch)?;
        transcript_mac(&shared, purpose, challenge_id, key)
            .verify_slice(&proof)
            .map_err(|_| ProofError::Mismatch)
    }
}

/// The client's side: the proof that the holder of `private_key` owns
/// `key` (its public half), for a challenge whose server key is
/// `server_key`.
pub fn prove(
    private_key: &[u8; 32],
    key: &WireGuardKey,
    server_key: &WireGuardKey,
    purpose: Purpose,
    challenge_id: &str,
) -> Result<String, ProofError> {
    let secret = StaticSecret::from(*private_key);
    let shared = contributory(secret.diffie_hellman(&PublicKey::from(*server_key.as_bytes())))?;
    let tag = transcript_mac(&shared, purpose, challenge_id, key).finalize();
    Ok(STANDARD.encode(tag.into_bytes()))
}

/// The public half of a WireGuard private key, as `wg pubkey` prints it.
pub fn public_key_of(private_key: &[u8; 32]) -> WireGuardKey {
    WireGuardKey::from_bytes(PublicKey::from(&StaticSecret::from(*private_key)).to_bytes())
}

fn contributory(shared: SharedSecret) -> Result<SharedSecret, ProofError> {
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(ProofError::LowOrderKey)
    }
}

fn transcript_mac(
    shared: &SharedSecret,
    purpose: Purpose,
    challenge_id: &str,
    key: &WireGuardKey,
) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(shared.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC accepts a 32-byte key"),
    };
    for part in [
        "lanrage/key-proof/v1\n",
        purpose.as_str(),
        "\n",
        challenge_id,
        "\n",
        key.as_str(),
    ] {
        mac.update(part.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> [u8; 32] {
        STANDARD.decode(text).unwrap().try_into().unwrap()
    }

    const CLIENT_PRIVATE: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const CLIENT_PUBLIC: &str = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=";
    const CHALLENGE_PRIVATE: &str = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=";
    const SERVER_KEY: &str = "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns=";
    const PROOF: &str = "o99hP7CmN5XPyw7DLT3vwDTI/tp2SarRpoyixvRsgF4=";

    fn vector() -> (ChallengeKey, WireGuardKey) {
        (
            ChallengeKey::from_private_bytes(raw(CHALLENGE_PRIVATE)),
            WireGuardKey::parse(CLIENT_PUBLIC).unwrap(),
        )
    }

    #[test]
    fn the_design_test_vector() {
        let (challenge, key) = vector();
        assert_eq!(challenge.public_key().as_str(), SERVER_KEY);
        assert_eq!(public_key_of(&raw(CLIENT_PRIVATE)), key);
        let proof = prove(
            &raw(CLIENT_PRIVATE),
            &key,
            &challenge.public_key(),
            Purpose::Register,
            "ch_test_0001",
        )
        .unwrap();
        assert_eq!(proof, PROOF);
        assert_eq!(
            challenge.verify(&key, Purpose::Register, "ch_test_0001", PROOF),
            Ok(())
        );
    }

    #[test]
    fn a_proof_is_good_for_its_purpose_challenge_and_key_only() {
        let (challenge, key) = vector();
        let other_key =
            WireGuardKey::from_bytes(PublicKey::from(&StaticSecret::from([9; 32])).to_bytes());
        for (purpose, id, key, proof) in [
            (Purpose::Rotate, "ch_test_0001", &key, PROOF),
            (Purpose::Register, "ch_test_0002", &key, PROOF),
            (Purpose::Register, "ch_test_0001", &other_key, PROOF),
            (Purpose::Register, "ch_test_0001", &key, "not base64"),
            (Purpose::Register, "ch_test_0001", &key, ""),
            (Purpose::Register, "ch_test_0001", &key, &PROOF[..40]),
        ] {
            assert_eq!(
                challenge.verify(key, purpose, id, proof),
                Err(ProofError::Mismatch),
                "{purpose:?} {id} {proof}"
            );
        }
    }

    #[test]
    fn low_order_keys_prove_nothing() {
        let (challenge, _) = vector();
        // The all-zero point and the order-8 point 1 give a zero secret.
        let mut one = [0u8; 32];
        one[0] = 1;
        for point in [[0u8; 32], one] {
            let key = WireGuardKey::from_bytes(point);
            assert_eq!(challenge.check_key(&key), Err(ProofError::LowOrderKey));
            assert_eq!(
                challenge.verify(&key, Purpose::Register, "c", PROOF),
                Err(ProofError::LowOrderKey)
            );
        }
    }

    #[test]
    fn fresh_challenge_keys_differ_and_round_trip() {
        let a = ChallengeKey::generate().unwrap();
        let b = ChallengeKey::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let again = ChallengeKey::from_private_bytes(a.private_bytes());
        assert_eq!(again.public_key(), a.public_key());
    }
}
