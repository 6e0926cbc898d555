//! Deserialization helpers.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
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
}
