//! The remote control plane as an application uses it: requests over HTTP,
//! events over the socket, and the local plane to fall back on when the
//! server stays unreachable.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use lanrage_proto::{
    Invite, InvitePreview, JoinPartyResponse, KickResponse, Name, NatReport, PartyId,
    PartyRelayResponse, PartyResponse, PathReport, PathsResponse, Peer, PeerId, Region, Relay,
    RelayId, RelayRttsResponse, RelayStatus, SettingsPatch, SettingsResponse, Signal, SignalData,
    TransferHostResponse,
};

use crate::{
    control::{ControlPlane, LeaveOutcome, PeerDetails},
    error::{ClientError, Result},
    http::{
        HOST_MIGRATION_FEATURE, HttpClient, INVITES_FEATURE, PATH_PLAN_FEATURE,
        RELAY_CHOICE_FEATURE,
    },
    local::{LocalConfig, LocalControlPlane},
    ws::{Events, WsClient, WsConfig, WsState},
};

/// HTTP for requests, a [`WsClient`] for events, and a
/// [`LocalControlPlane`] held in reserve.
///
/// When the socket gives up reconnecting ([`WsState::GaveUp`], announced by
/// [`Event::GaveUp`](crate::Event::GaveUp)), this plane is local for good:
/// [`RemoteControlPlane::is_local`] is true from that moment, and the next
/// call copies the party as last seen into the local plane (its members
/// counted as seen at the switch, and this peer kept alive by the local
/// plane's heartbeat), logs a warning, and is served locally, as is every
/// call after it.
///
/// Host authority (party settings, handing the party over, removing a
/// member), join codes, relay choice and path plans are the server's:
/// [`RemoteControlPlane::transfer_host`],
/// [`RemoteControlPlane::create_invite`],
/// [`RemoteControlPlane::party_relay`], [`RemoteControlPlane::party_paths`]
/// and the methods beside them are [`HttpClient`]'s, and fail with
/// [`ClientError::Unsupported`] once this plane is local, since the local
/// plane keeps v1's rules (the host leaving ends the party; a party ID is
/// all it takes to join; no relay is recommended, no path planned). A party
/// joined by code is followed by the socket as one joined by ID. The current
/// host and `host_epoch` follow the events: `socket().party()` gives
/// `party.host_id` and `extras.host_epoch` as of the last event.
///
/// Signals the socket received wait until the application takes them:
/// from the [`Events`], or from [`ControlPlane::poll_signals`], which hands
/// out those first and then those the server still queues. Each signal is
/// handed out once.
///
/// ```no_run
/// use lanrage_client::{ControlPlane, HttpClient, HttpConfig, LocalConfig, RemoteControlPlane, WsConfig};
/// use lanrage_client::proto::PeerId;
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// let http = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", me.clone()))?;
/// let (plane, mut events) =
///     RemoteControlPlane::connect(http, WsConfig::default(), LocalConfig::new(me)).await?;
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         println!("{event:?}");
///     }
/// });
/// let relays = plane.list_relays().await?;
/// println!("{} relays", relays.len());
/// plane.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RemoteControlPlane {
    http: HttpClient,
    socket: WsClient,
    local: LocalControlPlane,
    fell_back: AtomicBool,
}

impl RemoteControlPlane {
    /// Connects the socket (failing if the server cannot be reached) and
    /// opens the reserve local plane.
    pub async fn connect(
        http: HttpClient,
        ws: WsConfig,
        local: LocalConfig,
    ) -> Result<(Self, Events)> {
        let (socket, events) = WsClient::connect(http.clone(), ws).await?;
        let local = LocalControlPlane::open(local).await?;
        Ok((
            Self {
                http,
                socket,
                local,
                fell_back: AtomicBool::new(false),
            },
            events,
        ))
    }

    /// The HTTP client (relay registration, the current token).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The socket (its state, the live party view).
    pub fn socket(&self) -> &WsClient {
        &self.socket
    }

    /// The local plane used after a fallback.
    pub fn local(&self) -> &LocalControlPlane {
        &self.local
    }

    /// Whether calls are now served by the local plane: true from the
    /// moment the socket gave up, before any call notices.
    pub fn is_local(&self) -> bool {
        self.fell_back.load(Ordering::SeqCst)
            || matches!(self.socket.state(), WsState::GaveUp { .. })
    }

