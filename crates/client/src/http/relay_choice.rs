//! Relay choice through the HTTP client (DESIGN, "Capabilities beyond
//! v1", section 5): members' round trips to relays in, the party's
//! recommended relay out, relays' state for everyone, and the operator's
//! status report.

use std::collections::BTreeMap;

use lanrage_proto::{
    MAX_RTT_MS, PartyId, PartyRelayResponse, RelayId, RelayRttsReport, RelayRttsResponse,
    RelayStatus, RelayStatusReport, RelayStatusesResponse, StatusResponse,
};
use reqwest::{Method, StatusCode};

use super::{Auth, HttpClient, RELAY_CHOICE_FEATURE, Resend};
use crate::error::{ClientError, Result};

/// Relay choice: what a server that lists [`RELAY_CHOICE_FEATURE`] offers
/// and the local plane does not (it knows no relay's load nor anyone's
/// round trips), so, like host authority and join codes, methods of the
/// HTTP client (and of [`RemoteControlPlane`](crate::RemoteControlPlane))
/// rather than of [`ControlPlane`](crate::ControlPlane). Each asks the
/// server's `features` once per client, and against a server that does
/// not list `relay-choice` fails with [`ClientError::Unsupported`] without
/// sending anything. Refusals are [`ClientError::Refused`] with the
/// server's status and `detail`. Every call here is retried like a read:
/// a report replaces the one before it, so sending it twice is sending it
/// once.
///
/// A client measures its round trip to every relay of
/// [`ControlPlane::list_relays`](crate::ControlPlane::list_relays) when it
/// joins a party and every few minutes after (reports expire after the
/// server's `--rtt-report-ttl-secs`, 300 s by default), reports them all
/// at once, and reads [`HttpClient::party_relay`] after joining, on
/// [`Event::RelayRecommended`](crate::Event::RelayRecommended), and after
/// a snapshot [`Event::PartyUpdated`](crate::Event::PartyUpdated).
///
/// ```no_run
/// use std::collections::BTreeMap;
///
/// use lanrage_client::{ControlPlane, HttpClient, HttpConfig};
/// use lanrage_client::proto::{PartyId, PeerId};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let client = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", PeerId::parse("bob").expect("valid id")))?;
/// let party = PartyId::parse("9f1c0e7a").expect("valid id");
/// let mut rtts = BTreeMap::new();
/// for relay in client.list_relays().await? {
///     // Measured by the application; `None` when the relay did not answer.
///     rtts.insert(relay.relay_id, Some(23.5));
/// }
/// client.report_relay_rtts(&party, rtts).await?;
/// let choice = client.party_relay(&party).await?;
/// match &choice.relay {
///     Some(relay) => println!("use {} at {}:{} ({})", relay.relay_id, relay.public_ip, relay.port, choice.reason),
///     None => println!("no relay yet: {}", choice.reason),
/// }
/// # Ok(())
/// # }
/// ```
impl HttpClient {
    /// `PUT /parties/{id}/peers/{me}/relay-rtts`: this peer's round trip to
    /// each relay, in milliseconds, `None` for a relay it cannot reach (a
    /// member only). The report replaces this peer's previous one; relay IDs
    /// the server does not know are ignored and listed in the answer.
    /// Refusals: 403 when this peer is not a member, 422 for more than 64
    /// entries or a round trip not over 0 and at most 10000 (one that is
    /// not a number at all, which JSON cannot carry, is refused so here,
    /// without sending anything).
    pub async fn report_relay_rtts(
        &self,
        party_id: &PartyId,
        rtts: BTreeMap<RelayId, Option<f64>>,
    ) -> Result<RelayRttsResponse> {
        // JSON has no NaN or infinity: it would arrive as `null`,
        // "unreachable". Refused as the server refuses a value out of range.
        if let Some((relay_id, Some(ms))) = rtts
            .iter()
            .find(|(_, ms)| ms.is_some_and(|ms| !ms.is_finite()))
        {
            return Err(ClientError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the round trip to {relay_id} must be over 0 and at most {MAX_RTT_MS} ms, \
                     or null, not {ms}"
                ),
            ));
        }
        let path = format!(
            "/parties/{party_id}/peers/{}/relay-rtts",
            self.own_id().await?
        );
        self.call_needing(
            RELAY_CHOICE_FEATURE,
            Method::PUT,
            &path,
            Some(&RelayRttsReport { rtts }),
            Resend::Safe,
        )
        .await
    }

    /// `GET /parties/{id}/relay`: the relay the party's relayed pairs
    /// should share (members only): `relay` (`None` without measurements
    /// or candidates), the worst round trip between two members through
    /// it, each measured member's round trip, the unmeasured members, the
    /// other candidates best first, and the `reason` it was chosen.
    pub async fn party_relay(&self, party_id: &PartyId) -> Result<PartyRelayResponse> {
        let path = format!("/parties/{party_id}/relay");
        self.call_needing(
            RELAY_CHOICE_FEATURE,
            Method::GET,
            &path,
            None::<&()>,
            Resend::Safe,
        )
        .await
    }

    /// `GET /relays/status`: every relay with its sessions, load and
    /// `state` (`active`, `draining`, `full` or `stale`), by region then ID.
    /// (A server without relay choice would read `status` as a region and
    /// answer an empty list; the feature check keeps that from passing for
    /// an answer.)
    pub async fn relay_statuses(&self) -> Result<Vec<RelayStatus>> {
        let listed: RelayStatusesResponse = self
            .call_needing(
                RELAY_CHOICE_FEATURE,
                Method::GET,
                "/relays/status",
                None::<&()>,
                Resend::Safe,
            )
            .await?;
        Ok(listed.relays)
    }

    /// `POST /relays/{relay_id}/status` with the operator's relay key: the
    /// relay's `sessions`, `load` (0 to 1) and whether it is `draining`, at
    /// least one of them; one left out keeps its last value. It also
    /// refreshes the relay, as [`HttpClient::register_relay`] does. A relay
    /// that sent a status once is `stale` when none follows for the
    /// server's `--relay-stale-secs` (90 s by default): send one every 30 s
    /// or so. Refusals: 403 for a wrong key, 404 for an unknown relay, 422
    /// for an empty report or a value out of range (a load that is not a
    /// number is refused so here, without sending anything).
    pub async fn report_relay_status(
        &self,
        relay_key: &str,
        relay_id: &RelayId,
        report: &RelayStatusReport,
    ) -> Result<()> {
        if let Some(load) = report.load
            && !load.is_finite()
        {
            return Err(ClientError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("load must be from 0 to 1, not {load}"),
            ));
        }
        let path = format!("/relays/{relay_id}/status");
        let _: Option<StatusResponse> = self
            .call_or_gone(
                Method::POST,
                &path,
                Some(report),
                Auth::Operator(relay_key),
                Resend::Safe,
                Some(RELAY_CHOICE_FEATURE),
            )
            .await?;
        Ok(())
    }
}
