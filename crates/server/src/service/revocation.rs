//! Ending tokens before they expire: a peer's logout, and the operator's
//! revocation and ban of a peer. A revocation deletes the token rows and
//! announces an [`Event::Revoked`]: the token caches of every instance drop
//! the tokens and sockets authenticated with them close (4401). The
//! instance that revoked applies it before answering (see
//! [`Service::write`]); the others as the database's notification arrives.

use lanrage_proto::PeerId;

use super::{
    Error, Result, Service, WriteOp,
    tokens::{OperatorRefusals, check_operator_secret},
    write::Change,
};
use crate::events::{Event, Revoked};

/// What an admin revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRevoked {
    /// Tokens revoked.
    pub tokens: u64,
    pub banned: bool,
}

impl Service {
    /// Revokes the bearer token `token` itself.
    pub async fn logout(&self, token: &str) -> Result<()> {
        let grant = self.grant(token).await?;
        let op = WriteOp::RevokeTokens {
            peer_id: grant.peer_id.clone(),
            tokens: Revoked::One(grant.token_hash().to_owned()),
        };
        let _: u64 = self.retrying(|| self.write(op.clone())).await?.try_into()?;
        Ok(())
    }

    /// The operator revokes every token of `peer_id` and takes it out of
    /// its party; with `ban`, it also bans the peer and its bound key.
    pub async fn revoke_peer(&self, peer_id: &PeerId, ban: bool) -> Result<PeerRevoked> {
        let op = WriteOp::RevokePeer {
            peer_id: peer_id.clone(),
            ban,
        };
        let tokens = self.retrying(|| self.write(op.clone())).await?.try_into()?;
        Ok(PeerRevoked {
            tokens,
            banned: ban,
        })
    }

    /// Lifts the operator's ban on `peer_id` (and on the key banned with
    /// it).
    pub async fn unban(&self, peer_id: &PeerId) -> Result<()> {
        if self.store.unban(peer_id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("peer {peer_id} is not banned")))
        }
    }

    /// Deletes `tokens` of `peer_id`; announces the revocation when any
    /// went.
    pub(super) async fn revoke_in(
        change: &mut Change<'_>,
        peer_id: &PeerId,
        tokens: Revoked,
    ) -> Result<u64> {
        let revoked = change.tx.revoke_tokens(peer_id, &tokens).await?;
        if revoked > 0 {
            change.publish(Event::Revoked {
                peer_id: peer_id.clone(),
                tokens,
            });
        }
        Ok(revoked)
    }

    /// [`WriteOp::RevokePeer`]: the tokens, then the party (as if the peer
    /// left: a host's party ends), then the ban.
    pub(super) async fn revoke_peer_in(
        change: &mut Change<'_>,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<u64> {
        let revoked = Self::revoke_in(change, peer_id, Revoked::AllBut(None)).await?;
        if let Some(party_id) = change.tx.membership(peer_id).await? {
            Self::leave_in(change, &party_id, peer_id).await?;
        }
        if ban {
            let key = change.tx.bound_key(peer_id).await?;
            change
                .tx
                .ban(peer_id, key.as_deref(), lanrage_proto::Timestamp::now())
                .await?;
        }
        Ok(revoked)
    }

    /// Checks the operator's admin credential (`--admin-key`).
    pub fn authorize_admin(&self, bearer: Option<&str>) -> Result<()> {
        check_operator_secret(
            self.config.admin_key.as_ref(),
            bearer,
            OperatorRefusals {
                unset: "admin routes are disabled: the operator has not set LANRAGE_ADMIN_KEY",
                missing: "admin routes require Authorization: Bearer <admin key>",
                wrong: "invalid admin key",
            },
        )
    }
}
