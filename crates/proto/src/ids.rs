//! Identifiers: peers, parties, relays and regions share one alphabet.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{InvalidValue, limits::MAX_ID_CHARS};

fn check_identifier(what: &str, value: &str) -> Result<(), InvalidValue> {
    if value.is_empty() || value.chars().count() > MAX_ID_CHARS {
        return Err(InvalidValue(format!(
            "{what} must be 1 to {MAX_ID_CHARS} characters"
        )));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(InvalidValue(format!(
            "{what} may contain only letters, digits, '-', '_' and '.'"
        )));
    }
    // `.` and `..` are rewritten away as URL path segments (a route naming
    // the peer would reach another resource), so no identifier is all dots.
    if value.chars().all(|c| c == '.') {
        return Err(InvalidValue(format!(
            "{what} must contain a letter, digit, '-' or '_', not only dots"
        )));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as this identifier.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                check_identifier($what, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A peer's identity: 1 to 64 letters, digits, `-`, `_` or `.`.
    PeerId,
    "peer_id"
);
identifier!(
    /// A party's identity. The server makes them random (128 bits, hex);
    /// any value of the identifier alphabet is accepted on input.
    PartyId,
    "party_id"
);
identifier!(
    /// A relay's identity, chosen by the relay's operator.
    RelayId,
    "relay_id"
);
identifier!(
    /// A relay region such as `eu-west`; `unknown` when not given.
    Region,
    "region"
);

impl Default for Region {
    fn default() -> Self {
        Self("unknown".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_python_clients_identifiers() {
        assert!(PeerId::parse("peer_0123456789ab").is_ok());
        assert!(PeerId::parse("a1b2c3d4e5f60718").is_ok());
        assert!(PeerId::parse("host.example-1").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        assert!(PeerId::parse("").is_err());
        assert!(PeerId::parse("x".repeat(65)).is_err());
        assert!(PeerId::parse("x".repeat(64)).is_ok());
        for bad in ["a b", "a/b", "ä", "a\n", "../etc", "a%2F"] {
            assert!(PeerId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_identifiers_made_only_of_dots() {
        for dots in [".", "..", "...", &".".repeat(64)] {
            let error = PeerId::parse(dots).unwrap_err();
            assert!(error.0.contains("not only dots"), "{error}");
            assert!(PartyId::parse(dots).is_err());
            assert!(RelayId::parse(dots).is_err());
            assert!(Region::parse(dots).is_err());
        }
        for fine in ["a.", ".a", "..-", "_..", "v1.2"] {
            assert!(PeerId::parse(fine).is_ok(), "{fine:?} refused");
        }
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<PeerId>("\"no spaces\"").unwrap_err();
        assert!(err.to_string().contains("peer_id may contain only"));
        assert_eq!(
            serde_json::to_string(&Region::default()).unwrap(),
            "\"unknown\""
        );
    }

    proptest! {
        #[test]
        fn every_alphabet_string_of_valid_length_parses(s in "[A-Za-z0-9._-]{1,64}") {
            prop_assume!(!s.chars().all(|c| c == '.'));
            let id = PeerId::parse(s.clone()).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn dots_alone_never_parse(n in 1usize..=64) {
            prop_assert!(PeerId::parse(".".repeat(n)).is_err());
        }

        #[test]
        fn nothing_outside_the_alphabet_parses(s in ".*[^A-Za-z0-9._-].*") {
            prop_assert!(PeerId::parse(s).is_err());
        }
    }
}
