//! Choosing the control plane: the server when one is configured and
//! answers, the local plane otherwise.

use std::{sync::Arc, time::Duration};

use lanrage_proto::PeerId;

use crate::{
    control::ControlPlane,
    error::{ClientError, Result, error_chain},
    http::{HttpClient, HttpConfig},
    key::PrivateKey,
    local::{LocalConfig, LocalControlPlane},
    remote::RemoteControlPlane,
    tls::TlsConfig,
    ws::{Events, WsConfig},
};

/// What [`create_control_plane`] needs: [`Settings::new`], then the
/// `with_` methods (or the fields) for what differs from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The server to use, if any.
    pub server: Option<ServerSettings>,
    /// The local plane: used when there is no server, and held in reserve
    /// by the remote plane.
    pub local: LocalConfig,
}

/// How to reach the server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerSettings {
    pub http: HttpConfig,
    pub ws: WsConfig,
    /// How long the first contact (`GET /`, then opening the socket) may
    /// take, each, before the server counts as unreachable. Short, so an
    /// application does not wait long to run locally when the server hangs;
    /// a request after that first contact has the HTTP client's own
    /// timeouts and retries.
    pub first_contact_timeout: Duration,
}

impl ServerSettings {
    /// The server at `server_url` with default settings: 3 s for the first
    /// contact.
    pub fn new(server_url: impl Into<String>, peer_id: PeerId) -> Self {
        Self {
            http: HttpConfig::new(server_url, peer_id),
            ws: WsConfig::default(),
            first_contact_timeout: Duration::from_secs(3),
        }
    }
}

impl Settings {
    /// The server at `server_url` if given, with default settings and an
    /// in-memory reserve plane; the local plane alone otherwise.
    pub fn new(server_url: Option<String>, peer_id: PeerId) -> Self {
        Self {
            server: server_url.map(|url| ServerSettings::new(url, peer_id.clone())),
            local: LocalConfig::new(peer_id),
        }
    }

    /// Like [`Settings::new`], for the peer bound to `private_key` (see
    /// [`HttpConfig::key_bound`]); the local plane acts as the peer ID
    /// derived from the key.
    pub fn key_bound(server_url: Option<String>, private_key: PrivateKey) -> Self {
        let peer_id = private_key.derived_peer_id();
        Self {
            server: server_url.map(|url| ServerSettings {
                http: HttpConfig::key_bound(url, private_key),
                ws: WsConfig::default(),
                first_contact_timeout: Duration::from_secs(3),
            }),
            local: LocalConfig::new(peer_id),
        }
    }

    /// Which certificates an `https://` server may present.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        if let Some(server) = self.server.as_mut() {
            server.http.tls = tls;
        }
        self
    }

    /// How long the first contact with the server may take.
    pub fn with_first_contact_timeout(mut self, timeout: Duration) -> Self {
        if let Some(server) = self.server.as_mut() {
            server.first_contact_timeout = timeout;
        }
        self
    }

    /// The local plane's settings (its files, its timeouts).
    pub fn with_local(mut self, local: LocalConfig) -> Self {
        self.local = local;
        self
    }
}

/// Why the local plane was chosen.
#[derive(Debug)]
#[non_exhaustive]
pub enum LocalReason {
    /// No server URL was configured.
    NoServerConfigured,
    /// The server did not answer at start: the error says how (a timeout
    /// of the first contact, a refused connection, a 5xx).
    ServerUnreachable(ClientError),
}

/// The plane [`create_control_plane`] chose, and why.
#[derive(Debug)]
#[non_exhaustive]
pub enum SelectedPlane {
    /// The server answered: HTTP requests, socket events.
    Remote {
        plane: RemoteControlPlane,
        events: Events,
    },
    /// No server, or none reachable.
    Local {
        plane: LocalControlPlane,
        reason: LocalReason,
    },
}

impl SelectedPlane {
    /// The chosen plane, to code against whichever it is.
    pub fn control_plane(&self) -> &dyn ControlPlane {
        match self {
            Self::Remote { plane, .. } => plane,
            Self::Local { plane, .. } => plane,
        }
    }

    /// The chosen plane, owned (to share with tasks), and the events of the
    /// remote plane (none for the local plane). Dropping the events is
    /// fine: signals then wait for
    /// [`ControlPlane::poll_signals`].
    pub fn into_parts(self) -> (Arc<dyn ControlPlane>, Option<Events>) {
        match self {
            Self::Remote { plane, events } => (Arc::new(plane), Some(events)),
            Self::Local { plane, .. } => (Arc::new(plane), None),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote { .. })
    }

    /// The remote plane, when the server was chosen: for what only a
    /// server offers (host authority, relay registration).
    pub fn remote(&self) -> Option<&RemoteControlPlane> {
        match self {
            Self::Remote { plane, .. } => Some(plane),
            Self::Local { .. } => None,
        }
    }
}

/// A configured server that answers gives the remote plane (HTTP and
/// socket); no server gives the local plane; a server that cannot be
/// reached at start, or does not answer within
/// [`ServerSettings::first_contact_timeout`], gives the local plane, with a
/// warning and [`LocalReason::ServerUnreachable`]. Errors that falling back
/// would only hide are returned: a malformed URL or one whose scheme this
/// client cannot serve, a certificate not trusted, a refused registration.
///
/// ```no_run
/// use lanrage_client::{SelectedPlane, Settings, create_control_plane, proto::PeerId};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// let url = std::env::var("LANRAGE_CONTROL_SERVER").ok();
/// let selected = create_control_plane(Settings::new(url, me)).await?;
/// if let SelectedPlane::Local { reason, .. } = &selected {
///     eprintln!("running without a server: {reason:?}");
/// }
/// let (plane, _events) = selected.into_parts();
/// println!("{} relays known", plane.list_relays().await?.len());
/// # Ok(())
/// # }
/// ```
pub async fn create_control_plane(settings: Settings) -> Result<SelectedPlane> {
    let Some(server) = settings.server else {
        return Ok(SelectedPlane::Local {
            plane: LocalControlPlane::open(settings.local).await?,
            reason: LocalReason::NoServerConfigured,
        });
    };
    let url = server.http.server_url.clone();
    let http = HttpClient::new(server.http)?;
    let deadline = server.first_contact_timeout;
    let mut ws = server.ws;
    ws.connect_timeout = ws.connect_timeout.min(deadline);
    ws.auth_timeout = ws.auth_timeout.min(deadline);
    let reached = match first_contact(&http, &url, deadline).await {
        Ok(()) => RemoteControlPlane::connect(http, ws, settings.local.clone()).await,
        Err(error) => Err(error),
    };
    match reached {
        Ok((plane, events)) => Ok(SelectedPlane::Remote { plane, events }),
        Err(error) if error.is_unreachable() || error.is_retryable() => {
            tracing::warn!(server = %url, error = %error_chain(&error),
                "control server unreachable: using the local control plane");
            Ok(SelectedPlane::Local {
                plane: LocalControlPlane::open(settings.local).await?,
                reason: LocalReason::ServerUnreachable(error),
            })
        }
        Err(error) => Err(error),
    }
}

/// `GET /` within `deadline`: retried while the connection is refused
/// and time is left, never after the deadline.
async fn first_contact(http: &HttpClient, url: &str, deadline: Duration) -> Result<()> {
    match tokio::time::timeout(deadline, http.service_info()).await {
        Ok(answer) => answer.map(drop),
        Err(_) => Err(ClientError::Timeout {
            what: format!("the first contact with {url}"),
            after: deadline,
        }),
    }
}
