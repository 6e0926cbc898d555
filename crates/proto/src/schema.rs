//! JSON Schemas of the validating newtypes, for the server's OpenAPI
//! document (feature `openapi`).
//!
//! Each schema states exactly what the type's parser accepts, no more and
//! no less: property-based API tests generate requests from these schemas
//! and expect every valid one accepted and every invalid one refused.

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr, Schema,
        schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type},
    },
};

use crate::{
    IpOrUnknown, Name, NatType, PartyId, PeerId, PublicKey, Region, RelayId, SignalData, Timestamp,
    limits::{MAX_ID_CHARS, MAX_NAME_CHARS, MAX_SIGNAL_CHARS},
};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn identifier(description: &str, example: &str) -> RefOr<Schema> {
    string()
        .min_length(Some(1))
        .max_length(Some(MAX_ID_CHARS))
        .pattern(Some("^[A-Za-z0-9._-]+$"))
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
        // `char::is_control`: the C0 and C1 control characters and DEL.
        .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F]+$"))
        .description(Some(
            "1 to 100 characters (Unicode scalar values), no control characters.",
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
             of at most {MAX_SIGNAL_CHARS} characters once serialized."
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

    #[test]
    fn the_name_pattern_refuses_what_the_parser_refuses() {
        let schema = json::<Name>();
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], MAX_NAME_CHARS);
        // The pattern's class is C0, DEL and C1: `char::is_control`.
        let control: Vec<char> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_control())
            .collect();
        assert_eq!(control.first(), Some(&'\u{0}'));
        assert_eq!(control.len(), 0x20 + 0x21);
        assert!(
            control
                .iter()
                .all(|&c| c <= '\u{1F}' || ('\u{7F}'..='\u{9F}').contains(&c))
        );
        assert_eq!(schema["pattern"], "^[^\\u0000-\\u001F\\u007F-\\u009F]+$");
    }

    #[test]
    fn nat_types_are_listed_in_full() {
        let schema = json::<NatType>();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, NatType::ALL.map(NatType::as_str));
    }
}
