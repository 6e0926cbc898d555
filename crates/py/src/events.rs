//! The socket's events as a Python `async for` iterator of [`PyEvent`]s.

use std::sync::Arc;

use lanrage_client::{Event, Events};
use pyo3::{exceptions::PyStopAsyncIteration, prelude::*, types::PyDict};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::convert::{error, to_py};

/// One event: `type` names it (`peer_joined`, `peer_left`, `party_update`,
/// `party_ended`, `signal`, `host_changed`, `party_settings`,
/// `invite_revoked`, `relay_recommendation`, `path_plan`, `party_lost`,
/// `lagged`, `connected`, `disconnected`, `reconnecting`, `gave_up`), and
/// `to_dict()` holds every field; the common ones are attributes too.
#[pyclass(name = "Event", module = "lanrage_control", frozen)]
#[derive(Debug)]
pub(crate) struct PyEvent {
    kind: String,
    data: Py<PyAny>,
}

impl PyEvent {
    fn field(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        let data = self.data.bind(py).cast::<PyDict>()?;
        Ok(match data.get_item(key)? {
            Some(value) => value.unbind(),
            None => py.None(),
        })
    }
}

#[pymethods]
impl PyEvent {
    /// What happened, as the socket protocol names it.
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.kind
    }

    #[getter]
    fn party_id(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "party_id")
    }

    #[getter]
    fn seq(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "seq")
    }

    /// The peer of `peer_joined` (a dict with the contract's keys).
    #[getter]
    fn peer(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "peer")
    }

    /// The peer of `peer_left` and `connected`.
    #[getter]
    fn peer_id(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "peer_id")
    }

    /// The party of `party_update`.
    #[getter]
    fn party(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "party")
    }

    /// The signal of `signal` (`party_id`, `from_peer_id`, `to_peer_id`,
    /// `signal_data`, `sent_at`).
    #[getter]
    fn signal(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "signal")
    }

    #[getter]
    fn reason(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.field(py, "reason")
    }

    /// Every field, `type` included.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let copy = self.data.bind(py).cast::<PyDict>()?.copy()?;
        copy.set_item("type", &self.kind)?;
        Ok(copy.into_any().unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Event({:?}, {})",
            self.kind,
            self.data.bind(py).repr()?
        ))
    }
}

/// The fields of an event, under the names the socket protocol uses.
fn describe(event: Event) -> (&'static str, Value) {
    match event {
        Event::PeerJoined {
            party_id,
            peer,
            seq,
        } => (
            "peer_joined",
            json!({"party_id": party_id, "peer": peer, "seq": seq}),
        ),
        Event::PeerLeft {
            party_id,
            peer_id,
            reason,
            seq,
        } => (
            "peer_left",
            json!({"party_id": party_id, "peer_id": peer_id, "reason": reason, "seq": seq}),
        ),
        Event::HostChanged {
            party_id,
            old_host_id,
            new_host_id,
            reason,
            host_epoch,
            seq,
        } => (
            "host_changed",
            json!({"party_id": party_id, "old_host_id": old_host_id,
                   "new_host_id": new_host_id, "reason": reason,
                   "host_epoch": host_epoch, "seq": seq}),
        ),
        Event::InviteRevoked {
            party_id,
            nameplate,
            reason,
            seq,
        } => (
            "invite_revoked",
            json!({"party_id": party_id, "nameplate": nameplate, "reason": reason, "seq": seq}),
        ),
        Event::PathPlan {
            party_id,
            pairs,
            seq,
        } => (
            "path_plan",
            json!({"party_id": party_id, "pairs": pairs, "seq": seq}),
        ),
        Event::RelayRecommended {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            seq,
        } => (
            "relay_recommendation",
            json!({"party_id": party_id, "relay_id": relay_id,
                   "worst_pair_rtt_ms": worst_pair_rtt_ms, "reason": reason, "seq": seq}),
        ),
        Event::SettingsChanged {
            party_id,
            settings,
            seq,
        } => (
            "party_settings",
            json!({"party_id": party_id, "settings": settings, "seq": seq}),
        ),
        Event::PartyUpdated {
            party,
            seq,
            virtual_ip,
        } => (
            "party_update",
            json!({"party_id": party.party_id, "party": party, "seq": seq,
                   "virtual_ip": virtual_ip}),
        ),
        Event::PartyEnded {
            party_id,
            reason,
            seq,
        } => (
            "party_ended",
            json!({"party_id": party_id, "reason": reason, "seq": seq}),
        ),
        Event::Signal(signal) => (
            "signal",
            json!({"party_id": signal.party_id, "peer_id": signal.from_peer_id,
                   "signal": signal}),
        ),
        Event::PartyLost { party_id, detail } => (
            "party_lost",
            json!({"party_id": party_id, "detail": detail}),
        ),
        Event::Lagged { dropped } => ("lagged", json!({"dropped": dropped})),
        Event::Connected { peer_id, reconnect } => (
            "connected",
            json!({"peer_id": peer_id, "reconnect": reconnect}),
        ),
        Event::Disconnected { reason } => ("disconnected", json!({"reason": reason.to_string()})),
        Event::Reconnecting {
            attempt,
            retry_in,
            error,
        } => (
            "reconnecting",
            json!({"attempt": attempt, "retry_in": retry_in.as_secs_f64(),
                   "error": error.to_string()}),
        ),
        Event::GaveUp { attempts, error } => (
            "gave_up",
            json!({"attempts": attempts, "error": error.to_string()}),
        ),
        other => ("unknown", json!({"debug": format!("{other:?}")})),
    }
}

/// The events of one client, for `async for`: each `__anext__` is a
/// future of the next one; it ends when the client is closed. Cancelling
/// the awaiting task drops the wait and loses no event.
#[pyclass(name = "EventStream", module = "lanrage_control", frozen)]
#[derive(Debug)]
pub(crate) struct EventStream {
    events: Arc<Mutex<Events>>,
}

impl EventStream {
    pub(crate) fn new(events: Events) -> Self {
        Self {
            events: Arc::new(Mutex::new(events)),
        }
    }
}

#[pymethods]
impl EventStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = Arc::clone(&self.events);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let next = events.lock().await.recv().await;
            let Some(event) = next else {
                return Err(PyStopAsyncIteration::new_err("the client is closed"));
            };
            let (kind, data) = describe(event);
            let data = to_py(&data)?;
            Python::attach(|py| {
                Py::new(
                    py,
                    PyEvent {
                        kind: kind.to_owned(),
                        data,
                    },
                )
            })
            .map_err(|e| error(None, e.to_string()))
        })
    }
}
