//! Validated field values of peers and signals.

use std::{fmt, net::IpAddr, str::FromStr};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use crate::{
    InvalidValue,
    limits::{MAX_NAME_CHARS, MAX_SIGNAL_CHARS, MAX_SIGNAL_DEPTH},
};

/// Whether `c` is an invisible formatting character that changes how the
/// text around it renders: bidirectional embeddings, overrides, isolates
/// and marks (a name could show reversed, or reorder its neighbours in a
/// member list), zero-width spaces and joiners of words, invisible
/// operators, the byte order mark, line and paragraph separators,
/// interlinear annotations and the like. ZWJ and ZWNJ (U+200D, U+200C) are
/// not among them: Arabic, Indic scripts and emoji sequences need them.
fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                    // soft hyphen
            | '\u{061C}'              // Arabic letter mark
            | '\u{200B}'              // zero width space
            | '\u{200E}' | '\u{200F}' // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{206A}'..='\u{206F}' // deprecated shaping and digit controls
            | '\u{FEFF}'              // zero width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{180E}'              // Mongolian vowel separator
            // Hangul fillers: render as nothing, the classic blank game name.
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'
    )
}

/// A party or peer name: 1 to 100 characters, no control characters and no
/// invisible formatting that changes how neighbouring text renders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let chars = value.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(InvalidValue(format!(
                "name must be 1 to {MAX_NAME_CHARS} characters, got {chars}"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(InvalidValue(
                "name may not contain control characters".into(),
            ));
        }
        if let Some(hidden) = value.chars().find(|&c| is_hidden_format(c)) {
            return Err(InvalidValue(format!(
                "name may not contain U+{:04X}: invisible formatting characters \
                 (bidirectional overrides, isolates, marks, zero-width spaces) \
                 would change how it and the names beside it render",
                u32::from(hidden)
            )));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WireGuard public key: standard base64 of exactly 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(String);

impl PublicKey {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        match STANDARD.decode(value.as_bytes()) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self(value)),
            _ => Err(InvalidValue(
                "public_key must be a WireGuard key (base64 of 32 bytes)".into(),
            )),
        }
    }

    /// The key made of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(STANDARD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PublicKey {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<PublicKey> for String {
    fn from(value: PublicKey) -> Self {
        value.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 or IPv6 address, or `unknown` when the client's NAT discovery
/// failed (the LANrage client sends exactly that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IpOrUnknown {
    Ip(IpAddr),
    Unknown,
}

impl FromStr for IpOrUnknown {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "unknown" {
            return Ok(Self::Unknown);
        }
        value
            .parse()
            .map(Self::Ip)
            .map_err(|_| InvalidValue(format!("{value:?} is not an IP address or \"unknown\"")))
    }
}

impl TryFrom<String> for IpOrUnknown {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<IpOrUnknown> for String {
    fn from(value: IpOrUnknown) -> Self {
        value.to_string()
    }
}

impl fmt::Display for IpOrUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// The NAT behaviour a peer detected for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatType {
    Unknown,
    Open,
    FullCone,
    RestrictedCone,
    PortRestrictedCone,
    Symmetric,
}

impl NatType {
    pub const ALL: [NatType; 6] = [
        Self::Unknown,
        Self::Open,
        Self::FullCone,
        Self::RestrictedCone,
        Self::PortRestrictedCone,
        Self::Symmetric,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Open => "open",
            Self::FullCone => "full_cone",
            Self::RestrictedCone => "restricted_cone",
            Self::PortRestrictedCone => "port_restricted_cone",
            Self::Symmetric => "symmetric",
        }
    }
}

impl FromStr for NatType {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|nat| nat.as_str() == value)
            .ok_or_else(|| InvalidValue(format!("unknown nat_type {value:?}")))
    }
}

impl fmt::Display for NatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many levels of objects and arrays `value` nests, counting `value`
/// itself, up to `limit + 1` (deeper is not measured). Iterative, so no
/// input can exhaust the stack.
fn nesting_depth(value: &serde_json::Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => continue,
        }
        deepest = deepest.max(depth);
        if deepest > limit {
            break;
        }
    }
    deepest
}

