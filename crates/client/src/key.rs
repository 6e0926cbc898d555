//! The WireGuard private key a key-bound client proves it holds. It stays
//! in this process: only proofs made with it are sent.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_identity::{WireGuardKey, derived_peer_id, public_key_of};
use lanrage_proto::{PeerId, PublicKey};

/// A WireGuard private key (X25519), as `wg genkey` prints it.
///
/// Its `Debug` shows the public half only, so logging a configuration
/// never leaks it.
///
/// ```
/// use lanrage_client::PrivateKey;
///
/// let key = PrivateKey::parse("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").unwrap();
/// assert_eq!(key.public_key().as_str(), "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=");
/// assert_eq!(key.derived_peer_id().as_str(), "lr1iziobfutsit7rhehsccqtw7rai");
/// assert!(!format!("{key:?}").contains("AQIDBAUG"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    bytes: [u8; 32],
    public: WireGuardKey,
}

/// A text that is not a WireGuard private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a WireGuard private key is 44 characters of standard base64 of 32 bytes, with padding")]
pub struct PrivateKeyError;

impl PrivateKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            public: public_key_of(&bytes),
        }
    }

    /// Standard base64 of 32 bytes, with padding (surrounding whitespace,
    /// as in a file written by `wg genkey`, is ignored).
    pub fn parse(text: &str) -> Result<Self, PrivateKeyError> {
        let decoded = STANDARD.decode(text.trim()).map_err(|_| PrivateKeyError)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| PrivateKeyError)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The public half, as WireGuard prints it: the key the server binds.
    pub fn public_key(&self) -> PublicKey {
        // Both types spell a key the same way (44 characters of base64).
        PublicKey::from_bytes(self.public.as_bytes())
    }

    /// The peer ID a server derives from this key (`lr1…`), the one it
    /// answers at first registration. After a rotation the server keeps
    /// the peer's first ID instead.
    pub fn derived_peer_id(&self) -> PeerId {
        derived_peer_id(&self.public)
    }

    pub(crate) fn wireguard_key(&self) -> &WireGuardKey {
        &self.public
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public_key", &self.public.as_str())
            .finish_non_exhaustive()
    }
}
