//! Choosing the control plane: the server when one is configured and
//! answers, the local plane otherwise.

use lanrage_proto::PeerId;

use crate::{
    control::ControlPlane,
    error::{ClientError, Result, error_chain},
    http::{HttpClient, HttpConfig},
    local::{LocalConfig, LocalControlPlane},
    remote::RemoteControlPlane,
    ws::{WsConfig, WsEvents},
};

/// What [`create_control_plane`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server to use, if any.
    pub server: Option<ServerSettings>,
    /// The local plane: used when there is no server, and held in reserve
    /// by the remote plane.
    pub local: LocalConfig,
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub http: HttpConfig,
    pub ws: WsConfig,
}

impl Settings {
    /// The server at `server_url` if given, with default settings and an
    /// in-memory reserve plane; the local plane alone otherwise.
    pub fn new(server_url: Option<String>, peer_id: PeerId) -> Self {
        Self {
            server: server_url.map(|url| ServerSettings {
                http: HttpConfig::new(url, peer_id.clone()),
                ws: WsConfig::default(),
            }),
            local: LocalConfig::new(peer_id),
        }
    }
}

/// Why the local plane was chosen.
#[derive(Debug)]
pub enum LocalReason {
    /// No server URL was configured.
    NoServerConfigured,
    /// The server did not answer at start.
    ServerUnreachable(ClientError),
}

/// The plane [`create_control_plane`] chose, and why.
#[derive(Debug)]
pub enum SelectedPlane {
    /// The server answered: HTTP requests, socket events.
    Remote {
        plane: RemoteControlPlane,
        events: WsEvents,
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

    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote { .. })
    }
}

/// A configured server that answers gives the remote plane (HTTP and
/// socket); no server gives the local plane; a server that cannot be reached
/// at start gives the local plane, with a warning and
/// [`LocalReason::ServerUnreachable`]. Errors that falling back would only
/// hide (a malformed URL, a refused registration) are returned.
///
/// ```no_run
/// use lanrage_client::{SelectedPlane, Settings, create_control_plane};
/// use lanrage_proto::PeerId;
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// let url = std::env::var("LANRAGE_CONTROL_SERVER").ok();
/// let selected = create_control_plane(Settings::new(url, me)).await?;
/// if let SelectedPlane::Local { reason, .. } = &selected {
///     eprintln!("running without a server: {reason:?}");
/// }
/// let plane = selected.control_plane();
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
    let reached = match http.service_info().await {
        Ok(_) => RemoteControlPlane::connect(http, server.ws, settings.local.clone()).await,
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
