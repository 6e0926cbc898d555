//! `RemoteControlPlaneClient`: the original LANrage client's methods on
//! the Rust client library's HTTP client and socket, plus what the server
//! announces beyond v1 (settings, host authority, join codes, relay choice
//! and the path plan).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use lanrage_client::{
    Backoff, ControlPlane, HttpClient, HttpConfig, PeerDetails, PrivateKey, TlsConfig, WsClient,
    WsConfig,
    proto::{
        JoinPartyResponse, Name, NatReport, PartyId, PartyResponse, PathReport, PeerId, PeerInfo,
        Region, RelayId, SettingsPatch, SignalData,
    },
};
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::{
    convert::{client_error, error, from_py, invalid, to_py},
    events::EventStream,
    none, parse, seconds, spawn,
};

/// What the constructor's options set.
#[derive(Debug, Clone)]
struct Options {
    server_url: String,
    peer_id: Option<PeerId>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: Backoff,
    heartbeat_interval: Duration,
    registration_key: Option<String>,
    private_key: Option<PrivateKey>,
    tls: TlsConfig,
    events: bool,
}

/// The client of one peer: HTTP for calls, the socket for events.
#[derive(Debug)]
struct Session {
    http: HttpClient,
    socket: Option<WsClient>,
    /// Until the application takes them with `events()`.
    events: Mutex<Option<lanrage_client::Events>>,
}

impl Session {
    /// For a key-bound client, the ID the server answered.
    fn peer_id(&self) -> &PeerId {
        ControlPlane::peer_id(&self.http)
    }

    async fn close(&self) -> lanrage_client::Result<()> {
        if let Some(socket) = &self.socket {
            socket.close().await;
        }
        self.http.close().await
    }