/// Opaque hole-punching data (offer, answer, candidates): a JSON object of at
/// most 16 KiB once serialized, nesting at most 32 levels deep (so a drain
/// answer holding it stays within what any JSON parser reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct SignalData(serde_json::Map<String, serde_json::Value>);

impl SignalData {
    pub fn parse(value: serde_json::Value) -> Result<Self, InvalidValue> {
        if !value.is_object() {
            return Err(InvalidValue("signal_data must be a JSON object".into()));
        }
        if nesting_depth(&value, MAX_SIGNAL_DEPTH) > MAX_SIGNAL_DEPTH {
            return Err(InvalidValue(format!(
                "signal_data nests more than {MAX_SIGNAL_DEPTH} levels of objects and arrays"
            )));
        }
        let serde_json::Value::Object(map) = value else {
            return Err(InvalidValue("signal_data must be a JSON object".into()));
        };
        let chars = serde_json::Value::Object(map.clone())
            .to_string()
            .chars()
            .count();
        if chars > MAX_SIGNAL_CHARS {
            return Err(InvalidValue(format!(
                "signal_data must be at most {MAX_SIGNAL_CHARS} characters of JSON, got {chars}"
            )));
        }
        Ok(Self(map))
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

impl TryFrom<serde_json::Value> for SignalData {
    type Error = InvalidValue;
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<SignalData> for serde_json::Value {
    fn from(value: SignalData) -> Self {
        serde_json::Value::Object(value.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_counted_in_characters() {
        assert!(Name::parse("é".repeat(100)).is_ok());
        assert!(Name::parse("é".repeat(101)).is_err());
        assert!(Name::parse("").is_err());
        assert!(Name::parse("tab\there").is_err());
        assert!(Name::parse("Friday night 🎮").is_ok());
    }

    /// The invisible formatting characters a name refuses.
    const HIDDEN: &[char] = &[
        '\u{00AD}', '\u{061C}', '\u{200B}', '\u{200E}', '\u{200F}', '\u{2028}', '\u{2029}',
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2060}', '\u{2061}',
        '\u{2062}', '\u{2063}', '\u{2064}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        '\u{206A}', '\u{206F}', '\u{FEFF}', '\u{FFF9}', '\u{FFFB}', '\u{180E}', '\u{115F}',
        '\u{3164}', '\u{FFA0}',
    ];

    #[test]
    fn names_refuse_bidi_controls_and_invisible_formatting() {
        for &hidden in HIDDEN {
            let error = Name::parse(format!("ali{hidden}ce")).unwrap_err();
            let code = format!("U+{:04X}", u32::from(hidden));
            assert!(error.0.contains(&code), "{code}: {error}");
        }
        // The classic: an override that makes "evil\u{202E}gpj.exe" read
        // as "evilexe.jpg".
        assert!(Name::parse("evil\u{202E}gpj.exe").is_err());
    }

    #[test]
    fn names_keep_every_script_and_the_joiners_they_need() {
        for name in [
            "مرحبا بالجميع",                                            // Arabic, right to left
            "שלום חברים",                                               // Hebrew
            "金曜日のLANパーティー",                                    // CJK and kana
            "नमस्ते",              // Devanagari (virama conjuncts)
            "क्\u{200D}ष",        // ZWJ in an Indic conjunct
            "می\u{200C}خواهم",   // ZWNJ in Persian
            "👩\u{200D}💻 crew", // an emoji ZWJ sequence
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", // a tag sequence flag
            "Ελληνικά и кириллица",
        ] {
            assert!(Name::parse(name).is_ok(), "{name:?} refused");
        }
    }

    #[test]
    fn signal_data_nests_at_most_32_levels() {
        let nested = |depth: usize| {
            let mut value = json!({});
            for level in 1..depth {
                value = if level % 2 == 0 {
                    json!({ "k": value })
                } else {
                    json!([value])
                };
            }
            // The outermost level must be an object.
            json!({ "outer": value })
        };
        // nested(n) has n + 1 levels with its wrapper.
        assert!(SignalData::parse(nested(31)).is_ok());
        let error = SignalData::parse(nested(32)).unwrap_err();
        assert!(error.0.contains("more than 32 levels"), "{error}");
        assert!(SignalData::parse(nested(120)).is_err());
        // Wide is fine, deep is not.
        let wide: serde_json::Map<_, _> = (0..500).map(|i| (i.to_string(), json!([[1]]))).collect();
        assert!(SignalData::parse(serde_json::Value::Object(wide)).is_ok());
    }

    #[test]
    fn public_keys_must_be_32_bytes_of_base64() {
        assert!(PublicKey::parse("A".repeat(43) + "=").is_ok());
        assert!(PublicKey::parse("A".repeat(44)).is_err());
        assert!(PublicKey::parse("not a key").is_err());
        assert!(PublicKey::parse("").is_err());
        let key = PublicKey::from_bytes(&[7; 32]);
        assert_eq!(PublicKey::parse(key.as_str()).unwrap(), key);
    }

    #[test]
    fn ips_accept_v4_v6_and_unknown_only() {
        for ok in ["203.0.113.7", "::1", "2001:db8::5", "unknown"] {
            assert_eq!(ok.parse::<IpOrUnknown>().unwrap().to_string(), ok);
        }
        for bad in [
            "",
            "Unknown",
            "1.2.3",
            "256.1.1.1",
            "example.com",
            "1.2.3.4:80",
        ] {
            assert!(bad.parse::<IpOrUnknown>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nat_types_round_trip() {
        for nat in NatType::ALL {
            let json = serde_json::to_string(&nat).unwrap();
            assert_eq!(json, format!("\"{nat}\""));
            assert_eq!(nat.as_str().parse::<NatType>().unwrap(), nat);
        }
        assert!(serde_json::from_str::<NatType>("\"cone\"").is_err());
    }

    #[test]
    fn signal_data_is_a_bounded_object() {
        assert!(SignalData::parse(json!({"type": "offer", "sdp": "x"})).is_ok());
        assert!(SignalData::parse(json!([1, 2])).is_err());
        assert!(SignalData::parse(json!("text")).is_err());
        let big = "x".repeat(MAX_SIGNAL_CHARS);
        assert!(SignalData::parse(json!({ "blob": big })).is_err());
        let fits = "x".repeat(MAX_SIGNAL_CHARS - 20);
        assert!(SignalData::parse(json!({ "blob": fits })).is_ok());
    }

    proptest! {
        #[test]
        fn any_32_bytes_make_a_key(bytes in proptest::array::uniform32(any::<u8>())) {
            let key = PublicKey::from_bytes(&bytes);
            prop_assert!(PublicKey::parse(key.as_str()).is_ok());
        }

        #[test]
        fn any_ip_round_trips(ip in any::<IpAddr>()) {
            let parsed: IpOrUnknown = ip.to_string().parse().unwrap();
            prop_assert_eq!(parsed, IpOrUnknown::Ip(ip));
        }

        #[test]
        fn names_of_valid_length_parse(
            name in "[[^\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]--[\\u{115F}\\u{1160}\\u{3164}\\u{FFA0}\\u{180E}]]{1,100}"
        ) {
            prop_assert!(Name::parse(name).is_ok());
        }

        #[test]
        fn letters_of_any_script_with_joiners_parse(
            // Every letter but the Hangul fillers, which render as nothing.
            name in "[[\\p{L}\\p{M}\\p{N}\\u{200C}\\u{200D} ]--[\\u{115F}\\u{1160}\\u{3164}\\u{FFA0}]]{1,100}"
        ) {
            prop_assert!(Name::parse(name).is_ok());
        }

        #[test]
        fn one_hidden_formatting_character_refuses_any_name(
            name in "[^\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]{0,99}",
            which in 0..HIDDEN.len(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut chars: Vec<char> = name.chars().collect();
            chars.insert(at.index(chars.len() + 1), HIDDEN[which]);
            prop_assert!(Name::parse(chars.into_iter().collect::<String>()).is_err());
        }

        #[test]
        fn signal_data_depth_is_checked_exactly(depth in 1usize..60) {
            let mut value = json!({});
            for _ in 1..depth {
                value = json!({ "k": value });
            }
            prop_assert_eq!(SignalData::parse(value).is_ok(), depth <= MAX_SIGNAL_DEPTH);
        }
    }
}
