//! [`WsClient`]: the application's handle on the socket task, which sends
//! it commands and reads the state, the party view and the signals it
//! keeps.

use std::{sync::Arc, time::Duration};

use lanrage_proto::{PartyId, PartyResponse, Signal};
use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    Events, WsConfig, WsState,
    connect::{open, ws_url},
    events::StateChanges,
    signals::SignalInbox,
    task::{self, Command},
};
use crate::{
    error::{ClientError, Result},
    http::HttpClient,
};

/// A WebSocket to the control server that stays connected.
///
/// Its task reconnects with capped exponential backoff and jitter
/// ([`WsConfig::reconnect`]); after each reconnect it authenticates again
/// (renewing the token through the [`HttpClient`] if the server refuses it),
/// sends `resume {party_id, after_seq}` for the party it follows, so the
/// server replays what was missed (or sends the current party), and fetches
/// the signals queued for it meanwhile. Party events are delivered once
/// each, in `seq` order: an event already seen is dropped, and one that
/// arrives ahead of a gap waits while the gap is filled by a resume.
///
/// The task does no HTTP work itself (fetching a party, polling signals):
/// that runs beside it, so a slow server never keeps the socket from
/// answering pings. Nor does it wait for the application: see [`Events`].
///
/// ```no_run
/// use lanrage_client::{Event, HttpClient, HttpConfig, WsClient, WsConfig, proto::PeerId};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// let http = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", me))?;
/// let (socket, mut events) = WsClient::connect(http, WsConfig::default()).await?;
/// while let Some(event) = events.recv().await {
///     match event {
///         Event::PeerJoined { peer, .. } => println!("{} joined", peer.name),
///         Event::GaveUp { .. } => break,
///         other => println!("{other:?}"),
///     }
/// }
/// socket.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WsClient {
    url: String,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<WsState>,
    view: watch::Receiver<Option<PartyResponse>>,
    signals: Arc<SignalInbox>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl WsClient {
    /// Opens and authenticates the socket; fails if that first connection
    /// fails (the caller decides what to do then), reconnects on its own
    /// afterwards.
    pub async fn connect(http: HttpClient, config: WsConfig) -> Result<(Self, Events)> {
        Self::start(http, config, None).await
    }

    /// [`WsClient::connect`] following `party` from the start: its events
    /// after `party.seq` are delivered exactly once, whether they happened
    /// before the socket was open (they are replayed) or after.
    ///
    /// Prefer this to [`WsClient::connect`] then [`WsClient::track_party`]
    /// when the party is already known: until tracking starts, party events
    /// are passed on as they come and cannot be told apart from the replay
    /// that tracking asks for.
    pub async fn connect_tracking(
        http: HttpClient,
        config: WsConfig,
        party: PartyResponse,
    ) -> Result<(Self, Events)> {
        Self::start(http, config, Some(party)).await
    }

    async fn start(
        http: HttpClient,
        config: WsConfig,
        party: Option<PartyResponse>,
    ) -> Result<(Self, Events)> {
        let url = ws_url(http.server_url())?;
        let (socket, peer_id) = open(&http, &url, &config).await?;
        let running = task::spawn(http, url.clone(), config, party, socket, peer_id);
        Ok((
            Self {
                url,
                commands: running.commands,
                state: running.state,
                view: running.view,
                signals: running.signals,
                task: Mutex::new(Some(running.task)),
            },
            running.events,
        ))
    }

    /// The socket URL (`ws://…/ws` or `wss://…/ws`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The state now.
    pub fn state(&self) -> WsState {
        self.state.borrow().clone()
    }

    /// Every state change from now on.
    pub fn state_changes(&self) -> StateChanges {
        StateChanges(self.state.clone())
    }

    /// The party as the events received so far describe it: members, the
    /// host (`party.host_id`), `extras.host_epoch` and `extras.settings`
    /// are exact; `virtual_ips` are those of the last full snapshot, and
    /// `extras.succession` that of the last snapshot less the members who
    /// left or became host since (presence changes without an event).
    pub fn party(&self) -> Option<PartyResponse> {
        self.view.borrow().clone()
    }

    /// Takes the signals of `party_id` the socket received and the
    /// application has not taken yet (from [`Events`] or here): each
    /// signal is handed out once, one way or the other.
    pub fn take_signals(&self, party_id: &PartyId) -> Vec<Signal> {
        self.signals.take_party(party_id)
    }

    /// Follows `party` from its `seq` on: anything after it is replayed now
    /// and after every reconnect. Create and join call this.
    pub async fn track_party(&self, party: PartyResponse) -> Result<()> {
        self.commands
            .send(Command::Track(party))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the socket with a close frame and stops the task. Events
    /// not read yet stay readable: [`Events`] ends (`None`) after them.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        let closed_cleanly = self.commands.send(Command::Close(done)).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), closed).await,
                Ok(Ok(()))
            );
        let task = self.task.lock().take();
        if let Some(task) = task
            && !closed_cleanly
        {
            task.abort();
        }
        // Closed cleanly, the task only hands the application what it has
        // not read yet, and ends when that is read or nobody listens.
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}
