//! JSON Schemas of the validating newtypes, for the server's OpenAPI
//! document (feature `openapi`).
//!
//! Each schema states what the type's parser accepts, no more and no less:
//! property-based API tests generate requests from these schemas and expect
//! every valid one accepted and every invalid one refused. The limits
//! JSON Schema cannot state, the serialized size and nesting depth of
//! `signal_data`, are in its description.

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr, Schema,
        schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type},
    },
};

use crate::{
    IpOrUnknown, Name, NatType, PartyId, PeerId, PublicKey, Region, RelayId, SignalData, Timestamp,
    limits::{MAX_ID_CHARS, MAX_NAME_CHARS, MAX_SIGNAL_CHARS, MAX_SIGNAL_DEPTH},
};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn identifier(description: &str, example: &str) -> RefOr<Schema> {
    string()
        .min_length(Some(1))
        .max_length(Some(MAX_ID_CHARS))
        // At least one character that is not a dot: `.` and `..` are refused.
        .pattern(Some("^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"))
        .description(Some(description))
        .examples([example])
        .into()
}

macro_rules! schema {
    ($type:ty, $schema:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $type {}
    };
}

schema!(
    PeerId,
    identifier(
        "A peer's identity: 1 to 64 letters, digits, `-`, `_` or `.`.",
        "peer_0123456789ab",
    )
);
schema!(
    PartyId,
    identifier(
        "A party's identity (the server makes 32 hex digits).",
        "4b1d6f0c2a9e4f5b8c7d6e5f4a3b2c1d",
    )
);
schema!(
    RelayId,
    identifier("A relay's identity, chosen by its operator.", "relay-eu-1")
);
schema!(
    Region,
    identifier("A relay region; `unknown` when not given.", "eu-west")
);

schema!(
    Name,
    string()
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_CHARS))
        // `char::is_control` (the C0 and C1 control characters and DEL),
        // then the invisible formatting characters `Name` refuses.
        .pattern(Some(
            "^[^\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u061C\\u200B\\u200E\\u200F\\u2028\\u2029\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\u180E\\u115F\\u1160\\u3164\\uFFA0]+$"
        ))
        .description(Some(
            "1 to 100 characters (Unicode scalar values), no control characters, no \
             bidirectional overrides, isolates or marks, and no other invisible \
             formatting characters (zero-width spaces, word joiners, BOM); ZWJ and \
             ZWNJ are allowed.",
        ))
        .examples(["Friday night"])
        .into()
);

schema!(
    PublicKey,
    string()
        // 32 bytes are 43 base64 digits and one `=`; the last digit carries
        // two unused bits, which canonical base64 leaves zero.
        .pattern(Some("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"))
        .description(Some("A WireGuard public key: standard base64 of 32 bytes."))
        .examples(["xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="])
        .into()
);

schema!(
    IpOrUnknown,
    AnyOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4))))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv6))))
        .item(string().enum_values(Some(["unknown"])))
        .description(Some(
            "An IPv4 or IPv6 address, or `unknown` when NAT discovery failed.",
        ))
        .into()
);

schema!(
    NatType,
    string()
        .enum_values(Some(NatType::ALL.map(NatType::as_str)))
        .description(Some("The NAT behaviour a peer detected for itself."))
        .into()
);

schema!(
    SignalData,
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "Opaque hole-punching data (offer, answer, candidates): any JSON object \
             of at most {MAX_SIGNAL_CHARS} characters once serialized, nesting at \
             most {MAX_SIGNAL_DEPTH} levels of objects and arrays (itself included)."
        )))
        .examples([serde_json::json!({"type": "offer", "endpoint": "203.0.113.7:51820"})])
        .into()
);

schema!(
    Timestamp,
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "UTC, ISO 8601 with six fraction digits and `+00:00` (Python's `isoformat()`).",
        ))
        .examples(["2026-11-25T18:00:00.123456+00:00"])
        .into()
);

/// An IPv4 address as a string, for the `virtual_ip` fields.
#[derive(Debug)]
pub struct Ipv4String;

schema!(
    Ipv4String,
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4)))
        .description(Some("A virtual IP from 10.66.0.0/16."))
        .examples(["10.66.0.1"])
        .into()
);

/// A TCP/UDP port: 0 to 65535, 0 when unknown.
#[derive(Debug)]
pub struct Port;

schema!(
    Port,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u16::MAX))
        .into()
);

/// A relay's capacity: any unsigned 32-bit count, 100 when not given.
#[derive(Debug)]
pub struct Capacity;

