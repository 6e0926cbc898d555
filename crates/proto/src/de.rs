//! Deserialization helpers.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{Error, MapAccess, Unexpected, Visitor, value::MapAccessDeserializer},
};

/// Deserializes `T` from a JSON object only.
///
/// Serde's derived structs also accept an array of the fields in order;
/// the contract's bodies are objects, so `[...]` in their place is refused.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// Deserializes a port (0 to 65535), written `80` or `80.0`.
pub fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    whole(deserializer, u16::MAX.into())
}

/// Deserializes a count (0 to 2³² − 1), written `100` or `100.0`.
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    whole(deserializer, u32::MAX.into())
}

/// Deserializes `resume`'s `after_seq`, an event number (0 to 2⁶³ − 1,
/// what the database holds), written `7` or `7.0`; negative or fractional
/// numbers are refused. The error names the field: inside a tagged socket
/// message serde cannot say where it failed.
pub fn after_seq<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole(deserializer, i64::MAX.unsigned_abs())
        .map_err(|e| D::Error::custom(format!("after_seq: {e}")))
}

/// Deserializes an optional key that, when present, holds a value: `null`
/// is refused (a key whose absence means "unchanged" has no `null`).
pub fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Deserializes a `null`-able whole number (written `8` or `8.0`), for a
/// key whose absence means something else: `Some(None)` is `null`.
pub fn nullable_whole<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u64>>, D::Error> {
    struct Whole(u64);

    impl<'de> Deserialize<'de> for Whole {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            whole(deserializer, u64::MAX).map(Whole)
        }
    }

    Ok(Some(
        Option::<Whole>::deserialize(deserializer)?.map(|w| w.0),
    ))
}

/// A whole number from 0 to `max`. JSON (and JSON Schema) does not tell
/// `80` from `80.0`, and Python clients may send either; a fraction, a
/// negative number or anything above `max` is refused.
fn whole<'de, D, T>(deserializer: D, max: u64) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct WholeVisitor(u64);

    impl WholeVisitor {
        fn check<E: Error>(&self, value: u64) -> Result<u64, E> {
            if value <= self.0 {
                Ok(value)
            } else {
                Err(E::invalid_value(Unexpected::Unsigned(value), self))
            }
        }
    }

    impl Visitor<'_> for WholeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from 0 to {}", self.0)
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<u64, E> {
            self.check(value)
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value)
                .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
                .and_then(|value| self.check(value))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<u64, E> {
            // Every whole number up to 2³² is exact in an f64.
            if value.fract() == 0.0 && (0.0..=self.0 as f64).contains(&value) {
                Ok(value as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    let value = deserializer.deserialize_any(WholeVisitor(max))?;
    T::try_from(value).map_err(|_| D::Error::custom("number out of range"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::RelayRegistration;

    #[test]
    fn objects_pass_and_arrays_do_not() {
        let relay = json!({"relay_id": "r1", "public_ip": "198.51.100.1", "port": 1});
        let parsed: RelayRegistration = object(relay).unwrap();
        assert_eq!(parsed.relay_id.as_str(), "r1");

        let as_array = json!(["r1", "198.51.100.1", 1, "eu", 5]);
        assert!(serde_json::from_value::<RelayRegistration>(as_array.clone()).is_ok());
        let error = object::<_, RelayRegistration>(as_array).unwrap_err();
        assert!(error.to_string().contains("a JSON object"));
    }

    #[test]
    fn ports_are_whole_numbers_written_either_way() {
        let port = |v| port(v);
        assert_eq!(port(json!(80)).unwrap(), 80);
        assert_eq!(port(json!(80.0)).unwrap(), 80);
        assert_eq!(port(json!(65535)).unwrap(), 65535);
        for bad in [
            json!(65536),
            json!(65536.0),
            json!(-1),
            json!(-1.0),
            json!(80.5),
            json!(1e300),
            json!("80"),
            json!(null),
        ] {
            assert!(port(bad.clone()).is_err(), "{bad} accepted");
        }
        assert_eq!(count(json!(4_294_967_295_u64)).unwrap(), u32::MAX);
        assert!(count(json!(4_294_967_296_u64)).is_err());
        assert_eq!(after_seq(json!(7)).unwrap(), 7);
        assert_eq!(after_seq(json!(7.0)).unwrap(), 7);
        for bad in [json!(-1), json!(-0.5), json!(1.5), json!("3"), json!(null)] {
            let error = after_seq(bad.clone()).unwrap_err().to_string();
            assert!(error.starts_with("after_seq: "), "{bad}: {error}");
            assert!(error.contains("whole number"), "{bad}: {error}");
        }
    }
}
