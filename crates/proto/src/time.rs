//! Timestamps as the contract writes them: UTC ISO 8601 that Python's
//! `datetime.fromisoformat` parses on every Python version (3.7+ only reads
//! what `isoformat()` writes: six fraction digits and a `+00:00` offset).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_micros(Utc::now().timestamp_micros())
    }

    /// The instant `micros` microseconds after the Unix epoch (clamped to
    /// the range chrono can represent).
    pub fn from_micros(micros: i64) -> Self {
        Self(DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    pub fn as_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// This instant moved by `secs` seconds (negative moves back).
    pub fn plus_secs(self, secs: i64) -> Self {
        Self(
            self.0
                .checked_add_signed(TimeDelta::seconds(secs))
                .unwrap_or(self.0),
        )
    }

    /// Parses RFC 3339 / ISO 8601, with or without an offset (no offset
    /// means UTC, as Python's naive `utcnow().isoformat()` produces).
    pub fn parse(value: &str) -> Option<Self> {
        if let Ok(at) = DateTime::parse_from_rfc3339(value) {
            return Some(Self::from_micros(at.timestamp_micros()));
        }
        NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| Self::from_micros(naive.and_utc().timestamp_micros()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an ISO 8601 timestamp"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_python_isoformat_writes() {
        let at = Timestamp::from_micros(1_764_000_000_000_001);
        assert_eq!(at.to_string(), "2025-11-24T16:00:00.000001+00:00");
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00.000000+00:00"
        );
    }

    #[test]
    fn reads_offsets_zulu_and_naive_forms() {
        let expected = Timestamp::from_micros(1_764_000_000_500_000);
        for text in [
            "2025-11-24T16:00:00.500000+00:00",
            "2025-11-24T16:00:00.5Z",
            "2025-11-24T17:00:00.5+01:00",
            "2025-11-24T16:00:00.500000",
        ] {
            assert_eq!(Timestamp::parse(text), Some(expected), "{text}");
        }
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn round_trips_through_json() {
        let at = Timestamp::now();
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), at);
    }
}
