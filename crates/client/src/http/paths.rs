//! The path plan through the HTTP client (DESIGN, "Capabilities beyond
//! v1", section 6): this peer's NAT behaviour and its connection outcomes
//! in, the party's plan per member pair out.

use lanrage_proto::{
    MAX_RTT_MS, NatReport, PartyId, PathReport, PathReports, PathsResponse, StatusResponse,
};
use reqwest::{Method, StatusCode};

use super::{HttpClient, PATH_PLAN_FEATURE, Resend};
use crate::error::{ClientError, Result};

/// The path plan: what a server that lists [`PATH_PLAN_FEATURE`] offers
/// and the local plane does not, so, like relay choice, methods of the
/// HTTP client (and of [`RemoteControlPlane`](crate::RemoteControlPlane))
/// rather than of [`ControlPlane`](crate::ControlPlane). Each asks the
/// server's `features` once per client, and against a server that does
/// not list `path-plan` fails with [`ClientError::Unsupported`](crate::ClientError::Unsupported)
/// without sending anything. Refusals are
/// [`ClientError::Refused`](crate::ClientError::Refused) with the server's
/// status and `detail`.
///
/// Each pair's `plan` says how its two members should connect: `lan` try
/// local endpoints first; `direct` punch, no relay unless it fails;
/// `attempt` relay and punch at once; `relay` relay at once (the party's
/// relay, [`HttpClient::party_relay`]), probing direct only in the
/// background. A member reports what it found
/// ([`HttpClient::report_paths`]), so the plan, and the server's
/// statistics across its parties, keep learning. Changes of plan reach
/// members as [`Event::PathPlan`](crate::Event::PathPlan) (the changed
/// pairs only); round-trip changes are read, not pushed. Read
/// [`HttpClient::party_paths`] after joining, and after a snapshot
/// [`Event::PartyUpdated`](crate::Event::PartyUpdated): the server plans
/// a party from its first read or report, and pushes only changes to a
/// plan it has stored.
///
/// ```no_run
/// use lanrage_client::{HttpClient, HttpConfig, MappingTest, FilteringTest, Rfc5780Results};
/// use lanrage_client::proto::{PartyId, PathOutcome, PathReport, PeerId};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let client = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", PeerId::parse("bob").expect("valid id")))?;
/// let party = PartyId::parse("9f1c0e7a").expect("valid id");
/// // What the application's STUN tests against an RFC 5780 server saw.
/// let tests = Rfc5780Results {
///     mapping: Some(MappingTest {
///         local: "192.168.1.20:51820".parse().expect("address"),
///         primary: "203.0.113.7:40001".parse().expect("address"),
///         alternate_ip: Some("203.0.113.7:40001".parse().expect("address")),
///         alternate_ip_and_port: None,
///     }),
///     filtering: Some(FilteringTest { change_ip_and_port: false, change_port: Some(true) }),
///     port_mapping: false,
/// };
/// client.report_nat(&party, tests.nat_report()).await?;
/// for pair in client.party_paths(&party).await?.pairs {
///     println!("{} and {}: {} ({:?})", pair.a, pair.b, pair.plan.as_str(), pair.basis);
/// }
/// // After trying to reach alice:
/// let outcome = PathReport {
///     peer_id: PeerId::parse("alice").expect("valid id"),
///     outcome: PathOutcome::Direct,
///     rtt_ms: Some(18.0),
/// };
/// client.report_paths(&party, vec![outcome]).await?;
/// # Ok(())
/// # }
/// ```
impl HttpClient {
    /// `PUT /parties/{id}/peers/{me}/nat`: this peer's NAT behaviour
    /// (RFC 4787 mapping and filtering as measured per RFC 5780, see
    /// [`Rfc5780Results`](crate::Rfc5780Results)) and whether a
    /// port-mapping protocol opened a port (a member only). It replaces
    /// what the member's `nat_type` implied. Refusals: 403 when this peer
    /// is not a member. Retried like a read: the same report twice is
    /// one report.
    pub async fn report_nat(&self, party_id: &PartyId, nat: NatReport) -> Result<()> {
        let path = format!("/parties/{party_id}/peers/{}/nat", self.own_id().await?);
        let _: StatusResponse = self
            .call_needing(
                PATH_PLAN_FEATURE,
                Method::PUT,
                &path,
                Some(&nat),
                Resend::Safe,
            )
            .await?;
        Ok(())
    }

    /// `POST /parties/{id}/paths`: what happened when this peer tried to
    /// reach other members, up to 64 at once (a member only). Each replaces
    /// this peer's last report about that member, and also counts once in
    /// the server's statistics of its NAT-class pair, which is why a report
    /// is retried only when the server certainly did not act (a resend
    /// after a timeout could count it twice); report again at the next
    /// measurement instead. Refusals: 403 when this peer is not a member,
    /// 404 when a `peer_id` is not a member or is this peer, 422 for more
    /// than 64 reports or a round trip not over 0 and at most 10000 (one
    /// that is not a number at all is refused so here, without sending
    /// anything).
    pub async fn report_paths(&self, party_id: &PartyId, reports: Vec<PathReport>) -> Result<()> {
        // JSON has no NaN or infinity (it would arrive as `null`, no round
        // trip): refused as the server refuses a value out of range.
        if let Some(ms) = reports
            .iter()
            .filter_map(|report| report.rtt_ms)
            .find(|ms| !ms.is_finite())
        {
            return Err(ClientError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("rtt_ms must be over 0 and at most {MAX_RTT_MS}, not {ms}"),
            ));
        }
        let path = format!("/parties/{party_id}/paths");
        let _: StatusResponse = self
            .call_needing(
                PATH_PLAN_FEATURE,
                Method::POST,
                &path,
                Some(&PathReports { reports }),
                Resend::Unsafe,
            )
            .await?;
        Ok(())
    }

    /// `GET /parties/{id}/paths`: the plan of every member pair, `a < b`
    /// (members only), with its confidence, its basis (`observed`,
    /// `statistics`, `same_public_ip`, `nat_table`), the latest round trip
    /// and the last outcome either side observed.
    pub async fn party_paths(&self, party_id: &PartyId) -> Result<PathsResponse> {
        let path = format!("/parties/{party_id}/paths");
        self.call_needing(
            PATH_PLAN_FEATURE,
            Method::GET,
            &path,
            None::<&()>,
            Resend::Safe,
        )
        .await
    }
}
