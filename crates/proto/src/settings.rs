//! A party's settings (DESIGN, "Capabilities beyond v1", section 2) and
//! the bodies of host authority (section 4).
//!
//! The settings object a client sends is strict, unlike other bodies: a
//! misspelt setting must not pass silently, so unknown keys and values are
//! refused. The object the server sends may gain keys later; clients
//! ignore unknown ones inside it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use crate::{InvalidValue, Party, PartyId, PeerId};

/// What happens when the host leaves or goes quiet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostPolicy {
    /// v1: the host leaving ends the party.
    #[default]
    End,
    /// The next present member takes over.
    Migrate,
}

/// Who may join a party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JoinPolicy {
    /// v1: the party ID is enough.
    #[default]
    Open,
    /// Only with a join code; members still refresh by ID.
    Invite,
}

macro_rules! policy_text {
    ($type:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $type {
            type Err = InvalidValue;

            fn from_str(text: &str) -> Result<Self, InvalidValue> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(InvalidValue(format!(
                        concat!("{:?} is not one of ", $("`", $text, "` ",)+),
                        other
                    ))),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

policy_text!(HostPolicy { End => "end", Migrate => "migrate" });
policy_text!(JoinPolicy { Open => "open", Invite => "invite" });

/// The fewest and most members a party may be capped at.
pub const MIN_MAX_MEMBERS: u16 = 2;
pub const MAX_MAX_MEMBERS: u16 = 256;

/// A party's settings, as the server reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartySettings {
    pub host_policy: HostPolicy,
    pub join_policy: JoinPolicy,
    /// `null`: no limit but the server's own.
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 256))]
    pub max_members: Option<u16>,
}

impl PartySettings {
    /// These settings with `patch`'s values where it has one.
    pub fn patched(self, patch: &SettingsPatch) -> Self {
        Self {
            host_policy: patch.host_policy.unwrap_or(self.host_policy),
            join_policy: patch.join_policy.unwrap_or(self.join_policy),
            max_members: patch.max_members.unwrap_or(self.max_members),
        }
    }
}

/// Some of a party's settings, as a client sends them (`PATCH
/// /parties/{id}/settings`, and `"settings"` when creating a party):
/// unknown keys and values are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(
        default,
        deserialize_with = "crate::de::given",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_policy: Option<HostPolicy>,
    #[serde(
        default,
        deserialize_with = "crate::de::given",
        skip_serializing_if = "Option::is_none"
    )]
    pub join_policy: Option<JoinPolicy>,
    /// Absent: unchanged; `null`: no limit; else 2 to 256.
    #[serde(
        default,
        deserialize_with = "max_members",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u16>, minimum = 2, maximum = 256)
    )]
    pub max_members: Option<Option<u16>>,
}

/// `max_members` when present: `null`, or a whole number from 2 to 256.
fn max_members<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u16>>, D::Error> {
    let Some(value) = crate::de::nullable_whole(deserializer)? else {
        return Ok(None);
    };
    let Some(number) = value else {
        return Ok(Some(None));
    };
    u16::try_from(number)
        .ok()
        .filter(|n| (MIN_MAX_MEMBERS..=MAX_MAX_MEMBERS).contains(n))
        .map(|n| Some(Some(n)))
        .ok_or_else(|| {
            D::Error::custom(format!(
                "max_members must be null or a whole number from {MIN_MAX_MEMBERS} to \
                 {MAX_MAX_MEMBERS}, not {number}"
            ))
        })
}

/// `GET` and `PATCH /parties/{id}/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsResponse {
    pub party_id: PartyId,
    pub settings: PartySettings,
    pub seq: u64,
}

/// The body of `POST /parties/{id}/host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferHostRequest {
    pub new_host_id: PeerId,
    /// The `host_epoch` the caller last saw: the transfer is refused (409)
    /// if the host changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_epoch: Option<u64>,
}

/// `POST /parties/{id}/host`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferHostResponse {
    pub party: Party,
    pub host_epoch: u64,
    pub seq: u64,
}

/// The body of `DELETE /parties/{id}/members/{peer_id}` (optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KickRequest {
    /// Also keep the peer (and its bound key) out of this party until it
    /// ends.
    #[serde(default)]
    pub ban: bool,
}

/// `DELETE /parties/{id}/members/{peer_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KickResponse {
    /// `removed`.
    pub status: String,
    pub banned: bool,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_takes_known_keys_and_values_only() {
        let patch: SettingsPatch =
            serde_json::from_value(json!({"host_policy": "migrate"})).unwrap();
        assert_eq!(patch.host_policy, Some(HostPolicy::Migrate));
        assert_eq!(patch.max_members, None);
        for bad in [
            json!({"host_policy": "Migrate"}),
            json!({"hostpolicy": "migrate"}),
            json!({"join_policy": "closed"}),
            json!({"max_members": 1}),
            json!({"max_members": 257}),
            json!({"max_members": 2.5}),
            json!({"max_members": "8"}),
            json!({"host_policy": null}),
        ] {
            assert!(
                serde_json::from_value::<SettingsPatch>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn null_max_members_lifts_the_limit_and_absent_keeps_it() {
        let capped = PartySettings {
            max_members: Some(8),
            ..PartySettings::default()
        };
        let lift: SettingsPatch = serde_json::from_value(json!({"max_members": null})).unwrap();
        assert_eq!(capped.patched(&lift).max_members, None);
        let keep: SettingsPatch = serde_json::from_value(json!({})).unwrap();
        assert_eq!(capped.patched(&keep), capped);
        let set: SettingsPatch = serde_json::from_value(json!({"max_members": 256.0})).unwrap();
        assert_eq!(capped.patched(&set).max_members, Some(256));
    }

    #[test]
    fn settings_read_as_the_contract_spells_them() {
        let settings = PartySettings::default();
        assert_eq!(
            serde_json::to_value(settings).unwrap(),
            json!({"host_policy": "end", "join_policy": "open", "max_members": null})
        );
        assert_eq!(
            "migrate".parse::<HostPolicy>().unwrap(),
            HostPolicy::Migrate
        );
        assert!("MIGRATE".parse::<HostPolicy>().is_err());
    }
}
