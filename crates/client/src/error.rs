//! The client's one error type, classified so that callers (and the retry
//! loop) can tell a network that failed from a control plane that said no.
//! Transport errors of the libraries underneath are wrapped, never exposed,
//! so they can change without changing this crate's API.

use std::{error::Error as StdError, fmt, path::PathBuf, sync::Arc, time::Duration};

use reqwest::StatusCode;

/// How a request failed before any answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The connection broke before a complete answer (reset, closed early).
    Interrupted,
    /// The TLS handshake failed: the server's certificate is not trusted
    /// (or not the pinned one), or the server does not speak TLS. Never
    /// retried, and never a reason to fall back to the local plane: it is
    /// a configuration or security problem, not an outage.
    Tls,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect failed",
            Self::Timeout => "timed out",
            Self::Interrupted => "connection interrupted",
            Self::Tls => "TLS handshake failed",
        })
    }
}

/// The cause of a transport failure, as the HTTP or WebSocket library
/// underneath reported it: its message and its own causes, through
/// [`std::error::Error::source`].
#[derive(Debug)]
pub struct TransportError(Box<dyn StdError + Send + Sync>);

impl TransportError {
    pub(crate) fn new(source: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(source))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Everything a control-plane call can fail with.
///
/// [`ClientError::Refused`] is the control plane (the server, or the local
/// plane applying the same rules) saying no, with the server's `detail`;
/// [`ClientError::Transport`] is the network. Only transport errors (other
/// than TLS), 5xx and 429 are worth retrying: see
/// [`ClientError::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No answer: the request may or may not have reached the server.
    #[error("cannot reach the control server ({kind}) for {method} {url}")]
    Transport {
        method: String,
        url: String,
        kind: TransportKind,
        #[source]
        source: TransportError,
    },
    /// An error answer, with the `detail` of its `{"detail": ...}` body.
    #[error("{detail} ({status})")]
    Refused {
        /// The HTTP status code (the local plane uses the server's).
        status: u16,
        detail: String,
        /// The `Retry-After` of a 429 or 503, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// A success answer whose body is not what the contract says.
    #[error("unexpected answer to {what}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The settings cannot work: a malformed server URL or one whose scheme
    /// this client cannot serve, an unusable certificate, a bad header.
    #[error("invalid client settings: {0}")]
    Config(String),
    /// The WebSocket could not be opened, or broke.
    #[error("WebSocket {url} ({kind})")]
    WebSocket {
        url: String,
        kind: TransportKind,
        #[source]
        source: TransportError,
    },
    /// A step with its own deadline did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    /// The server refused the socket's authentication.
    #[error("the server refused the socket's authentication: {0}")]
    AuthRefused(String),
    /// The socket was lost (see the reason).
    #[error("the socket was lost: {0}")]
    Disconnected(crate::event::DisconnectReason),
    /// A file of the local plane or of the client's settings.
    #[error("cannot {action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The control plane in use does not offer this capability: a server
    /// that does not list `feature` in `GET /`'s `features` (one from before
    /// it), or the local plane (no server). Nothing was sent or changed.
    #[error("{detail}")]
    Unsupported {
        /// The capability, as `GET /` names it (`host-migration`).
        feature: String,
        detail: String,
    },
    /// The client was closed, or its background task stopped.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// An error answer built the way the server would send it (the local
    /// plane uses this so both backends fail alike).
    pub(crate) fn refused(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Refused {
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Whether trying again later may succeed: transport failures other
    /// than TLS, 5xx and 429. Other refusals (4xx) will not change by
    /// retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { kind, .. } => *kind != TransportKind::Tls,
            Self::Timeout { .. } => true,
            Self::Refused { status, .. } => (500..600).contains(status) || *status == 429,
            _ => false,
        }
    }

    /// Whether retrying is safe even for a request that must not be applied
    /// twice: the server certainly did not act on it. That is a connect
    /// error (the request was never sent), a 429, or a 503 with
    /// `Retry-After`. A timeout or a connection cut after sending is not:
    /// the server may have applied the request.
    pub fn is_retryable_unsent(&self) -> bool {
        match self {
            Self::Transport { kind, .. } => *kind == TransportKind::Connect,
            Self::Refused {
                status,
                retry_after,
                ..
            } => *status == 429 || (*status == 503 && retry_after.is_some()),
            _ => false,
        }
    }

    /// The HTTP status code of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `detail` of a refusal.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Refused { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// How long the server asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the control plane could not be reached at all (as opposed
    /// to answering): transport errors, timeouts and socket failures. A
    /// failed TLS handshake is not: something answered, and it is not the
    /// server this client was told to trust.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Transport { kind, .. } | Self::WebSocket { kind, .. } => {
                *kind != TransportKind::Tls
            }
            Self::Timeout { .. } | Self::Disconnected(_) => true,
            _ => false,
        }
    }

    pub(crate) fn file(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::File {
            action,
            path,
            source,
        }
    }
}

/// Whether `error` or one of its causes is a TLS failure (a certificate
/// not trusted, a handshake that failed). I/O errors hide the error they
/// wrap from `source()`, so they are looked into as well.
pub(crate) fn is_tls_failure(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_tls_failure(inner)
        {
            return true;
        }
        next = cause.source();
    }
    false
}

/// An error and its causes on one line (`outer: cause: root cause`), each
/// cause written once even when an outer message already repeats it.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An error shared by the events that report it (events are cloned).
pub type SharedError = Arc<ClientError>;

/// Shorthand for results of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
