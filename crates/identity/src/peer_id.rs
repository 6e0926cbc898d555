//! Peer IDs derived from keys: `lr1` + lowercase unpadded base32 of the
//! first 16 bytes of SHA-256("lanrage/peer-id/v1" ‖ key).

use lanrage_proto::PeerId;
use sha2::{Digest, Sha256};

use crate::WireGuardKey;

const PREFIX: &str = "lr1";
/// 16 bytes in unpadded base32.
const ENCODED_LEN: usize = 26;

/// The peer ID of `key`: 29 characters, 128 bits of its hash.
pub fn derived_peer_id(key: &WireGuardKey) -> PeerId {
    let mut hash = Sha256::new();
    hash.update(b"lanrage/peer-id/v1");
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let encoded = data_encoding::BASE32_NOPAD
        .encode(&digest[..16])
        .to_ascii_lowercase();
    match PeerId::parse(format!("{PREFIX}{encoded}")) {
        Ok(peer_id) => peer_id,
        // 29 characters of `a-z2-7` are always a valid identifier.
        Err(_) => unreachable!("a derived peer ID is a valid identifier"),
    }
}

/// Whether `peer_id` has the derived form (`^lr1[a-z2-7]{26}$`): such IDs
/// belong to key-bound peers only.
pub fn is_derived_peer_id(peer_id: &str) -> bool {
    peer_id.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == ENCODED_LEN && rest.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_test_vector() {
        let key = WireGuardKey::parse("B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=").unwrap();
        let peer_id = derived_peer_id(&key);
        assert_eq!(peer_id.as_str(), "lr1iziobfutsit7rhehsccqtw7rai");
        assert!(is_derived_peer_id(peer_id.as_str()));
    }

    #[test]
    fn the_derived_form_is_exact() {
        assert!(is_derived_peer_id("lr1aaaaaaaaaaaaaaaaaaaaaaaaaa"));
        for other in [
            "lr1",
            "lr1aaaaaaaaaaaaaaaaaaaaaaaaa",
            "lr1aaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "lr1aaaaaaaaaaaaaaaaaaaaaaaaa1",
            "lr1Aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "lr2aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "alice",
        ] {
            assert!(!is_derived_peer_id(other), "{other}");
        }
    }
}
