//! `LocalControlPlaneClient`: the control plane without a server (the
//! client library's local plane), with the remote client's methods, so an
//! application codes against either. Parties live in memory, optionally
//! saved under a folder that several local instances share to find each
//! other's parties.

use std::{path::PathBuf, sync::Arc};

use lanrage_client::{
    ControlPlane, LocalConfig, LocalControlPlane, PeerDetails,
    proto::{Name, PartyId, PeerId, PeerInfo, Region, SignalData},
};
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::{
    convert::{client_error, error, from_py, invalid, to_py},
    none, parse, seconds, spawn,
};

#[derive(Debug)]
pub(crate) struct LocalShared {
    config: LocalConfig,
    plane: Mutex<Option<Arc<LocalControlPlane>>>,
    /// Why `create_control_plane` chose this plane; None when made directly.
    reason: Option<String>,
}

impl LocalShared {
    pub(crate) fn new(config: LocalConfig, reason: Option<String>) -> Self {
        Self {
            config,
            plane: Mutex::new(None),
            reason,
        }
    }

    /// The plane, opened (reading its saved state) on first use.
    pub(crate) async fn plane(&self) -> PyResult<Arc<LocalControlPlane>> {
        let mut slot = self.plane.lock().await;
        if let Some(plane) = slot.as_ref() {
            return Ok(Arc::clone(plane));
        }
        let plane = Arc::new(
            LocalControlPlane::open(self.config.clone())
                .await
                .map_err(client_error)?,
        );
        *slot = Some(Arc::clone(&plane));
        Ok(plane)
    }

    /// The plane, when `peer_id` is its peer: as on the server, a peer
    /// acts only as itself.
    async fn acting_as(&self, peer_id: &PeerId) -> PyResult<Arc<LocalControlPlane>> {
        if *peer_id != self.config.peer_id {
            return Err(error(
                Some(403),
                format!(
                    "this client acts as peer {}, not {peer_id}: a peer acts only as itself",
                    self.config.peer_id
                ),
            ));
        }
        self.plane().await
    }
}

/// The control plane on this machine alone (or shared with other local
/// instances through `state_dir`), with `RemoteControlPlaneClient`'s
/// methods.
#[pyclass(name = "LocalControlPlaneClient", module = "lanrage_control", frozen)]
#[derive(Debug)]
pub(crate) struct LocalControlPlaneClient {
    pub(crate) shared: Arc<LocalShared>,
}

