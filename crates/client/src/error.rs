//! The client's one error type, classified so that callers (and the retry
//! loop) can tell a network that failed from a control plane that said no.

use std::{fmt, path::PathBuf, time::Duration};

use reqwest::StatusCode;

/// How a request failed before any answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The connection broke before a complete answer (reset, closed early).
    Interrupted,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect failed",
            Self::Timeout => "timed out",
            Self::Interrupted => "connection interrupted",
        })
    }
}

/// Everything a control-plane call can fail with.
///
/// [`ClientError::Refused`] is the control plane (the server, or the local
/// plane applying the same rules) saying no, with the server's `detail`;
/// [`ClientError::Transport`] is the network. Only transport errors, 5xx and
/// 429 are worth retrying: see [`ClientError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the request may or may not have reached the server.
    #[error("cannot reach the control server ({kind}) for {method} {url}")]
    Transport {
        method: String,
        url: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// An error answer, with the `detail` of its `{"detail": ...}` body.
    #[error("{detail} ({status})")]
    Refused {
        status: StatusCode,
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
    /// The settings cannot work (a malformed server URL, an unusable header).
    #[error("invalid client settings: {0}")]
    Config(String),
    /// The WebSocket could not be opened or broke.
    #[error("WebSocket {url}")]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A step with its own deadline did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    /// The server refused the socket's authentication.
    #[error("the server refused the socket's authentication: {0}")]
    AuthRefused(String),
    /// A file of the local plane or of the client's settings.
    #[error("cannot {action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The client was closed, or its background task stopped.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// An error answer built the way the server would send it (the local
    /// plane uses this so both backends fail alike).
    pub fn refused(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Refused {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Whether trying again later may succeed: transport failures, 5xx
    /// and 429. Other refusals (4xx) will not change by retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Refused { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
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
            } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || (*status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
            }
            _ => false,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
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
    /// to answering): transport errors, timeouts and socket failures.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Timeout { .. } | Self::WebSocket { .. }
        )
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

/// An error and its causes on one line (`outer: cause: root cause`), each
/// cause written once even when an outer message already repeats it.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// Shorthand for results of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