    /// The socket follows a party this peer created or joined.
    async fn track(&self, joined: &JoinPartyResponse) {
        if let Some(socket) = &self.socket {
            let view = PartyResponse {
                party: joined.party.clone(),
                virtual_ips: BTreeMap::from([(self.peer_id().clone(), joined.virtual_ip)]),
                seq: joined.seq,
                extras: joined.extras.clone(),
            };
            // A closed socket only means no events: the call succeeded.
            let _ = socket.track_party(view).await;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    options: Options,
    session: Mutex<Option<Arc<Session>>>,
}

impl Shared {
    /// The session, opened (registering the peer) for `wanted` or the
    /// configured peer when there is none yet.
    async fn session(&self, wanted: Option<&PeerId>) -> PyResult<Arc<Session>> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(Arc::clone(session));
        }
        // A key-bound client is the key's peer whatever the call names.
        let wanted = wanted.filter(|_| self.options.private_key.is_none());
        let peer_id = wanted.or(self.options.peer_id.as_ref()).ok_or_else(|| {
            error(
                None,
                "no peer yet: call register_peer(peer_id) first, or pass peer_id= to the client",
            )
        })?;
        let session = Arc::new(self.open(peer_id.clone()).await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Opens the session of the configured peer, with the library's error
    /// (for `create_control_plane`, which tells an unreachable server from
    /// a refusal).
    pub(crate) async fn start(&self) -> lanrage_client::Result<()> {
        let mut slot = self.session.lock().await;
        if slot.is_none()
            && let Some(peer_id) = self.options.peer_id.clone()
        {
            *slot = Some(Arc::new(self.connect(peer_id).await?));
        }
        Ok(())
    }

    async fn open(&self, peer_id: PeerId) -> PyResult<Session> {
        self.connect(peer_id).await.map_err(client_error)
    }

    /// Registers (or proves the key) and opens the socket; the library's
    /// error, so that `create_control_plane` can tell an unreachable server
    /// from a refusal.
    async fn connect(&self, peer_id: PeerId) -> lanrage_client::Result<Session> {
        let options = &self.options;
        let mut config = match &options.private_key {
            Some(key) => {
                HttpConfig::key_bound(options.server_url.clone(), key.clone()).with_peer_id(peer_id)
            }
            None => HttpConfig::new(options.server_url.clone(), peer_id),
        }
        .with_connect_timeout(options.connect_timeout)
        .with_request_timeout(options.request_timeout)
        .with_retry(options.retry.clone())
        .with_heartbeat_interval(options.heartbeat_interval)
        .with_tls(options.tls.clone());
        if let Some(key) = &options.registration_key {
            config = config.with_registration_key(key.clone());
        }
        let http = HttpClient::new(config)?;
        http.register_peer().await?;
        let (socket, events) = if options.events {
            let ws = WsConfig::default().with_connect_timeout(options.connect_timeout);
            let (socket, events) = WsClient::connect(http.clone(), ws).await?;
            (Some(socket), Some(events))
        } else {
            (None, None)
        };
        Ok(Session {
            http,
            socket,
            events: Mutex::new(events),
        })
    }

    /// The session acting as `peer_id`: the server lets a peer act only as
    /// itself, so another ID is refused here with the server's 403.
    async fn acting_as(&self, peer_id: &PeerId) -> PyResult<Arc<Session>> {
        let session = self.session(Some(peer_id)).await?;
        if session.peer_id() != peer_id {
            return Err(error(
                Some(403),
                format!(
                    "this client acts as peer {}, not {peer_id}: a peer acts only as itself",
                    session.peer_id()
                ),
            ));
        }
        Ok(session)
    }
}

/// The original LANrage `RemoteControlPlaneClient`, on the Rust client
/// library: retries with backoff, pooled connections, timeouts, a
/// heartbeat task after a create or join, and the socket's events.
#[pyclass(name = "RemoteControlPlaneClient", module = "lanrage_control", frozen)]
#[derive(Debug)]
pub(crate) struct RemoteControlPlaneClient {
    pub(crate) shared: Arc<Shared>,
}

#[pymethods]
impl RemoteControlPlaneClient {
    #[new]
    #[pyo3(signature = (
        server_url,
        *,
        peer_id = None,
        connect_timeout = 5.0,
        request_timeout = 15.0,
        retries = 4,
        retry_initial = 0.25,
        retry_max = 5.0,
        heartbeat_interval = 30.0,
        registration_key = None,
        private_key = None,
        ca_cert = None,
        pin_sha256 = None,
        events = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        server_url: String,
        peer_id: Option<String>,
        connect_timeout: f64,
        request_timeout: f64,
        retries: u32,
        retry_initial: f64,
        retry_max: f64,
        heartbeat_interval: f64,
        registration_key: Option<String>,
        private_key: Option<String>,
        ca_cert: Option<PathBuf>,
        pin_sha256: Option<String>,
        events: bool,
    ) -> PyResult<Self> {
        let private_key = private_key
            .map(|key| PrivateKey::parse(&key).map_err(|e| invalid("private_key", e)))
            .transpose()?;
        let peer_id = peer_id
            .map(|id| parse(id, "peer_id", PeerId::parse))
            .transpose()?
            .or_else(|| private_key.as_ref().map(PrivateKey::derived_peer_id));
        let mut tls = TlsConfig::default();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(&path)
                .map_err(|e| invalid("ca_cert", format!("{}: {e}", path.display())))?;
            tls = tls.with_root_pem(&pem).map_err(|e| invalid("ca_cert", e))?;
        }
        if let Some(pin) = pin_sha256 {
            tls = tls
                .with_pinned_sha256_hex(&pin)
                .map_err(|e| invalid("pin_sha256", e))?;
        }
        let options = Options {
            server_url,
            peer_id,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            request_timeout: seconds(request_timeout, "request_timeout")?,
            retry: Backoff::new(
                seconds(retry_initial, "retry_initial")?,
                seconds(retry_max, "retry_max")?,
                retries,
            ),
            heartbeat_interval: seconds(heartbeat_interval, "heartbeat_interval")?,
            registration_key,
            private_key,
            tls,
            events,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                options,
                session: Mutex::new(None),
            }),
        })
    }

    /// The server's URL.
    #[getter]
    fn server_url(&self) -> &str {
        &self.shared.options.server_url
    }

    /// The peer this client acts as, once known.
    #[getter]
    fn peer_id(&self) -> Option<String> {
        self.shared
            .session
            .try_lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|s| s.peer_id().to_string()))
            .or_else(|| {
                self.shared
                    .options
                    .peer_id
                    .as_ref()
                    .map(ToString::to_string)
            })
    }

    /// Registers the configured peer (if one was given) and opens the
    /// socket; without a peer ID it does nothing until `register_peer`.
    fn initialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            if shared.options.peer_id.is_some() {
                shared.session(None).await?;
            }
            Ok(none())
        })
    }

    /// Stops the heartbeat and the socket (ending the events). The party is
    /// not left. The client may be used again afterwards.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session.lock().await.take();
            if let Some(session) = session {
                session.close().await.map_err(client_error)?;
            }
            Ok(none())
        })
    }

    /// Registers `peer_id` with the server and returns its bearer token;
    /// the client acts as this peer from then on.
    fn register_peer<'py>(&self, py: Python<'py>, peer_id: String) -> PyResult<Bound<'py, PyAny>> {
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let mut slot = shared.session.lock().await;
            if let Some(session) = slot.as_ref() {
                if *session.peer_id() == peer_id {
                    let token = session.http.register_peer().await.map_err(client_error)?;
                    return Ok(token.token);
                }
                if let Some(old) = slot.take() {
                    old.close().await.map_err(client_error)?;
                }
            }
            let session = shared.open(peer_id).await?;
            let token = session
                .http
                .current_token()
                .await
                .map(|t| t.token)
                .ok_or_else(|| error(None, "the server gave no token"))?;
            *slot = Some(Arc::new(session));
            Ok(token)
        })
    }

    /// Creates a party hosted by `host_peer_info` (a dict, or an object
    /// with `to_dict()`) and returns it. The server assigns the party ID;
    /// `party_id` is kept for the original signature and ignored.
    /// `settings` (`host_policy`, `join_policy`, `max_members`) needs a
    /// server listing `host-migration`.
    #[pyo3(signature = (party_id, name, host_peer_info, settings = None))]
    fn register_party<'py>(
        &self,
        py: Python<'py>,
        party_id: Option<String>,
        name: String,
        host_peer_info: &Bound<'py, PyAny>,
        settings: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = party_id;
        let name = parse(name, "name", Name::parse)?;
        let info: PeerInfo = from_py(host_peer_info, "host_peer_info")?;
        let settings: SettingsPatch = settings
            .map(|s| from_py(s, "settings"))
            .transpose()?
            .unwrap_or_default();
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&info.peer_id).await?;
            let joined = session
                .http
                .register_party_with_settings(name, PeerDetails::from(info), settings)
                .await
                .map_err(client_error)?;
            session.track(&joined).await;
            to_py(&joined.party)
        })
    }

    /// Joins `party_id` as `peer_info` (or refreshes its details) and
    /// returns the party.
    fn join_party<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let info: PeerInfo = from_py(peer_info, "peer_info")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&info.peer_id).await?;
            let joined = session
                .http
                .join_party(&party_id, PeerDetails::from(info))
                .await
                .map_err(client_error)?;
            session.track(&joined).await;
            to_py(&joined.party)
        })
    }

    /// Leaves the party (`peer_id` must be this client's peer); returns
    /// the server's status, `left` or `party_deleted`.
    fn leave_party<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&peer_id).await?;
            let outcome = session
                .http
                .leave_party(&party_id)
                .await
                .map_err(client_error)?;
            Ok(outcome.as_str())
        })
    }

    /// The party (a dict with the contract's keys).
    fn get_party<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let read = session
                .http
                .get_party(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&read.party)
        })
    }

    /// The party's members, by peer ID.
    fn get_peers<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let peers = session
                .http
                .get_peers(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&peers)
        })
    }

    /// One member of the party.
    fn discover_peer<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let peer = session
                .http
                .discover_peer(&party_id, &peer_id)
                .await
                .map_err(client_error)?;
            to_py(&peer)
        })
    }

    /// Marks this client's peer (`peer_id`) alive now. The client's own
    /// heartbeat task does this after a create or join.
    fn heartbeat<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&peer_id).await?;
            session
                .http
                .heartbeat(&party_id)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// Every relay, ordered by region then ID.
    fn list_relays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let relays = session.http.list_relays().await.map_err(client_error)?;
            to_py(&relays)
        })
    }

    /// The relays of one region, ordered by ID.
    fn get_relays_by_region<'py>(
        &self,
        py: Python<'py>,
        region: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let region = parse(region, "region", Region::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let relays = session
                .http
                .relays_by_region(&region)
                .await
                .map_err(client_error)?;
            to_py(&relays)
        })
    }

    /// Sends a hole-punching signal (a JSON object) to another member.
    fn send_signal<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        to_peer_id: String,
        signal_data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let to_peer_id = parse(to_peer_id, "to_peer_id", PeerId::parse)?;
        let data: serde_json::Value = from_py(signal_data, "signal_data")?;
        let data = SignalData::parse(data).map_err(|e| invalid("signal_data", e))?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            session
                .http
                .send_signal(&party_id, &to_peer_id, data)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// Takes the signals waiting for this peer: those the socket received
    /// and the events did not hand out, then those the server queues.
    fn poll_signals<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let mut signals = session
                .socket
                .as_ref()
                .map(|socket| socket.take_signals(&party_id))
                .unwrap_or_default();
            signals.extend(
                session
                    .http
                    .poll_signals(&party_id)
                    .await
                    .map_err(client_error)?,
            );
            to_py(&signals)
        })
    }

    /// What the server implements beyond v1 (`GET /`'s `features`):
    /// `key-identity`, `invites`, `host-migration`, `relay-choice`,
    /// `path-plan`. The calls below need the feature they name.
    fn features<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let info = session.http.service_info().await.map_err(client_error)?;
            Ok(info.features)
        })
    }

    /// The party read in full: `party`, `virtual_ips`, `seq` and the
    /// extras the server's features add (`settings`, `host_epoch`,
    /// `succession`, `verified`).
    fn get_party_details<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let read = session
                .http
                .get_party(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&read)
        })
    }

    /// The party's settings (`host-migration`): `{"settings": {...}}`.
    fn get_settings<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let read = session
                .http
                .party_settings(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&read)
        })
    }

    /// Changes the given settings (host only); returns them all.
    fn update_settings<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        settings: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let patch: SettingsPatch = from_py(settings, "settings")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let read = session
                .http
                .update_party_settings(&party_id, patch)
                .await
                .map_err(client_error)?;
            to_py(&read)
        })
    }

    /// Hands the host role to another member (host only). With
    /// `expected_epoch`, refused (409) if the host changed since.
    #[pyo3(signature = (party_id, new_host_id, expected_epoch = None))]
    fn transfer_host<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        new_host_id: String,
        expected_epoch: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let new_host_id = parse(new_host_id, "new_host_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let moved = session
                .http
                .transfer_host(&party_id, &new_host_id, expected_epoch)
                .await
                .map_err(client_error)?;
            to_py(&moved)
        })
    }

    /// Removes a member (host only); `ban` keeps it out of the party.
    #[pyo3(signature = (party_id, peer_id, ban = false))]
    fn kick<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
        ban: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let kicked = session
                .http
                .kick(&party_id, &peer_id, ban)
                .await
                .map_err(client_error)?;
            to_py(&kicked)
        })
    }

    /// A join code for the party (host only, `invites`); the server's
    /// defaults where `max_uses` or `ttl_secs` is None.
    #[pyo3(signature = (party_id, max_uses = None, ttl_secs = None))]
    fn create_invite<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        max_uses: Option<u32>,
        ttl_secs: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let invite = session
                .http
                .create_invite(&party_id, max_uses, ttl_secs.map(Duration::from_secs))
                .await
                .map_err(client_error)?;
            to_py(&invite)
        })
    }

    /// The party's live invites (host only).
    fn list_invites<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let invites = session
                .http
                .invites(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&invites)
        })
    }

    /// Revokes the invite with this nameplate (host only); members get
    /// `invite_revoked`.
    fn revoke_invite<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        nameplate: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            session
                .http
                .revoke_invite(&party_id, &nameplate)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// What a join code leads to (party name, host, members, expiry)
    /// without joining.
    fn preview_invite<'py>(&self, py: Python<'py>, code: String) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let preview = session
                .http
                .preview_invite(&code)
                .await
                .map_err(client_error)?;
            to_py(&preview)
        })
    }

    /// Joins the party a code leads to, as `peer_info`, and returns the
    /// party (as `join_party`).
    fn join_by_code<'py>(
        &self,
        py: Python<'py>,
        code: String,
        peer_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let info: PeerInfo = from_py(peer_info, "peer_info")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&info.peer_id).await?;
            let joined = session
                .http
                .join_by_code(&code, PeerDetails::from(info))
                .await
                .map_err(client_error)?;
            session.track(&joined).await;
            to_py(&joined.party)
        })
    }

    /// Reports this peer's round trips to relays (`relay-choice`):
    /// `{relay_id: milliseconds or None for unreachable}`, replacing the
    /// previous report.
    fn report_relay_rtts<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        rtts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let rtts: BTreeMap<RelayId, Option<f64>> = from_py(rtts, "rtts")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let answer = session
                .http
                .report_relay_rtts(&party_id, rtts)
                .await
                .map_err(client_error)?;
            to_py(&answer)
        })
    }

    /// The relay the server recommends for the party, and why.
    fn get_relay_recommendation<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let choice = session
                .http
                .party_relay(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&choice)
        })
    }

    /// Reports this peer's NAT behaviour (`path-plan`): `mapping`,
    /// `filtering`, `port_mapping`.
    fn report_nat<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        nat: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let nat: NatReport = from_py(nat, "nat")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            session
                .http
                .report_nat(&party_id, nat)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// Reports how connecting to members went: a list of `{peer_id,
    /// outcome, rtt_ms?}`.
    fn report_paths<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        reports: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let reports: Vec<PathReport> = from_py(reports, "reports")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            session
                .http
                .report_paths(&party_id, reports)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// The party's path plan: per pair of members, punch or relay.
    fn get_path_plan<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let plan = session
                .http
                .party_paths(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&plan)
        })
    }

    /// The socket's events, for `async for`. Once per session: a second
    /// call raises.
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let session = shared.session(None).await?;
            let events = session.events.lock().await.take().ok_or_else(|| {
                error(
                    None,
                    "no events to hand out: already taken, or the client was made with events=False",
                )
            })?;
            Python::attach(|py| Py::new(py, EventStream::new(events)))
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.unbind();
        let shared = Arc::clone(&this.get().shared);
        spawn(py, &shared, |shared| async move {
            if shared.options.peer_id.is_some() {
                shared.session(None).await?;
            }
            Ok(this)
        })
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }
}