#[pymethods]
impl LocalControlPlaneClient {
    #[new]
    #[pyo3(signature = (
        peer_id,
        *,
        state_dir = None,
        peer_timeout = 300.0,
        heartbeat_interval = 30.0,
    ))]
    fn new(
        peer_id: String,
        state_dir: Option<PathBuf>,
        peer_timeout: f64,
        heartbeat_interval: f64,
    ) -> PyResult<Self> {
        let config = local_config(
            parse(peer_id, "peer_id", PeerId::parse)?,
            state_dir,
            peer_timeout,
            heartbeat_interval,
        )?;
        Ok(Self {
            shared: Arc::new(LocalShared::new(config, None)),
        })
    }

    /// The peer this plane acts for.
    #[getter]
    fn peer_id(&self) -> String {
        self.shared.config.peer_id.to_string()
    }

    /// Why `create_control_plane` ran locally (no server configured, or
    /// the server unreachable and how); None when made directly.
    #[getter]
    fn fallback_reason(&self) -> Option<String> {
        self.shared.reason.clone()
    }

    /// Opens the plane (reading its saved state, if any).
    fn initialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            shared.plane().await?;
            Ok(none())
        })
    }

    /// Stops the heartbeat and cleanup and saves what is pending. The
    /// party is not left. The client may be used again afterwards.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let plane = shared.plane.lock().await.take();
            if let Some(plane) = plane {
                plane.close().await.map_err(client_error)?;
            }
            Ok(none())
        })
    }

    /// Creates a party hosted by this plane's peer, shown as
    /// `host_peer_info`; `party_id` is ignored (a new ID is drawn).
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
            let plane = shared.acting_as(&info.peer_id).await?;
            let joined = plane
                .register_party(name, PeerDetails::from(info))
                .await
                .map_err(client_error)?;
            to_py(&joined.party)
        })
    }

    /// Joins a party this plane can see (its own, or one in the shared
    /// state folder) and returns it.
    fn join_party<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let info: PeerInfo = from_py(peer_info, "peer_info")?;
        spawn(py, &self.shared, |shared| async move {
            let plane = shared.acting_as(&info.peer_id).await?;
            let joined = plane
                .join_party(&party_id, PeerDetails::from(info))
                .await
                .map_err(client_error)?;
            to_py(&joined.party)
        })
    }

    /// Leaves the party; returns `left` or `party_deleted`.
    fn leave_party<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let plane = shared.acting_as(&peer_id).await?;
            let outcome = plane.leave_party(&party_id).await.map_err(client_error)?;
            Ok(outcome.as_str())
        })
    }

    /// The party (a dict with the contract's keys).
    fn get_party<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let read = shared
                .plane()
                .await?
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
            let peers = shared
                .plane()
                .await?
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
            let peer = shared
                .plane()
                .await?
                .discover_peer(&party_id, &peer_id)
                .await
                .map_err(client_error)?;
            to_py(&peer)
        })
    }

    /// Marks this plane's peer alive now.
    fn heartbeat<'py>(
        &self,
        py: Python<'py>,
        party_id: String,
        peer_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        let peer_id = parse(peer_id, "peer_id", PeerId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let plane = shared.acting_as(&peer_id).await?;
            plane.heartbeat(&party_id).await.map_err(client_error)?;
            Ok(none())
        })
    }

    /// Relays: none without a server, as the original's local plane.
    fn list_relays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let relays = shared
                .plane()
                .await?
                .list_relays()
                .await
                .map_err(client_error)?;
            to_py(&relays)
        })
    }

    /// The relays of one region (none without a server).
    fn get_relays_by_region<'py>(
        &self,
        py: Python<'py>,
        region: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let region = parse(region, "region", Region::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let relays = shared
                .plane()
                .await?
                .relays_by_region(&region)
                .await
                .map_err(client_error)?;
            to_py(&relays)
        })
    }

    /// Leaves a hole-punching signal for another member.
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
            shared
                .plane()
                .await?
                .send_signal(&party_id, &to_peer_id, data)
                .await
                .map_err(client_error)?;
            Ok(none())
        })
    }

    /// Takes the signals waiting for this plane's peer.
    fn poll_signals<'py>(&self, py: Python<'py>, party_id: String) -> PyResult<Bound<'py, PyAny>> {
        let party_id = parse(party_id, "party_id", PartyId::parse)?;
        spawn(py, &self.shared, |shared| async move {
            let signals = shared
                .plane()
                .await?
                .poll_signals(&party_id)
                .await
                .map_err(client_error)?;
            to_py(&signals)
        })
    }

    /// Every party this plane can see: with `state_dir`, those of every
    /// local instance sharing the folder. Each is a full party read
    /// (`party`, `virtual_ips`, `seq`).
    fn discover_parties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            let parties = shared
                .plane()
                .await?
                .discover_parties()
                .await
                .map_err(client_error)?;
            to_py(&parties)
        })
    }

    /// Saves pending changes now rather than after the short write delay.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, &self.shared, |shared| async move {
            shared.plane().await?.flush().await.map_err(client_error)?;
            Ok(none())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.unbind();
        let shared = Arc::clone(&this.get().shared);
        spawn(py, &shared, |shared| async move {
            shared.plane().await?;
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

/// The local plane's settings: in memory, or saved under `state_dir`
/// (`local-PEER.json`, and `discovery.json` shared by every instance using
/// the folder).
pub(crate) fn local_config(
    peer_id: PeerId,
    state_dir: Option<PathBuf>,
    peer_timeout: f64,
    heartbeat_interval: f64,
) -> PyResult<LocalConfig> {
    let mut config = match &state_dir {
        Some(dir) => LocalConfig::in_dir(peer_id, dir),
        None => LocalConfig::new(peer_id),
    };
    config.peer_timeout = seconds(peer_timeout, "peer_timeout")?;
    config.heartbeat_interval = seconds(heartbeat_interval, "heartbeat_interval")?;
    if config.peer_timeout.is_zero() || config.heartbeat_interval.is_zero() {
        return Err(invalid(
            "peer_timeout or heartbeat_interval",
            "must be above 0",
        ));
    }
    Ok(config)
}
