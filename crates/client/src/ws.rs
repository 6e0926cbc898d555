//! The remote control plane's real-time channel: a WebSocket to `/ws` that
//! authenticates, turns server frames into typed events, and reconnects by an
//! explicit state machine, resuming the party so that no change is lost.

use std::{
    collections::{BTreeMap, VecDeque},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{SinkExt, Stream, StreamExt};
use lanrage_proto::{ClientMessage, PartyId, PartyResponse, PeerId, ServerMessage, Signal};
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::{
    ControlPlane,
    backoff::Backoff,
    error::{ClientError, Result, error_chain},
    http::HttpClient,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The `request_id` of the resume the client sends itself, so its answer
/// (or refusal) is told apart from the application's requests.
const RESYNC: &str = "lanrage-client-resync";

/// The socket URL of a server URL: `http` becomes `ws`, `https` becomes
/// `wss`, and `/ws` is appended to whatever path the URL has.
///
/// ```
/// assert_eq!(
///     lanrage_client::ws_url("https://control.example/lanrage/").unwrap(),
///     "wss://control.example/lanrage/ws"
/// );
/// ```
pub fn ws_url(server_url: &str) -> Result<String> {
    let trimmed = server_url.trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        ("wss://", rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        ("ws://", rest)
    } else {
        return Err(ClientError::Config(format!(
            "server URL {server_url:?} must start with http:// or https://"
        )));
    };
    if rest.is_empty() {
        return Err(ClientError::Config(format!(
            "server URL {server_url:?} has no host"
        )));
    }
    Ok(format!("{scheme}{rest}/ws"))
}

/// Settings of a [`WsClient`].
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Deadline to open the socket (TCP and upgrade).
    pub connect_timeout: Duration,
    /// Deadline for the server's `auth_ok`.
    pub auth_timeout: Duration,
    /// A socket on which nothing (not even a ping) arrives this long is
    /// considered dead and reconnected. The server pings every 20 s and
    /// itself drops a socket silent for 45 s, so this stays below that.
    pub idle_timeout: Duration,
    /// Spacing of reconnect attempts, and how many are made in a row before
    /// the client gives up (and the remote plane falls back to local).
    pub reconnect: Backoff,
    /// Events the application may leave unread before the client sheds
    /// some; see [`WsEvents`] for what happens then.
    pub event_buffer: usize,
}

impl Default for WsConfig {
    /// 10 s to connect and to authenticate, 30 s of silence tolerated, and
    /// 10 reconnect attempts from 0.5 s to 30 s apart (about 2.5 minutes).
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            reconnect: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
                max_attempts: 10,
            },
            event_buffer: 256,
        }
    }
}

/// Where the socket is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsState {
    /// Opening the socket and authenticating; `attempt` 0 is the first
    /// connection, 1 and up are reconnects.
    Connecting { attempt: u32 },
    /// Authenticated and receiving events.
    Connected,
    /// Disconnected; reconnect attempt `attempt` starts in `retry_in`.
    Waiting { attempt: u32, retry_in: Duration },
    /// `attempts` reconnects failed in a row: the server is considered gone.
    GaveUp { attempts: u32 },
    /// Closed by the application.
    Closed,
}

/// What a [`WsClient`] reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// The socket is authenticated (`reconnect` is false the first time).
    Connected { peer_id: PeerId, reconnect: bool },
    /// A server message: a party event (deduplicated and in `seq` order), a
    /// signal (including those queued while the socket was down, fetched
    /// after a reconnect), or the answer to a request sent with
    /// [`WsClient::send`].
    Message(ServerMessage),
    /// The socket was lost; reconnecting follows.
    Disconnected { reason: String },
    /// Reconnect attempt `attempt` will start in `retry_in`.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        error: String,
    },
    /// After a reconnect the party could not be resumed: it ended, or this
    /// peer is no longer in it, while the socket was down.
    PartyLost { party_id: PartyId, detail: String },
    /// The application read too slowly and `dropped` events were shed (see
    /// [`WsEvents`]). When a party is followed, a `party_update` with the
    /// current party comes right after this.
    Lagged { dropped: u64 },
    /// Every reconnect attempt failed; the client stopped. A
    /// [`RemoteControlPlane`](crate::RemoteControlPlane) now serves from its
    /// local plane.
    GaveUp { attempts: u32, error: String },
}

