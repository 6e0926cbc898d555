//! The `lanrage_control` Python module: the LANrage control plane's client
//! library (`lanrage-client`) for asyncio programs, with the original
//! Python client's `RemoteControlPlaneClient` methods and argument order.
//!
//! Every method returns an awaitable; the call runs on a tokio runtime
//! owned by the module, and cancelling the awaiting Python task drops it.
//! Peers and parties cross as dicts with the contract's keys (JSON is the
//! common form, see `convert`). Build with maturin (`pip install
//! crates/py`); `lanrage_control.pyi` documents the Python API.

mod convert;
mod events;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lanrage_client::{
    Backoff, ControlPlane, HttpClient, HttpConfig, PeerDetails, WsClient, WsConfig,
    proto::{
        JoinPartyResponse, Name, PartyId, PartyResponse, PeerId, PeerInfo, Region, SignalData,
    },
};
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::{
    convert::{ControlPlaneError, client_error, error, from_py, invalid, to_py},
    events::{EventStream, PyEvent},
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
    fn peer_id(&self) -> &PeerId {
        &self.http.config().peer_id
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
struct Shared {
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

    async fn open(&self, peer_id: PeerId) -> PyResult<Session> {
        let options = &self.options;
        let mut config = HttpConfig::new(options.server_url.clone(), peer_id)
            .with_connect_timeout(options.connect_timeout)
            .with_request_timeout(options.request_timeout)
            .with_retry(options.retry.clone())
            .with_heartbeat_interval(options.heartbeat_interval);
        if let Some(key) = &options.registration_key {
            config = config.with_registration_key(key.clone());
        }
        let http = HttpClient::new(config).map_err(client_error)?;
        http.register_peer().await.map_err(client_error)?;
        let (socket, events) = if options.events {
            let ws = WsConfig::default().with_connect_timeout(options.connect_timeout);
            let (socket, events) = WsClient::connect(http.clone(), ws)
                .await
                .map_err(client_error)?;
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

fn parse<T>(
    value: String,
    what: &str,
    parse: impl FnOnce(String) -> Result<T, lanrage_client::proto::InvalidValue>,
) -> PyResult<T> {
    parse(value).map_err(|e| invalid(what, e))
}

/// Python's `None`, what a call with nothing to return gives (a Rust `()`
/// would reach Python as an empty tuple).
fn none() -> Py<PyAny> {
    Python::attach(|py| py.None())
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|e| invalid(what, e))
}

/// The original LANrage `RemoteControlPlaneClient`, on the Rust client
/// library: retries with backoff, pooled connections, timeouts, a
/// heartbeat task after a create or join, and the socket's events.
#[pyclass(name = "RemoteControlPlaneClient", module = "lanrage_control", frozen)]
#[derive(Debug)]
struct RemoteControlPlaneClient {
    shared: Arc<Shared>,
}

/// Runs `body` (given the shared state) as a Python awaitable.
fn spawn<'py, F, T>(
    py: Python<'py>,
    shared: &Arc<Shared>,
    body: impl FnOnce(Arc<Shared>) -> F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, body(Arc::clone(shared)))
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
        events: bool,
    ) -> PyResult<Self> {
        let peer_id = peer_id
            .map(|id| parse(id, "peer_id", PeerId::parse))
            .transpose()?;
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
    fn register_party<'py>(
        &self,
        py: Python<'py>,
        party_id: Option<String>,
        name: String,
        host_peer_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = party_id;
        let name = parse(name, "name", Name::parse)?;
        let info: PeerInfo = from_py(host_peer_info, "host_peer_info")?;
        spawn(py, &self.shared, |shared| async move {
            let session = shared.acting_as(&info.peer_id).await?;
            let joined = session
                .http
                .register_party(name, PeerDetails::from(info))
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

#[pymodule]
#[pyo3(name = "lanrage_control")]
fn lanrage_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RemoteControlPlaneClient>()?;
    m.add_class::<EventStream>()?;
    m.add_class::<PyEvent>()?;
    m.add("ControlPlaneError", m.py().get_type::<ControlPlaneError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