schema!(
    Capacity,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u32::MAX))
        .into()
);

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::*;

    /// The schema as JSON, for reading its keywords.
    fn json<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    /// Every example a schema shows is a value its type accepts.
    fn examples_parse<T: PartialSchema + DeserializeOwned>() {
        let schema = json::<T>();
        let examples = schema["examples"].as_array().unwrap();
        assert!(!examples.is_empty());
        for example in examples {
            serde_json::from_value::<T>(example.clone())
                .unwrap_or_else(|e| panic!("example {example} refused: {e}"));
        }
    }

    #[test]
    fn examples_are_valid_values() {
        examples_parse::<PeerId>();
        examples_parse::<PartyId>();
        examples_parse::<RelayId>();
        examples_parse::<Region>();
        examples_parse::<Name>();
        examples_parse::<PublicKey>();
        examples_parse::<SignalData>();
        examples_parse::<Timestamp>();
    }

    #[test]
    fn the_public_key_pattern_is_exactly_canonical_base64_of_32_bytes() {
        let schema = json::<PublicKey>();
        let pattern = schema["pattern"].as_str().unwrap();
        let body = pattern
            .strip_prefix("^[A-Za-z0-9+/]{42}[")
            .and_then(|p| p.strip_suffix("]=$"))
            .unwrap();
        // The last digit before `=` is accepted exactly when the parser
        // accepts it.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for last in alphabet.chars() {
            let key = format!("{}{last}=", "A".repeat(42));
            assert_eq!(
                PublicKey::parse(key).is_ok(),
                body.contains(last),
                "last digit {last}"
            );
        }
    }

    /// The schema's `pattern` as a regex (JSON Schema's `\u001F`-style escapes
    /// read the same in Rust's regex syntax).
    fn pattern<T: PartialSchema>() -> regex::Regex {
        regex::Regex::new(json::<T>()["pattern"].as_str().unwrap()).unwrap()
    }

    /// What the schema accepts: its pattern and its lengths in characters.
    fn schema_accepts<T: PartialSchema>(value: &str) -> bool {
        let schema = json::<T>();
        let chars = value.chars().count() as u64;
        pattern::<T>().is_match(value)
            && schema["minLength"].as_u64().is_none_or(|min| chars >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| chars <= max)
    }

    #[test]
    fn schemas_agree_on_dots_and_invisible_formatting() {
        for value in [".", "..", "...", "a.", ".a"] {
            assert_eq!(
                schema_accepts::<PeerId>(value),
                PeerId::parse(value).is_ok(),
                "{value:?}"
            );
        }
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{200E}',
            '\u{061C}',
            '\u{200B}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{180E}',
            '\u{3164}',
            '\u{200C}',
            '\u{200D}',
            '\u{E0067}',
        ] {
            let value = format!("a{c}b");
            assert_eq!(
                schema_accepts::<Name>(&value),
                Name::parse(value.clone()).is_ok(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn name_schema_agrees_with_the_parser(value in "(\\PC|\\pC){0,110}") {
            proptest::prop_assert_eq!(schema_accepts::<Name>(&value), Name::parse(value.clone()).is_ok(), "{:?}", value);
        }

        #[test]
        fn identifier_schema_agrees_with_the_parser(value in "[A-Za-z0-9._ /\\-]{0,70}|\\PC{0,3}") {
            proptest::prop_assert_eq!(schema_accepts::<PeerId>(&value), PeerId::parse(value.clone()).is_ok(), "{:?}", value);
        }

        #[test]
        fn key_schema_agrees_with_the_parser(value in "[A-Za-z0-9+/=]{40,46}") {
            proptest::prop_assert_eq!(schema_accepts::<PublicKey>(&value), PublicKey::parse(value.clone()).is_ok(), "{:?}", value);
        }

        #[test]
        fn real_keys_match_the_key_schema(bytes in proptest::array::uniform32(proptest::prelude::any::<u8>())) {
            proptest::prop_assert!(schema_accepts::<PublicKey>(PublicKey::from_bytes(&bytes).as_str()));
        }
    }

    #[test]
    fn nat_types_listed_are_the_ones_accepted() {
        let schema = json::<NatType>();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // The contract's six, each of which the parser takes.
        assert_eq!(
            listed,
            [
                "unknown",
                "open",
                "full_cone",
                "restricted_cone",
                "port_restricted_cone",
                "symmetric"
            ]
        );
        for value in listed {
            assert!(value.parse::<NatType>().is_ok(), "{value}");
        }
    }
}