    /// The plane that serves the next call, switching to local the first
    /// time the socket is seen to have given up.
    async fn backend(&self) -> Result<&dyn ControlPlane> {
        if matches!(self.socket.state(), WsState::GaveUp { .. })
            && !self.fell_back.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(server = %self.http.server_url(),
                "control server unreachable: continuing on the local control plane");
            self.http.close().await?;
            if let Some(party) = self.socket.party() {
                self.local.adopt_party(party).await?;
            }
        }
        if self.fell_back.load(Ordering::SeqCst) {
            Ok(&self.local)
        } else {
            Ok(&self.http)
        }
    }

    /// The HTTP client, for what only the server offers (`feature`):
    /// [`ClientError::Unsupported`] once this plane is local.
    async fn server_only(&self, feature: &'static str) -> Result<&HttpClient> {
        self.backend().await?;
        if self.fell_back.load(Ordering::SeqCst) {
            let lacking = match feature {
                INVITES_FEATURE => "join codes (a party ID is all it takes to join)",
                RELAY_CHOICE_FEATURE => "relay choice (it knows no relay's load or round trips)",
                PATH_PLAN_FEATURE => "path plans (it keeps no NAT reports or outcomes)",
                _ => "host authority (its host leaving ends the party)",
            };
            return Err(ClientError::Unsupported {
                feature: feature.to_owned(),
                detail: format!(
                    "the control server stayed unreachable and this plane is local now: \
                     the local plane has no {lacking}"
                ),
            });
        }
        Ok(&self.http)
    }

    /// [`HttpClient::register_party_with_settings`], the party then
    /// followed by the socket. An empty `settings` is
    /// [`ControlPlane::register_party`], which works locally too.
    pub async fn register_party_with_settings(
        &self,
        name: Name,
        me: PeerDetails,
        settings: SettingsPatch,
    ) -> Result<JoinPartyResponse> {
        if settings == SettingsPatch::default() {
            return self.register_party(name, me).await;
        }
        let joined = self
            .server_only(HOST_MIGRATION_FEATURE)
            .await?
            .register_party_with_settings(name, me, settings)
            .await?;
        self.track(&joined).await;
        Ok(joined)
    }

    /// [`HttpClient::party_settings`].
    pub async fn party_settings(&self, party_id: &PartyId) -> Result<SettingsResponse> {
        self.server_only(HOST_MIGRATION_FEATURE)
            .await?
            .party_settings(party_id)
            .await
    }

    /// [`HttpClient::update_party_settings`].
    pub async fn update_party_settings(
        &self,
        party_id: &PartyId,
        patch: SettingsPatch,
    ) -> Result<SettingsResponse> {
        self.server_only(HOST_MIGRATION_FEATURE)
            .await?
            .update_party_settings(party_id, patch)
            .await
    }

    /// [`HttpClient::transfer_host`]; the socket's view follows the
    /// events it causes.
    pub async fn transfer_host(
        &self,
        party_id: &PartyId,
        new_host_id: &PeerId,
        expected_epoch: Option<u64>,
    ) -> Result<TransferHostResponse> {
        self.server_only(HOST_MIGRATION_FEATURE)
            .await?
            .transfer_host(party_id, new_host_id, expected_epoch)
            .await
    }

    /// [`HttpClient::kick`].
    pub async fn kick(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        ban: bool,
    ) -> Result<KickResponse> {
        self.server_only(HOST_MIGRATION_FEATURE)
            .await?
            .kick(party_id, peer_id, ban)
            .await
    }

    /// [`HttpClient::create_invite`].
    pub async fn create_invite(
        &self,
        party_id: &PartyId,
        max_uses: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<Invite> {
        self.server_only(INVITES_FEATURE)
            .await?
            .create_invite(party_id, max_uses, ttl)
            .await
    }

    /// [`HttpClient::invites`].
    pub async fn invites(&self, party_id: &PartyId) -> Result<Vec<Invite>> {
        self.server_only(INVITES_FEATURE)
            .await?
            .invites(party_id)
            .await
    }

    /// [`HttpClient::revoke_invite`]; members (this one too) hear
    /// [`Event::InviteRevoked`](crate::Event::InviteRevoked).
    pub async fn revoke_invite(&self, party_id: &PartyId, nameplate: &str) -> Result<()> {
        self.server_only(INVITES_FEATURE)
            .await?
            .revoke_invite(party_id, nameplate)
            .await
    }

    /// [`HttpClient::preview_invite`].
    pub async fn preview_invite(&self, code: &str) -> Result<InvitePreview> {
        self.server_only(INVITES_FEATURE)
            .await?
            .preview_invite(code)
            .await
    }

    /// [`HttpClient::join_by_code`], the party then followed by the socket
    /// exactly as after [`ControlPlane::join_party`].
    pub async fn join_by_code(&self, code: &str, me: PeerDetails) -> Result<JoinPartyResponse> {
        let joined = self
            .server_only(INVITES_FEATURE)
            .await?
            .join_by_code(code, me)
            .await?;
        self.track(&joined).await;
        Ok(joined)
    }

    /// [`HttpClient::report_relay_rtts`].
    pub async fn report_relay_rtts(
        &self,
        party_id: &PartyId,
        rtts: BTreeMap<RelayId, Option<f64>>,
    ) -> Result<RelayRttsResponse> {
        self.server_only(RELAY_CHOICE_FEATURE)
            .await?
            .report_relay_rtts(party_id, rtts)
            .await
    }

    /// [`HttpClient::party_relay`]; members hear changes as
    /// [`Event::RelayRecommended`](crate::Event::RelayRecommended).
    pub async fn party_relay(&self, party_id: &PartyId) -> Result<PartyRelayResponse> {
        self.server_only(RELAY_CHOICE_FEATURE)
            .await?
            .party_relay(party_id)
            .await
    }

    /// [`HttpClient::relay_statuses`].
    pub async fn relay_statuses(&self) -> Result<Vec<RelayStatus>> {
        self.server_only(RELAY_CHOICE_FEATURE)
            .await?
            .relay_statuses()
            .await
    }

    /// [`HttpClient::report_nat`].
    pub async fn report_nat(&self, party_id: &PartyId, nat: NatReport) -> Result<()> {
        self.server_only(PATH_PLAN_FEATURE)
            .await?
            .report_nat(party_id, nat)
            .await
    }

    /// [`HttpClient::report_paths`].
    pub async fn report_paths(&self, party_id: &PartyId, reports: Vec<PathReport>) -> Result<()> {
        self.server_only(PATH_PLAN_FEATURE)
            .await?
            .report_paths(party_id, reports)
            .await
    }

    /// [`HttpClient::party_paths`]; members hear changes of plan as
    /// [`Event::PathPlan`](crate::Event::PathPlan).
    pub async fn party_paths(&self, party_id: &PartyId) -> Result<PathsResponse> {
        self.server_only(PATH_PLAN_FEATURE)
            .await?
            .party_paths(party_id)
            .await
    }

    async fn track(&self, joined: &JoinPartyResponse) {
        if self.is_local() {
            return;
        }
        let view = PartyResponse {
            party: joined.party.clone(),
            virtual_ips: BTreeMap::from([(self.peer_id().clone(), joined.virtual_ip)]),
            seq: joined.seq,
            extras: joined.extras.clone(),
        };
        // A closed socket only means no events: the call itself succeeded.
        let _ = self.socket.track_party(view).await;
    }
}

