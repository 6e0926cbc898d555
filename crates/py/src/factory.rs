//! `create_control_plane`: the server when one is configured and answers,
//! the local plane otherwise, as the original LANrage application's
//! factory chooses (and as the client library's own factory does).

use std::{path::PathBuf, sync::Arc};

use lanrage_client::{ClientError, LocalConfig, error_chain, proto::PeerId};
use pyo3::{prelude::*, types::PyDict};

use crate::{
    convert::client_error,
    local::{LocalControlPlaneClient, LocalShared, local_config},
    parse,
    remote::RemoteControlPlaneClient,
    seconds,
};

/// A `RemoteControlPlaneClient` for `server_url`, registered and with its
/// socket open, when the server answers within `first_contact_timeout`
/// seconds; otherwise (no URL, a refused connection, a timeout, a 5xx) a
/// `LocalControlPlaneClient` whose `fallback_reason` says why. A refusal
/// that running locally would only hide (a bad registration key, an
/// untrusted certificate, an invalid ID) raises instead. Other keyword
/// options go to `RemoteControlPlaneClient`.
#[pyfunction]
#[pyo3(signature = (
    server_url,
    peer_id,
    *,
    state_dir = None,
    first_contact_timeout = 3.0,
    **options,
))]
pub(crate) fn create_control_plane<'py>(
    py: Python<'py>,
    server_url: Option<String>,
    peer_id: String,
    state_dir: Option<PathBuf>,
    first_contact_timeout: f64,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let local = local_config(
        parse(peer_id.clone(), "peer_id", PeerId::parse)?,
        state_dir,
        300.0,
        30.0,
    )?;
    let deadline = seconds(first_contact_timeout, "first_contact_timeout")?;
    let Some(server_url) = server_url.filter(|url| !url.trim().is_empty()) else {
        let reason = "no server configured".to_owned();
        return pyo3_async_runtimes::tokio::future_into_py(py, opened_local(local, reason));
    };
    let kwargs = match options {
        Some(options) => options.copy()?,
        None => PyDict::new(py),
    };
    kwargs.set_item("peer_id", peer_id)?;
    let remote = py
        .get_type::<RemoteControlPlaneClient>()
        .call((server_url.clone(),), Some(&kwargs))?
        .cast_into::<RemoteControlPlaneClient>()?
        .unbind();
    let shared = Arc::clone(&remote.get().shared);
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let reason = match tokio::time::timeout(deadline, shared.start()).await {
            Ok(Ok(())) => return Ok(remote.into_any()),
            Ok(Err(error)) if falls_back(&error) => error_chain(&error),
            Ok(Err(error)) => return Err(client_error(error)),
            Err(_) => format!("no answer within {first_contact_timeout} s"),
        };
        let reason = format!("server {server_url} unreachable: {reason}");
        Ok(opened_local(local, reason).await?.into_any())
    })
}

/// The local plane, opened (its saved state read), saying why it was
/// chosen.
async fn opened_local(local: LocalConfig, reason: String) -> PyResult<Py<LocalControlPlaneClient>> {
    let chosen = LocalShared::new(local, Some(reason));
    chosen.plane().await?;
    Python::attach(|py| {
        Py::new(
            py,
            LocalControlPlaneClient {
                shared: Arc::new(chosen),
            },
        )
    })
}

/// Whether the server is only unreachable for now (so the local plane
/// stands in), not refusing for a reason the caller must see.
fn falls_back(error: &ClientError) -> bool {
    error.is_unreachable() || error.is_retryable()
}
