//! Party IDs: 128 random bits written as 32 lowercase hex digits. The
//! randomness comes from the caller, so tests can pick it.

use lanrage_proto::PartyId;

/// How many random bytes a party ID is made of.
pub const PARTY_ID_BYTES: usize = 16;

/// The party ID made of `random`.
pub fn party_id_from(random: [u8; PARTY_ID_BYTES]) -> PartyId {
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // 32 hex digits are within every identifier rule (1 to 64 characters
    // of letters and digits); the tests below cover every byte value.
    PartyId::parse(hex).expect("hex digits form a valid party id")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn party_ids_are_the_bytes_in_hex() {
        let id = party_id_from([0xab; PARTY_ID_BYTES]);
        assert_eq!(id.as_str(), "abababababababababababababababab");
        let mut counting = [0u8; PARTY_ID_BYTES];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = u8::try_from(i).expect("small") * 17;
        }
        assert_eq!(
            party_id_from(counting).as_str(),
            "00112233445566778899aabbccddeeff"
        );
    }

    proptest! {
        #[test]
        fn every_random_value_gives_a_distinct_128_bit_hex_id(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            let id = party_id_from(a);
            prop_assert_eq!(id.as_str().len(), 32);
            prop_assert!(id.as_str().chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
            prop_assert_eq!(a == b, id == party_id_from(b));
        }
    }
}
