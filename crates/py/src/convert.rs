//! Values between Python and the client library: JSON is the common form
//! (Python's `json` module on one side, serde on the other), so a peer or
//! party reaches Python with exactly the contract's keys, and a value from
//! Python is checked by the same types the server's clients use.

use lanrage_client::{ClientError, error_chain};
use pyo3::{exceptions::PyException, prelude::*};
use serde::{Serialize, de::DeserializeOwned};

pyo3::create_exception!(
    lanrage_control,
    ControlPlaneError,
    PyException,
    "A control-plane call failed. `status` is the HTTP status of a refusal \
     (None when no answer came), `detail` the server's `detail` or what \
     went wrong."
);

/// The exception Python sees: message `HTTP {status}: {detail}` for a
/// refusal (as the original client's), with `.status` and `.detail`.
pub(crate) fn error(status: Option<u16>, detail: impl Into<String>) -> PyErr {
    let detail = detail.into();
    let message = match status {
        Some(status) => format!("HTTP {status}: {detail}"),
        None => detail.clone(),
    };
    Python::attach(|py| {
        let err = PyErr::new::<ControlPlaneError, _>(message);
        let value = err.value(py);
        // Setting attributes on a fresh exception instance cannot fail but
        // for memory exhaustion, which Python reports on its own.
        let _ = value.setattr("status", status);
        let _ = value.setattr("detail", detail);
        err
    })
}

/// A client library error as the exception.
pub(crate) fn client_error(err: ClientError) -> PyErr {
    match err {
        ClientError::Refused { status, detail, .. } => error(Some(status), detail),
        other => error(None, error_chain(&other)),
    }
}

/// A value the caller gave that the contract refuses: a 422, as the
/// server would answer it, raised before anything is sent.
pub(crate) fn invalid(what: &str, why: impl std::fmt::Display) -> PyErr {
    error(Some(422), format!("invalid {what}: {why}"))
}

/// A serialisable value as Python data (dicts, lists, strings, numbers).
pub(crate) fn to_py(value: &impl Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| error(None, e.to_string()))?;
    Python::attach(|py| {
        let json = py.import("json")?;
        Ok(json.call_method1("loads", (text,))?.unbind())
    })
}

/// Python data (or an object with `to_dict()`) as `T`; dates and other
/// values JSON lacks are written with `str()`, and keys `T` does not know
/// are ignored.
pub(crate) fn from_py<T: DeserializeOwned>(value: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let py = value.py();
    let value = if value.hasattr("to_dict")? {
        value.call_method0("to_dict")?
    } else {
        value.clone()
    };
    let json = py.import("json")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("default", py.import("builtins")?.getattr("str")?)?;
    let text: String = json
        .call_method("dumps", (value,), Some(&kwargs))
        .map_err(|e| invalid(what, e))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| invalid(what, e))
}
