//! Join codes (DESIGN, "Capabilities beyond v1", section 3): the bodies of
//! the invite routes. `Invite` and the preview are new objects: they may
//! gain keys later, so clients ignore unknown ones inside them.

use serde::{Deserialize, Serialize};

use crate::{PartyId, PeerId, PeerInfo, Timestamp};

/// The fewest and most uses an invite may have.
pub const MIN_INVITE_USES: u32 = 1;
pub const MAX_INVITE_USES: u32 = 100;
/// The shortest and longest an invite may live, in seconds.
pub const MIN_INVITE_TTL_SECS: u64 = 60;
pub const MAX_INVITE_TTL_SECS: u64 = 604_800;
/// The most live invites a party may have.
pub const MAX_LIVE_INVITES: usize = 20;

/// A join code the host made. Its `Debug` hides the code's digits: an
/// invite in a log line must not give the code away.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invite {
    /// `NAMEPLATE-SECRET`, upper case: what players say to each other.
    pub code: String,
    /// The code's word part, lower case (`frog`, `frog-lamp`): what the
    /// host revokes it by.
    pub nameplate: String,
    pub party_id: PartyId,
    pub created_by: PeerId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_uses: u32,
    pub uses: u32,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("nameplate", &self.nameplate)
            .field("code", &"***")
            .field("party_id", &self.party_id)
            .field("created_by", &self.created_by)
            .field("expires_at", &self.expires_at)
            .field("uses", &(self.uses, self.max_uses))
            .finish_non_exhaustive()
    }
}

/// The body of `POST /parties/{id}/invites`; absent keys take the server's
/// defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateInviteRequest {
    /// 1 to 100.
    #[serde(
        default,
        deserialize_with = "optional_count",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_uses: Option<u32>,
    /// 60 to 604800.
    #[serde(
        default,
        deserialize_with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 604800))]
    pub ttl_secs: Option<u64>,
}

fn optional_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    crate::de::count(d).map(Some)
}

fn optional_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match crate::de::nullable_whole(d)? {
        Some(Some(secs)) => Ok(Some(secs)),
        _ => Err(D::Error::custom(
            "ttl_secs must be a whole number of seconds",
        )),
    }
}

/// `POST /parties/{id}/invites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteResponse {
    pub invite: Invite,
}

/// `GET /parties/{id}/invites`: the live ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitesResponse {
    pub invites: Vec<Invite>,
}

/// `GET /invites/{code}`: what a player sees before joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitePreview {
    pub party_id: PartyId,
    pub party_name: String,
    pub host_name: String,
    pub members: u64,
    pub expires_at: Timestamp,
    pub uses_left: u32,
}

/// The body of `POST /invites/{code}/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinByCodeRequest {
    #[serde(deserialize_with = "crate::de::object")]
    pub peer_info: PeerInfo,
}