#[async_trait]
impl ControlPlane for RemoteControlPlane {
    fn peer_id(&self) -> &PeerId {
        &self.http.config().peer_id
    }

    async fn register_party(&self, name: Name, me: PeerDetails) -> Result<JoinPartyResponse> {
        let joined = self.backend().await?.register_party(name, me).await?;
        self.track(&joined).await;
        Ok(joined)
    }

    async fn join_party(&self, party_id: &PartyId, me: PeerDetails) -> Result<JoinPartyResponse> {
        let joined = self.backend().await?.join_party(party_id, me).await?;
        self.track(&joined).await;
        Ok(joined)
    }

    async fn leave_party(&self, party_id: &PartyId) -> Result<LeaveOutcome> {
        self.backend().await?.leave_party(party_id).await
    }

    async fn get_party(&self, party_id: &PartyId) -> Result<PartyResponse> {
        self.backend().await?.get_party(party_id).await
    }

    async fn get_peers(&self, party_id: &PartyId) -> Result<BTreeMap<PeerId, Peer>> {
        self.backend().await?.get_peers(party_id).await
    }

    async fn discover_peer(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Peer> {
        self.backend().await?.discover_peer(party_id, peer_id).await
    }

    async fn heartbeat(&self, party_id: &PartyId) -> Result<()> {
        self.backend().await?.heartbeat(party_id).await
    }

    async fn send_signal(
        &self,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: SignalData,
    ) -> Result<()> {
        self.backend()
            .await?
            .send_signal(party_id, to_peer_id, signal_data)
            .await
    }

    /// The signals the socket received and the application has not taken
    /// from the events, then those the server (or, after a fallback, the
    /// local plane) still holds.
    async fn poll_signals(&self, party_id: &PartyId) -> Result<Vec<Signal>> {
        let backend = self.backend().await?;
        let mut signals = self.socket.take_signals(party_id);
        match backend.poll_signals(party_id).await {
            Ok(queued) => signals.extend(queued),
            // What the socket had is taken: hand it over rather than lose it.
            Err(error) if signals.is_empty() => return Err(error),
            Err(error) => {
                tracing::warn!(%party_id, error = %crate::error_chain(&error),
                    "cannot poll the signals the server queues; returning those the socket received");
            }
        }
        Ok(signals)
    }

    async fn list_relays(&self) -> Result<Vec<Relay>> {
        self.backend().await?.list_relays().await
    }

    async fn relays_by_region(&self, region: &Region) -> Result<Vec<Relay>> {
        self.backend().await?.relays_by_region(region).await
    }

    async fn close(&self) -> Result<()> {
        self.socket.close().await;
        self.http.close().await?;
        self.local.close().await
    }
}
