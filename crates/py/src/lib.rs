//! The `lanrage_control` Python module: the LANrage control plane's client
//! library (`lanrage-client`) for asyncio programs, with the original
//! Python client's `RemoteControlPlaneClient` methods and argument order,
//! the local plane that needs no server, and `create_control_plane`
//! choosing between them.
//!
//! Every method returns an awaitable; the call runs on a tokio runtime
//! owned by the module, and cancelling the awaiting Python task drops it.
//! Peers and parties cross as dicts with the contract's keys (JSON is the
//! common form, see `convert`). Build with maturin (`pip install
//! crates/py`); `lanrage_control.pyi` documents the Python API.

mod convert;
mod events;
mod factory;
mod local;
mod remote;

use std::time::Duration;

use pyo3::prelude::*;

use crate::{
    convert::{ControlPlaneError, invalid},
    events::{EventStream, PyEvent},
    local::LocalControlPlaneClient,
    remote::RemoteControlPlaneClient,
};

/// A value from Python checked by the contract's parser: a 422 otherwise.
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

/// Runs `body` (given a handle on the client's state) as a Python
/// awaitable.
fn spawn<'py, S, F, T>(
    py: Python<'py>,
    state: &S,
    body: impl FnOnce(S) -> F,
) -> PyResult<Bound<'py, PyAny>>
where
    S: Clone,
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, body(state.clone()))
}

#[pymodule]
#[pyo3(name = "lanrage_control")]
fn lanrage_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RemoteControlPlaneClient>()?;
    m.add_class::<LocalControlPlaneClient>()?;
    m.add_class::<EventStream>()?;
    m.add_class::<PyEvent>()?;
    m.add_function(wrap_pyfunction!(factory::create_control_plane, m)?)?;
    m.add("ControlPlaneError", m.py().get_type::<ControlPlaneError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
