//! WireGuard public keys as text.

use base64::{Engine, engine::general_purpose::STANDARD};

/// Why a text is not a WireGuard public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "public_key must be a WireGuard key: 44 characters of standard base64 of 32 bytes, with padding"
    )]
    Malformed,
}

/// A WireGuard public key: 32 bytes, kept with the one text that spells
/// them (canonical standard base64 with padding), since proofs cover the
/// text as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireGuardKey {
    bytes: [u8; 32],
    text: String,
}

impl WireGuardKey {
    /// Accepts only the canonical spelling: a key that decodes the same
    /// from two texts would let one key pass for two.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.len() != 44 {
            return Err(KeyError::Malformed);
        }
        let decoded = STANDARD.decode(text).map_err(|_| KeyError::Malformed)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| KeyError::Malformed)?;
        let key = Self::from_bytes(bytes);
        if key.text != text {
            return Err(KeyError::Malformed);
        }
        Ok(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            text: STANDARD.encode(bytes),
        }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for WireGuardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_of_32_bytes_is_a_key() {
        let key = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=";
        assert_eq!(
            WireGuardKey::parse(key).map(|k| k.to_string()),
            Ok(key.into())
        );
        for bad in [
            "",
            "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw",
            // The last character carries two bits that must be zero.
            "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHx=",
            "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9_AsrhtHHw=",
            " 6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert_eq!(
                WireGuardKey::parse(bad),
                Err(KeyError::Malformed),
                "{bad:?}"
            );
        }
    }
}