/// The events of a [`WsClient`]: a [`Stream`], or [`WsEvents::recv`].
///
/// The socket never waits for the application: it keeps answering the
/// server's pings and folding party events into [`WsClient::party`] however
/// slowly events are read. Up to [`WsConfig::event_buffer`] events wait
/// here, and as many again inside the client. Beyond that the client sheds:
/// events of the followed party are dropped (the party view stays exact)
/// and, once the application catches up, it receives [`WsEvent::Lagged`]
/// and then one `party_update` with the party as it is, so it is never left
/// on a stale view; other events (signals, answers, connection changes) are
/// dropped oldest first and counted in the same [`WsEvent::Lagged`].
#[derive(Debug)]
pub struct WsEvents {
    rx: mpsc::Receiver<WsEvent>,
}

impl WsEvents {
    /// The next event; `None` once the client is closed or gave up and
    /// every event was read.
    pub async fn recv(&mut self) -> Option<WsEvent> {
        self.rx.recv().await
    }
}

impl Stream for WsEvents {
    type Item = WsEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WsEvent>> {
        self.rx.poll_recv(cx)
    }
}

#[derive(Debug)]
enum Command {
    Send(ClientMessage),
    Track(PartyResponse),
    Close(oneshot::Sender<()>),
}

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
/// answering pings. Nor does it wait for the application: see [`WsEvents`].
///
/// ```no_run
/// use lanrage_client::{HttpClient, HttpConfig, WsClient, WsConfig, WsEvent};
/// use lanrage_proto::{PeerId, ServerMessage};
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let me = PeerId::parse("alice").expect("valid id");
/// let http = HttpClient::new(HttpConfig::new("http://127.0.0.1:8667", me))?;
/// let (socket, mut events) = WsClient::connect(http, WsConfig::default()).await?;
/// while let Some(event) = events.recv().await {
///     match event {
///         WsEvent::Message(ServerMessage::PeerJoined { peer, .. }) => println!("{} joined", peer.name),
///         WsEvent::GaveUp { .. } => break,
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
    view: Arc<Mutex<Option<PartyResponse>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl WsClient {
    /// Opens and authenticates the socket; fails if that first connection
    /// fails (the caller decides what to do then), reconnects on its own
    /// afterwards.
    pub async fn connect(http: HttpClient, config: WsConfig) -> Result<(Self, WsEvents)> {
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
    ) -> Result<(Self, WsEvents)> {
        Self::start(http, config, Some(party)).await
    }

    async fn start(
        http: HttpClient,
        config: WsConfig,
        party: Option<PartyResponse>,
    ) -> Result<(Self, WsEvents)> {
        let url = ws_url(http.server_url())?;
        let (socket, peer_id) = open(&http, &url, &config).await?;
        let (events_tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let (commands_tx, commands) = mpsc::channel(64);
        let (state_tx, state) = watch::channel(WsState::Connected);
        let view = Arc::new(Mutex::new(party));
        let mut task = Task {
            me: http.config().peer_id.clone(),
            http,
            url: url.clone(),
            config,
            events: events_tx,
            commands,
            state: state_tx,
            view: view.clone(),
            outbox: VecDeque::new(),
            dropped: 0,
            owe_snapshot: false,
            pending: None,
            resuming: false,
            fetching: None,
            passed_on: BTreeMap::new(),
            delivered: None,
            jobs: JoinSet::new(),
        };
        task.emit(WsEvent::Connected {
            peer_id,
            reconnect: false,
        });
        let task = tokio::spawn(task.run(socket));
        Ok((
            Self {
                url,
                commands: commands_tx,
                state,
                view,
                task: Mutex::new(Some(task)),
            },
            WsEvents { rx },
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

    /// A receiver that sees every state change.
    pub fn state_changes(&self) -> watch::Receiver<WsState> {
        self.state.clone()
    }

    /// The party as the events received so far describe it (members are
    /// exact; `virtual_ips` are those of the last full snapshot).
    pub fn party(&self) -> Option<PartyResponse> {
        self.view.lock().ok().and_then(|view| view.clone())
    }

    /// Follows `party` from its `seq` on: anything after it is replayed now
    /// and after every reconnect. Create and join call this.
    pub async fn track_party(&self, party: PartyResponse) -> Result<()> {
        self.commands
            .send(Command::Track(party))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a request over the socket (`heartbeat`, `signal`, …); its answer
    /// arrives as an event. While the socket is down the request is dropped:
    /// the HTTP API is the reliable path for requests.
    pub async fn send(&self, message: ClientMessage) -> Result<()> {
        self.commands
            .send(Command::Send(message))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the socket with a close frame and stops the task. Events
    /// not read yet stay readable: [`WsEvents`] ends (`None`) after them.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        let closed_cleanly = self.commands.send(Command::Close(done)).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), closed).await,
                Ok(Ok(()))
            );
        let task = self.task.lock().ok().and_then(|mut t| t.take());
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
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

/// Opens a socket and authenticates it. A refused token is forgotten and
/// the socket tried once more with a fresh one.
async fn open(http: &HttpClient, url: &str, config: &WsConfig) -> Result<(Socket, PeerId)> {
    let mut refused_once = false;
    loop {
        let token = http.bearer().await?;
        match open_once(http, url, config, &token).await {
            Err(ClientError::AuthRefused(reason)) if !refused_once => {
                tracing::info!(%reason, "socket token refused; registering again");
                http.invalidate_token(&token).await;
                refused_once = true;
            }
            Err(ClientError::AuthRefused(reason)) => {
                http.invalidate_token(&token).await;
                return Err(ClientError::AuthRefused(reason));
            }
            other => return other,
        }
    }
}

async fn open_once(
    http: &HttpClient,
    url: &str,
    config: &WsConfig,
    token: &str,
) -> Result<(Socket, PeerId)> {
    let websocket = |source| ClientError::WebSocket {
        url: url.to_owned(),
        source: Box::new(source),
    };
    let (mut socket, _) = tokio::time::timeout(
        config.connect_timeout,
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| ClientError::Timeout {
        what: format!("connecting to {url}"),
        after: config.connect_timeout,
    })?
    .map_err(websocket)?;
    let peer_id = http.config().peer_id.clone();
    let auth = ClientMessage::Auth {
        peer_id: Some(peer_id.clone()),
        token: token.to_owned(),
        request_id: Some(json!("auth")),
    };
    socket
        .send(Message::text(encode(&auth)))
        .await
        .map_err(websocket)?;
    let answer = tokio::time::timeout(config.auth_timeout, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => match decode(&text) {
                    Some(ServerMessage::AuthOk { peer_id, .. }) => return Ok(peer_id),
                    Some(ServerMessage::Error { message, .. }) => {
                        return Err(ClientError::AuthRefused(message));
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::AuthRefused(format!(
                        "the server closed the socket before auth_ok{}",
                        frame
                            .map(|f| format!(" ({} {})", f.code, f.reason))
                            .unwrap_or_default()
                    )));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(websocket(e)),
                None => {
                    return Err(ClientError::AuthRefused(
                        "the server closed the socket before auth_ok".into(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout {
        what: "authenticating the socket".into(),
        after: config.auth_timeout,
    })??;
    Ok((socket, answer))
}

fn encode(message: &ClientMessage) -> String {
    // Our own messages always serialize: every field is a plain value.
    serde_json::to_string(message).unwrap_or_default()
}

/// A server frame as a typed message; types this client does not know are
/// skipped, as the protocol asks.
fn decode(text: &str) -> Option<ServerMessage> {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::debug!(%error, frame = %text.chars().take(200).collect::<String>(), "ignoring a server frame");
            None
        }
    }
}

enum SessionEnd {
    Lost(String),
    Closed,
}

/// HTTP work done beside the socket task, and its result.
enum Job {
    /// A snapshot of a party: one we found ourselves in without holding a
    /// view of it (`refused_resume` none), or one the server would not
    /// resume (`refused_resume` says why).
    Snapshot {
        party_id: PartyId,
        refused_resume: Option<String>,
        result: Result<PartyResponse>,
    },
    /// The signals queued for us while the socket was down.
    Signals {
        party_id: PartyId,
        result: Result<Vec<Signal>>,
    },
}

/// Party events that arrived ahead of a gap, waiting for it to be filled.
struct Pending {
    party_id: PartyId,
    events: BTreeMap<u64, ServerMessage>,
}

/// Beyond this many out-of-order events, they are dropped and a resume
/// (which replays them) is relied on instead.
const MAX_PENDING: usize = 1024;

/// The socket's task: the state machine of connections.
struct Task {
    http: HttpClient,
    me: PeerId,
    url: String,
    config: WsConfig,
    events: mpsc::Sender<WsEvent>,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<WsState>,
    view: Arc<Mutex<Option<PartyResponse>>>,
    /// Events the application has not taken yet, beyond the channel.
    outbox: VecDeque<WsEvent>,
    /// Events shed since the application last caught up.
    dropped: u64,
    /// Events of the followed party were shed: a snapshot is owed.
    owe_snapshot: bool,
    pending: Option<Pending>,
    /// A resume was sent and its answer has not come yet.
    resuming: bool,
    /// A party we were seen joining and whose snapshot is being fetched.
    fetching: Option<PartyId>,
    /// The highest seq passed on, per party not followed (events go out as
    /// they come until the party is followed).
    passed_on: BTreeMap<PartyId, u64>,
    /// Events of the followed party up to this seq already reached the
    /// application before it was followed: folded, not emitted again.
    delivered: Option<(PartyId, u64)>,
    jobs: JoinSet<Job>,
}

impl Task {
    async fn run(mut self, mut socket: Socket) {
        let mut reconnected = false;
        loop {
            if let Err(e) = self.after_connect(&mut socket, reconnected).await {
                tracing::debug!(error = %e, "resume not sent");
            }
            let reason = match self.session(&mut socket).await {
                SessionEnd::Closed => {
                    self.state.send_replace(WsState::Closed);
                    self.flush().await;
                    return;
                }
                SessionEnd::Lost(reason) => reason,
            };
            tracing::info!(%reason, url = %self.url, "socket lost; reconnecting");
            self.resuming = false;
            self.emit(WsEvent::Disconnected {
                reason: reason.clone(),
            });
            let mut error = reason;
            let mut attempt = 0;
            socket = loop {
                attempt += 1;
                if attempt > self.config.reconnect.max_attempts {
                    let attempts = attempt - 1;
                    tracing::warn!(attempts, %error, url = %self.url, "control server unreachable; giving up the socket");
                    self.state.send_replace(WsState::GaveUp { attempts });
                    self.emit(WsEvent::GaveUp { attempts, error });
                    self.flush().await;
                    return;
                }
                let retry_in = self.config.reconnect.delay(attempt);
                self.state
                    .send_replace(WsState::Waiting { attempt, retry_in });
                self.emit(WsEvent::Reconnecting {
                    attempt,
                    retry_in,
                    error: error.clone(),
                });
                if self.wait(retry_in).await {
                    self.state.send_replace(WsState::Closed);
                    self.flush().await;
                    return;
                }
                self.state.send_replace(WsState::Connecting { attempt });
                match open(&self.http, &self.url, &self.config).await {
                    Ok((socket, peer_id)) => {
                        self.emit(WsEvent::Connected {
                            peer_id,
                            reconnect: true,
                        });
                        break socket;
                    }
                    Err(e) => error = error_chain(&e),
                }
            };
            self.state.send_replace(WsState::Connected);
            reconnected = true;
        }
    }

    /// Resumes the followed party on a fresh socket and, after a reconnect,
    /// fetches the signals queued while it was down.
    async fn after_connect(
        &mut self,
        socket: &mut Socket,
        reconnected: bool,
    ) -> std::result::Result<(), tokio_tungstenite::tungstenite::Error> {
        let Some((party_id, seq)) = self.tracked() else {
            return Ok(());
        };
        if reconnected {
            let http = self.http.clone();
            let party = party_id.clone();
            self.jobs.spawn(async move {
                let result = http.poll_signals(&party).await;
                Job::Signals {
                    party_id: party,
                    result,
                }
            });
        }
        self.resume(socket, &party_id, seq).await
    }

    /// Sleeps `delay` while handling commands, finished HTTP work and the
    /// application's reading; true when closed meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return false,
                command = self.commands.recv() => match command {
                    None => return true,
                    Some(Command::Close(done)) => {
                        let _ = done.send(());
                        return true;
                    }
                    Some(Command::Track(party)) => self.track(party),
                    Some(Command::Send(message)) => {
                        tracing::warn!(?message, "socket down: request dropped");
                    }
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    if let Ok(job) = done {
                        self.on_job(job);
                    }
                }
                permit = self.events.clone().reserve_owned(), if self.has_backlog() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.next_backlog() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.outbox.clear(),
                },
            }
        }
    }

    async fn session(&mut self, socket: &mut Socket) -> SessionEnd {
        let idle = self.config.idle_timeout;
        let mut last_frame = Instant::now();
        loop {
            if !self.resuming
                && let Some((party_id, seq)) = self.gap()
                && let Err(e) = self.resume(socket, &party_id, seq).await
            {
                return SessionEnd::Lost(e.to_string());
            }
            tokio::select! {
                () = tokio::time::sleep_until(last_frame + idle) => {
                    return SessionEnd::Lost(format!("nothing from the server for {idle:?}"));
                }
                frame = socket.next() => {
                    last_frame = Instant::now();
                    match frame {
                        None => return SessionEnd::Lost("the connection closed".into()),
                        Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                        Some(Ok(Message::Close(frame))) => {
                            return SessionEnd::Lost(match frame {
                                Some(f) => format!("the server closed the socket ({} {})", f.code, f.reason),
                                None => "the server closed the socket".into(),
                            });
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(message) = decode(text.as_str()) {
                                self.on_message(message);
                            }
                        }
                        // Pings are answered by tungstenite itself, as long
                        // as this loop keeps reading.
                        Some(Ok(_)) => {}
                    }
                }
                command = self.commands.recv() => match command {
                    None => {
                        let _ = socket.close(None).await;
                        return SessionEnd::Closed;
                    }
                    Some(Command::Close(done)) => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                        let _ = done.send(());
                        return SessionEnd::Closed;
                    }
                    Some(Command::Send(message)) => {
                        if let Err(e) = socket.send(Message::text(encode(&message))).await {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                    Some(Command::Track(party)) => {
                        self.track(party);
                        if let Some((party_id, seq)) = self.tracked()
                            && let Err(e) = self.resume(socket, &party_id, seq).await
                        {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    if let Ok(job) = done {
                        self.on_job(job);
                    }
                }
                permit = self.events.clone().reserve_owned(), if self.has_backlog() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.next_backlog() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.outbox.clear(),
                },
            }
        }
    }

    async fn resume(
        &mut self,
        socket: &mut Socket,
        party_id: &PartyId,
        after_seq: u64,
    ) -> std::result::Result<(), tokio_tungstenite::tungstenite::Error> {
        let message = ClientMessage::Resume {
            party_id: party_id.clone(),
            after_seq,
            request_id: Some(json!(RESYNC)),
        };
        self.resuming = true;
        socket.send(Message::text(encode(&message))).await
    }

    fn tracked(&self) -> Option<(PartyId, u64)> {
        let view = self.view.lock().ok()?;
        view.as_ref().map(|v| (v.party.party_id.clone(), v.seq))
    }

    /// The followed party and its seq, when events are held past a gap.
    fn gap(&self) -> Option<(PartyId, u64)> {
        let (party_id, last) = self.tracked()?;
        let pending = self.pending.as_ref()?;
        let first = *pending.events.keys().next()?;
        (pending.party_id == party_id && first > last + 1).then_some((party_id, last))
    }

    fn tracked_party(&self) -> Option<PartyId> {
        self.tracked().map(|(party_id, _)| party_id)
    }

    /// Follows `party` (unless the view of it is already newer).
    fn track(&mut self, party: PartyResponse) {
        if self.fetching.as_ref() == Some(&party.party.party_id) {
            self.fetching = None;
        }
        // What went out before tracking must not go out again when the
        // resume replays it.
        self.delivered = self
            .passed_on
            .remove(&party.party.party_id)
            .filter(|seq| *seq > party.seq)
            .map(|seq| (party.party.party_id.clone(), seq));
        if let Ok(mut view) = self.view.lock() {
            let newer = match view.as_ref() {
                Some(current) if current.party.party_id == party.party.party_id => {
                    party.seq >= current.seq
                }
                _ => true,
            };
            if newer {
                *view = Some(party);
            }
        }
        self.drain_pending();
    }

    // ----- Incoming messages -----

    fn on_message(&mut self, message: ServerMessage) {
        match &message {
            ServerMessage::Ack {
                request_id: Some(id),
                ..
            } if *id == json!(RESYNC) => {
                // The replay is complete: whatever still waits is past a
                // gap the replay did not fill.
                self.resuming = false;
                self.drain_pending();
            }
            ServerMessage::Error {
                message: detail,
                request_id: Some(id),
            } if *id == json!(RESYNC) => {
                self.resuming = false;
                if let Some(party_id) = self.tracked_party() {
                    self.fetch_snapshot(party_id, Some(detail.clone()));
                }
            }
            _ => match message.party_seq().map(|(id, _)| id.clone()) {
                Some(party_id) => self.on_party_event(party_id, message),
                None => self.emit(WsEvent::Message(message)),
            },
        }
    }

    fn on_party_event(&mut self, party_id: PartyId, message: ServerMessage) {
        if self.tracked_party().as_ref() == Some(&party_id) {
            self.fold(message);
            self.drain_pending();
            return;
        }
        if self.fetching.as_ref() == Some(&party_id) {
            match message {
                // A full party (the answer to a join over this socket):
                // no need to wait for the fetch.
                ServerMessage::PartyUpdate { .. } => {
                    self.fetching = None;
                    self.adopt(message);
                    self.drain_pending();
                }
                ServerMessage::PartyEnded { .. } => {
                    self.fetching = None;
                    self.pending = None;
                    self.emit(WsEvent::Message(message));
                }
                other => self.hold(party_id, other),
            }
            return;
        }
        match message {
            ServerMessage::PartyUpdate { .. } => {
                self.adopt(message);
                self.drain_pending();
            }
            ServerMessage::PeerJoined { ref peer, .. } if peer.peer_id == self.me => {
                // We are in a party we hold no view of (joined over HTTP,
                // or moved): its snapshot is fetched beside the socket,
                // and its events wait for it.
                self.pass_on(message);
                self.pending = None;
                self.fetching = Some(party_id.clone());
                self.fetch_snapshot(party_id, None);
            }
            other => self.pass_on(other),
        }
    }

    /// An event of a party not followed: out as it comes.
    fn pass_on(&mut self, message: ServerMessage) {
        if let Some((party_id, seq)) = message.party_seq() {
            if self.passed_on.len() >= MAX_PENDING {
                self.passed_on.clear();
            }
            let last = self.passed_on.entry(party_id.clone()).or_default();
            *last = (*last).max(seq);
        }
        self.emit(WsEvent::Message(message));
    }

    /// A `party_update` of a party not followed yet: it becomes the view.
    fn adopt(&mut self, message: ServerMessage) {
        let ServerMessage::PartyUpdate {
            party,
            seq,
            virtual_ip,
            request_id,
        } = &message
        else {
            return;
        };
        let mut virtual_ips = BTreeMap::new();
        if let (Some(_), Some(ip)) = (request_id, virtual_ip) {
            virtual_ips.insert(self.me.clone(), *ip);
        }
        if let Ok(mut view) = self.view.lock() {
            *view = Some(PartyResponse {
                party: party.clone(),
                virtual_ips,
                seq: *seq,
            });
        }
        self.emit(WsEvent::Message(message));
    }

    /// Folds an event of the followed party into the view: the next one is
    /// applied and emitted, one already seen dropped, one past a gap held.
    fn fold(&mut self, message: ServerMessage) {
        let me = self.me.clone();
        let outcome = {
            let Ok(mut guard) = self.view.lock() else {
                return;
            };
            let Some(view) = guard.as_mut() else {
                return;
            };
            let last = view.seq;
            match &message {
                ServerMessage::PartyUpdate {
                    party,
                    seq,
                    virtual_ip,
                    request_id,
                } => {
                    let ours = request_id.is_some();
                    // A snapshot we asked for is shown even if nothing
                    // changed; an unrequested stale one is not.
                    if *seq < last || (*seq == last && !ours) {
                        Fold::Duplicate
                    } else {
                        if request_id.as_ref() == Some(&json!(RESYNC)) {
                            self.resuming = false;
                        }
                        view.party = party.clone();
                        view.seq = *seq;
                        if let (true, Some(ip)) = (ours, virtual_ip) {
                            view.virtual_ips.insert(me.clone(), *ip);
                        }
                        view.virtual_ips
                            .retain(|peer, _| party.peers.contains_key(peer));
                        Fold::Emit
                    }
                }
                ServerMessage::PartyEnded { seq, .. } if *seq > last => {
                    // The end is final: no need to fill a gap before it.
                    *guard = None;
                    Fold::Emit
                }
                ServerMessage::PeerJoined { peer, seq, .. } if *seq == last + 1 => {
                    view.party.peers.insert(peer.peer_id.clone(), peer.clone());
                    view.seq = *seq;
                    Fold::Emit
                }
                ServerMessage::PeerLeft { peer_id, seq, .. } if *seq == last + 1 => {
                    view.party.peers.remove(peer_id);
                    view.virtual_ips.remove(peer_id);
                    view.seq = *seq;
                    if *peer_id == me {
                        *guard = None;
                    }
                    Fold::Emit
                }
                ServerMessage::PeerJoined { seq, .. } | ServerMessage::PeerLeft { seq, .. }
                    if *seq > last + 1 =>
                {
                    Fold::Gap
                }
                _ => Fold::Duplicate,
            }
        };
        match outcome {
            Fold::Emit => {
                let seen = match (&self.delivered, message.party_seq()) {
                    (Some((delivered, upto)), Some((party_id, seq))) => {
                        party_id == delivered && seq <= *upto
                    }
                    _ => false,
                };
                if !seen {
                    self.emit(WsEvent::Message(message));
                }
            }
            Fold::Duplicate => {}
            Fold::Gap => {
                if let Some((party_id, _)) = message.party_seq() {
                    let party_id = party_id.clone();
                    tracing::debug!(%party_id, "gap in party events; resuming");
                    // Held until the resume (sent from the session loop)
                    // fills the gap.
                    self.hold(party_id, message);
                }
            }
        }
    }

    /// Keeps an event that arrived early until the ones before it are in.
    fn hold(&mut self, party_id: PartyId, message: ServerMessage) {
        let Some((_, seq)) = message.party_seq() else {
            return;
        };
        let pending = match &mut self.pending {
            Some(pending) if pending.party_id == party_id => pending,
            slot => slot.insert(Pending {
                party_id,
                events: BTreeMap::new(),
            }),
        };
        if pending.events.len() >= MAX_PENDING {
            // The resume replays them all anyway.
            pending.events.clear();
        }
        pending.events.insert(seq, message);
    }

    /// Applies the held events that now follow the view; asks for a resume
    /// if some are still past a gap.
    fn drain_pending(&mut self) {
        loop {
            let Some((party_id, last)) = self.tracked() else {
                // Not following the held events' party (it ended, or we
                // left): keep them only while its snapshot is on its way.
                if self.fetching.is_none() {
                    self.pending = None;
                }
                return;
            };
            let Some(pending) = self.pending.as_mut() else {
                return;
            };
            if pending.party_id != party_id {
                if self.fetching.as_ref() != Some(&pending.party_id) {
                    self.pending = None;
                }
                return;
            }
            let Some(entry) = pending.events.first_entry() else {
                self.pending = None;
                return;
            };
            if *entry.key() > last + 1 {
                return;
            }
            let message = entry.remove();
            self.fold(message);
        }
    }

    // ----- HTTP work beside the socket -----

    fn fetch_snapshot(&mut self, party_id: PartyId, refused_resume: Option<String>) {
        let http = self.http.clone();
        self.jobs.spawn(async move {
            let result = http.get_party(&party_id).await;
            Job::Snapshot {
                party_id,
                refused_resume,
                result,
            }
        });
    }

    fn on_job(&mut self, job: Job) {
        match job {
            Job::Snapshot {
                party_id,
                refused_resume,
                result,
            } => self.on_snapshot(party_id, refused_resume, result),
            Job::Signals { party_id, result } => match result {
                Ok(signals) => {
                    for signal in signals {
                        self.emit(WsEvent::Message(ServerMessage::Signal {
                            party_id: signal.party_id,
                            from_peer_id: signal.from_peer_id,
                            to_peer_id: signal.to_peer_id,
                            signal_data: signal.signal_data,
                            sent_at: signal.sent_at,
                        }));
                    }
                }
                Err(error) => {
                    tracing::warn!(%party_id, %error, "cannot fetch the signals queued while disconnected");
                }
            },
        }
    }

    /// A fetched snapshot becomes the view, and is emitted as a
    /// `party_update`, if it is newer than what the events told so far.
    fn on_snapshot(
        &mut self,
        party_id: PartyId,
        refused_resume: Option<String>,
        result: Result<PartyResponse>,
    ) {
        let wanted = self.fetching.as_ref() == Some(&party_id)
            || self.tracked_party().as_ref() == Some(&party_id);
        if self.fetching.as_ref() == Some(&party_id) {
            self.fetching = None;
        }
        if !wanted {
            return;
        }
        match result {
            Ok(snapshot) => {
                let newer = match self.tracked() {
                    Some((tracked, seq)) if tracked == party_id => {
                        snapshot.seq > seq || (refused_resume.is_some() && snapshot.seq == seq)
                    }
                    _ => true,
                };
                if newer {
                    let message = ServerMessage::PartyUpdate {
                        party: snapshot.party.clone(),
                        seq: snapshot.seq,
                        virtual_ip: snapshot.virtual_ips.get(&self.me).copied(),
                        request_id: None,
                    };
                    if let Ok(mut view) = self.view.lock() {
                        *view = Some(snapshot);
                    }
                    self.emit(WsEvent::Message(message));
                }
                self.drain_pending();
            }
            Err(error)
                if matches!(
                    error.status(),
                    Some(StatusCode::NOT_FOUND | StatusCode::FORBIDDEN)
                ) =>
            {
                if self.tracked_party().as_ref() == Some(&party_id)
                    && let Ok(mut view) = self.view.lock()
                {
                    *view = None;
                }
                self.pending = None;
                if let Some(detail) = refused_resume {
                    let detail = error.detail().map_or(detail, str::to_owned);
                    self.emit(WsEvent::PartyLost { party_id, detail });
                }
            }
            Err(error) => {
                tracing::warn!(%party_id, %error, "cannot read the party");
                // Without a snapshot, what was held for it goes out as it came.
                if self.tracked_party().as_ref() != Some(&party_id)
                    && let Some(pending) = self.pending.take()
                {
                    for (_, message) in pending.events {
                        self.pass_on(message);
                    }
                }
            }
        }
    }

    // ----- Delivery to the application -----

    /// Hands `event` to the application without ever waiting for it.
    fn emit(&mut self, event: WsEvent) {
        let covered = self.owe_snapshot && self.of_tracked_party(&event);
        if covered {
            // The snapshot owed to the application will include it.
            self.dropped += 1;
            return;
        }
        let event = if self.outbox.is_empty() && !self.owe_snapshot {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(event)) => event,
                // Nobody listens; the view is still kept for the remote plane.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else {
            event
        };
        self.outbox.push_back(event);
        if self.outbox.len() > self.config.event_buffer.max(1) {
            self.shed();
        }
    }

    fn of_tracked_party(&self, event: &WsEvent) -> bool {
        let WsEvent::Message(message) = event else {
            return false;
        };
        match (message.party_seq(), self.tracked_party()) {
            (Some((party_id, _)), Some(tracked)) => *party_id == tracked,
            _ => false,
        }
    }

    /// The application is too slow: events of the followed party give way
    /// to a snapshot owed, then the oldest of the rest are dropped.
    fn shed(&mut self) {
        let before = self.outbox.len();
        if self.tracked_party().is_some() {
            let mut kept = VecDeque::with_capacity(before);
            for event in std::mem::take(&mut self.outbox) {
                if !self.of_tracked_party(&event) {
                    kept.push_back(event);
                }
            }
            self.outbox = kept;
            if self.outbox.len() < before {
                self.owe_snapshot = true;
            }
        }
        while self.outbox.len() > self.config.event_buffer.max(1) {
            self.outbox.pop_front();
        }
        let shed = before - self.outbox.len();
        self.dropped += shed as u64;
        tracing::warn!(
            shed,
            "the application is not reading socket events; shedding"
        );
    }

    fn has_backlog(&self) -> bool {
        !self.outbox.is_empty() || self.owe_snapshot
    }

    /// The next event waiting for the application: the backlog in order,
    /// then, if events were shed, `Lagged` and a snapshot of the party.
    fn next_backlog(&mut self) -> Option<WsEvent> {
        if self.outbox.is_empty() && (self.owe_snapshot || self.dropped > 0) {
            self.owe_snapshot = false;
            self.outbox.push_back(WsEvent::Lagged {
                dropped: std::mem::take(&mut self.dropped),
            });
            if let Ok(view) = self.view.lock()
                && let Some(view) = view.as_ref()
            {
                self.outbox
                    .push_back(WsEvent::Message(ServerMessage::PartyUpdate {
                        party: view.party.clone(),
                        seq: view.seq,
                        virtual_ip: view.virtual_ips.get(&self.me).copied(),
                        request_id: None,
                    }));
            }
        }
        self.outbox.pop_front()
    }

    /// At the end: waits for the application to take what is left (or to
    /// drop its receiver).
    async fn flush(&mut self) {
        while let Some(event) = self.next_backlog() {
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// What folding an event into the view decided.
enum Fold {
    Emit,
    Duplicate,
    Gap,
}
