//! The operator's calls (`/admin/…`, with the admin key): parties and
//! their members, ending a party or removing a member, relays with their
//! state, the server's numbers, and revoking or banning a peer. They need
//! no peer token: the admin key is the credential, so any client can make
//! them whatever peer it is configured for.

use lanrage_proto::{
    AdminPartiesResponse, AdminParty, AdminRelay, AdminRelaysResponse, AdminStats, PartyId, PeerId,
    RelayId, RelayStatusResponse, RevokePeerRequest, RevokePeerResponse, StatusResponse,
};
use reqwest::Method;

use super::{Auth, HttpClient, Resend};
use crate::error::Result;

impl HttpClient {
    /// `GET /admin/parties`: up to `limit` parties (1 to 500; the server's
    /// 100 when none) after `after`, with the next page's `after`.
    pub async fn admin_parties(
        &self,
        admin_key: &str,
        after: Option<&PartyId>,
        limit: Option<u32>,
    ) -> Result<AdminPartiesResponse> {
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let path = if query.is_empty() {
            "/admin/parties".to_owned()
        } else {
            format!("/admin/parties?{}", query.join("&"))
        };
        self.admin_call(admin_key, Method::GET, &path, Resend::Safe)
            .await
    }

    /// Every party, reading page after page.
    pub async fn admin_all_parties(&self, admin_key: &str) -> Result<Vec<AdminParty>> {
        let mut parties = Vec::new();
        let mut after = None;
        loop {
            let page = self.admin_parties(admin_key, after.as_ref(), None).await?;
            parties.extend(page.parties);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(parties),
            }
        }
    }

    /// `GET /admin/parties/{party_id}`.
    pub async fn admin_party(&self, admin_key: &str, party_id: &PartyId) -> Result<AdminParty> {
        let path = format!("/admin/parties/{party_id}");
        self.admin_call(admin_key, Method::GET, &path, Resend::Safe)
            .await
    }

    /// `DELETE /admin/parties/{party_id}`: every member gets `party_ended`
    /// with reason `operator`.
    /// A retry whose answer is 404 means the first attempt ended it.
    pub async fn admin_end_party(&self, admin_key: &str, party_id: &PartyId) -> Result<()> {
        let path = format!("/admin/parties/{party_id}");
        let _: Option<StatusResponse> = self
            .call_or_gone(
                Method::DELETE,
                &path,
                None::<&()>,
                Auth::Operator(admin_key),
                Resend::GoneIsDone,
                None,
            )
            .await?;
        Ok(())
    }

    /// `DELETE /admin/parties/{party_id}/members/{peer_id}`: the server's
    /// status, `removed` or `party_deleted` (the host was removed and the
    /// party ended).
    pub async fn admin_remove_member(
        &self,
        admin_key: &str,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> Result<String> {
        let path = format!("/admin/parties/{party_id}/members/{peer_id}");
        let answer: StatusResponse = self
            .admin_call(admin_key, Method::DELETE, &path, Resend::Unsafe)
            .await?;
        Ok(answer.status)
    }

    /// `GET /admin/relays`.
    pub async fn admin_relays(&self, admin_key: &str) -> Result<Vec<AdminRelay>> {
        let listed: AdminRelaysResponse = self
            .admin_call(admin_key, Method::GET, "/admin/relays", Resend::Safe)
            .await?;
        Ok(listed.relays)
    }

    /// `DELETE /admin/relays/{relay_id}`.
    pub async fn admin_deregister_relay(&self, admin_key: &str, relay_id: &RelayId) -> Result<()> {
        let path = format!("/admin/relays/{relay_id}");
        let _: RelayStatusResponse = self
            .admin_call(admin_key, Method::DELETE, &path, Resend::Safe)
            .await?;
        Ok(())
    }

    /// `GET /admin/stats`.
    pub async fn admin_stats(&self, admin_key: &str) -> Result<AdminStats> {
        self.admin_call(admin_key, Method::GET, "/admin/stats", Resend::Safe)
            .await
    }

    /// `POST /admin/peers/{peer_id}/revoke`: every token of the peer goes
    /// and it leaves its party; with `ban`, it (and its bound key) cannot
    /// come back until unbanned.
    pub async fn admin_revoke(
        &self,
        admin_key: &str,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<RevokePeerResponse> {
        let path = format!("/admin/peers/{peer_id}/revoke");
        self.call(
            Method::POST,
            &path,
            Some(&RevokePeerRequest { ban }),
            Auth::Operator(admin_key),
            Resend::Safe,
        )
        .await
    }

    /// `DELETE /admin/peers/{peer_id}/ban`.
    pub async fn admin_unban(&self, admin_key: &str, peer_id: &PeerId) -> Result<()> {
        let path = format!("/admin/peers/{peer_id}/ban");
        let _: StatusResponse = self
            .admin_call(admin_key, Method::DELETE, &path, Resend::Safe)
            .await?;
        Ok(())
    }

    async fn admin_call<T: serde::de::DeserializeOwned>(
        &self,
        admin_key: &str,
        method: Method,
        path: &str,
        resend: Resend,
    ) -> Result<T> {
        self.call(method, path, None::<&()>, Auth::Operator(admin_key), resend)
            .await
    }
}
