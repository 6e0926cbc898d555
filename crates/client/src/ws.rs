//! The remote control plane's real-time channel: a WebSocket to `/ws` that
//! authenticates, turns server frames into typed events, and reconnects by an
//! explicit state machine, resuming the party so that no change is lost.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{SinkExt, Stream, StreamExt};
use lanrage_proto::{ClientMessage, PartyId, PartyResponse, PeerId, ServerMessage};
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
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
    /// considered dead. The server pings every 20 s by default.
    pub idle_timeout: Duration,
    /// Spacing of reconnect attempts, and how many are made in a row before
    /// the client gives up (and the remote plane falls back to local).
    pub reconnect: Backoff,
    /// Events buffered for a slow reader; beyond it the socket waits.
    pub event_buffer: usize,
}

impl Default for WsConfig {
    /// 10 s to connect and to authenticate, 75 s of silence tolerated, and
    /// 10 reconnect attempts from 0.5 s to 30 s apart (about 2.5 minutes).
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
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
    /// signal, or the answer to a request sent with [`WsClient::send`].
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
    /// Every reconnect attempt failed; the client stopped. A
    /// [`RemoteControlPlane`](crate::RemoteControlPlane) now serves from its
    /// local plane.
    GaveUp { attempts: u32, error: String },
}

/// The events of a [`WsClient`]: a [`Stream`], or [`WsEvents::recv`].
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
/// (renewing the token through the [`HttpClient`] if the server refuses it)
/// and sends `resume {party_id, after_seq}` for the party it follows, so the
/// server replays what was missed, or sends the current party. Events with a
/// `seq` already seen are dropped; a gap triggers a resume.
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
        let url = ws_url(http.server_url())?;
        let (socket, peer_id) = open(&http, &url, &config).await?;
        let (events_tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let (commands_tx, commands) = mpsc::channel(64);
        let (state_tx, state) = watch::channel(WsState::Connected);
        let view = Arc::new(Mutex::new(None));
        let _ = events_tx
            .send(WsEvent::Connected {
                peer_id,
                reconnect: false,
            })
            .await;
        let task = Task {
            http,
            url: url.clone(),
            config,
            events: events_tx,
            commands,
            state: state_tx,
            view: view.clone(),
        };
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

    /// Closes the socket with a close frame and stops the task.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
        }
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
        peer_id: peer_id.clone(),
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

/// The socket's task: the state machine of connections.
struct Task {
    http: HttpClient,
    url: String,
    config: WsConfig,
    events: mpsc::Sender<WsEvent>,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<WsState>,
    view: Arc<Mutex<Option<PartyResponse>>>,
}

impl Task {
    async fn run(mut self, mut socket: Socket) {
        loop {
            let reason = match self.session(&mut socket).await {
                SessionEnd::Closed => {
                    self.state.send_replace(WsState::Closed);
                    return;
                }
                SessionEnd::Lost(reason) => reason,
            };
            tracing::info!(%reason, url = %self.url, "socket lost; reconnecting");
            self.emit(WsEvent::Disconnected {
                reason: reason.clone(),
            })
            .await;
            let mut error = reason;
            let mut attempt = 0;
            socket = loop {
                attempt += 1;
                if attempt > self.config.reconnect.max_attempts {
                    let attempts = attempt - 1;
                    tracing::warn!(attempts, %error, url = %self.url, "control server unreachable; giving up the socket");
                    self.state.send_replace(WsState::GaveUp { attempts });
                    self.emit(WsEvent::GaveUp { attempts, error }).await;
                    return;
                }
                let retry_in = self.config.reconnect.delay(attempt);
                self.state
                    .send_replace(WsState::Waiting { attempt, retry_in });
                self.emit(WsEvent::Reconnecting {
                    attempt,
                    retry_in,
                    error: error.clone(),
                })
                .await;
                if self.wait(retry_in).await {
                    self.state.send_replace(WsState::Closed);
                    return;
                }
                self.state.send_replace(WsState::Connecting { attempt });
                match open(&self.http, &self.url, &self.config).await {
                    Ok((socket, peer_id)) => {
                        self.emit(WsEvent::Connected {
                            peer_id,
                            reconnect: true,
                        })
                        .await;
                        break socket;
                    }
                    Err(e) => error = error_chain(&e),
                }
            };
            self.state.send_replace(WsState::Connected);
            if let Some(party) = self.tracked()
                && let Err(e) = self.resume(&mut socket, &party.0, party.1).await
            {
                tracing::debug!(error = %e, "resume not sent");
            }
        }
    }

    /// Sleeps `delay` while handling commands; true when closed meanwhile.
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
                    Some(Command::Track(party)) => self.set_view(party),
                    Some(Command::Send(message)) => {
                        tracing::warn!(?message, "socket down: request dropped");
                    }
                },
            }
        }
    }

    async fn session(&mut self, socket: &mut Socket) -> SessionEnd {
        let idle = self.config.idle_timeout;
        loop {
            tokio::select! {
                frame = tokio::time::timeout(idle, socket.next()) => match frame {
                    Err(_) => return SessionEnd::Lost(format!("nothing from the server for {idle:?}")),
                    Ok(None) => return SessionEnd::Lost("the connection closed".into()),
                    Ok(Some(Err(e))) => return SessionEnd::Lost(e.to_string()),
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        return SessionEnd::Lost(match frame {
                            Some(f) => format!("the server closed the socket ({} {})", f.code, f.reason),
                            None => "the server closed the socket".into(),
                        });
                    }
                    Ok(Some(Ok(Message::Text(text)))) => {
                        if let Err(e) = self.on_text(socket, text.as_str()).await {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                    // Pings are answered by tungstenite itself.
                    Ok(Some(Ok(_))) => {}
                },
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
                        let (party_id, seq) = (party.party.party_id.clone(), party.seq);
                        self.set_view(party);
                        if let Err(e) = self.resume(socket, &party_id, seq).await {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                },
            }
        }
    }

    async fn resume(
        &self,
        socket: &mut Socket,
        party_id: &PartyId,
        after_seq: u64,
    ) -> std::result::Result<(), tokio_tungstenite::tungstenite::Error> {
        let message = ClientMessage::Resume {
            party_id: party_id.clone(),
            after_seq,
            request_id: Some(json!(RESYNC)),
        };
        socket.send(Message::text(encode(&message))).await
    }

    fn tracked(&self) -> Option<(PartyId, u64)> {
        let view = self.view.lock().ok()?;
        view.as_ref().map(|v| (v.party.party_id.clone(), v.seq))
    }

    fn set_view(&self, party: PartyResponse) {
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
    }

    async fn on_text(
        &mut self,
        socket: &mut Socket,
        text: &str,
    ) -> std::result::Result<(), tokio_tungstenite::tungstenite::Error> {
        let Some(message) = decode(text) else {
            return Ok(());
        };
        let me = self.http.config().peer_id.clone();
        match self.apply(&message, &me) {
            Applied::Emit => self.emit(WsEvent::Message(message)).await,
            Applied::Duplicate => {}
            Applied::Gap {
                party_id,
                after_seq,
            } => {
                tracing::debug!(%party_id, after_seq, "gap in party events; resuming");
                self.resume(socket, &party_id, after_seq).await?;
            }
            Applied::ResyncRefused { detail } => self.resync_over_http(detail).await,
            Applied::NewParty { party_id } => {
                // We moved into a party we hold no snapshot of: fetch one.
                match self.http.get_party(&party_id).await {
                    Ok(view) => self.set_view(view),
                    Err(error) => tracing::warn!(%party_id, %error, "cannot read the new party"),
                }
                self.emit(WsEvent::Message(message)).await;
            }
        }
        Ok(())
    }

    /// Folds `message` into the party view and says what to do with it.
    fn apply(&self, message: &ServerMessage, me: &PeerId) -> Applied {
        let Ok(mut guard) = self.view.lock() else {
            return Applied::Emit;
        };
        let view = &mut *guard;
        match message {
            ServerMessage::PartyUpdate {
                party,
                seq,
                virtual_ip,
                request_id,
            } => {
                let ours = request_id.is_some();
                match view.as_mut() {
                    Some(v) if v.party.party_id == party.party_id => {
                        // A snapshot we asked for is shown even if nothing
                        // changed; an unrequested stale one is not.
                        if *seq < v.seq || (*seq == v.seq && !ours) {
                            return Applied::Duplicate;
                        }
                        v.party = party.clone();
                        v.seq = *seq;
                        if let (true, Some(ip)) = (ours, virtual_ip) {
                            v.virtual_ips.insert(me.clone(), *ip);
                        }
                        v.virtual_ips
                            .retain(|peer, _| party.peers.contains_key(peer));
                    }
                    _ => {
                        let mut virtual_ips = std::collections::BTreeMap::new();
                        if let (true, Some(ip)) = (ours, virtual_ip) {
                            virtual_ips.insert(me.clone(), *ip);
                        }
                        *view = Some(PartyResponse {
                            party: party.clone(),
                            virtual_ips,
                            seq: *seq,
                        });
                    }
                }
                Applied::Emit
            }
            ServerMessage::PeerJoined {
                party_id,
                peer,
                seq,
            } => match view.as_mut() {
                Some(v) if v.party.party_id == *party_id => match order(v.seq, *seq) {
                    Order::Duplicate => Applied::Duplicate,
                    Order::Gap => Applied::Gap {
                        party_id: party_id.clone(),
                        after_seq: v.seq,
                    },
                    Order::Next => {
                        v.party.peers.insert(peer.peer_id.clone(), peer.clone());
                        v.seq = *seq;
                        Applied::Emit
                    }
                },
                _ if peer.peer_id == *me => Applied::NewParty {
                    party_id: party_id.clone(),
                },
                _ => Applied::Emit,
            },
            ServerMessage::PeerLeft {
                party_id,
                peer_id,
                seq,
            } => match view.as_mut() {
                Some(v) if v.party.party_id == *party_id => match order(v.seq, *seq) {
                    Order::Duplicate => Applied::Duplicate,
                    Order::Gap => Applied::Gap {
                        party_id: party_id.clone(),
                        after_seq: v.seq,
                    },
                    Order::Next => {
                        v.party.peers.remove(peer_id);
                        v.virtual_ips.remove(peer_id);
                        v.seq = *seq;
                        if peer_id == me {
                            *view = None;
                        }
                        Applied::Emit
                    }
                },
                _ => Applied::Emit,
            },
            ServerMessage::PartyEnded { party_id, seq, .. } => match view.as_ref() {
                Some(v) if v.party.party_id == *party_id => {
                    if *seq <= v.seq {
                        return Applied::Duplicate;
                    }
                    // The end is final: no need to fill a gap before it.
                    *view = None;
                    Applied::Emit
                }
                _ => Applied::Emit,
            },
            ServerMessage::Error {
                message,
                request_id: Some(id),
            } if *id == json!(RESYNC) => Applied::ResyncRefused {
                detail: message.clone(),
            },
            _ => Applied::Emit,
        }
    }
}

impl Task {
    async fn emit(&self, event: WsEvent) {
        // A dropped receiver means nobody listens; the socket goes on
        // (it still keeps the party view for the remote plane).
        let _ = self.events.send(event).await;
    }

    /// The server would not resume the party: read it over HTTP instead.
    /// Its snapshot is emitted as a `party_update`; if it is gone, or we are
    /// no longer in it, that is said with [`WsEvent::PartyLost`].
    async fn resync_over_http(&self, detail: String) {
        let Some((party_id, _)) = self.tracked() else {
            return;
        };
        match self.http.get_party(&party_id).await {
            Ok(snapshot) => {
                let me = &self.http.config().peer_id;
                let message = ServerMessage::PartyUpdate {
                    party: snapshot.party.clone(),
                    seq: snapshot.seq,
                    virtual_ip: snapshot.virtual_ips.get(me).copied(),
                    request_id: None,
                };
                if let Ok(mut view) = self.view.lock() {
                    *view = Some(snapshot);
                }
                self.emit(WsEvent::Message(message)).await;
            }
            Err(error)
                if matches!(
                    error.status(),
                    Some(StatusCode::NOT_FOUND | StatusCode::FORBIDDEN)
                ) =>
            {
                if let Ok(mut view) = self.view.lock() {
                    *view = None;
                }
                let detail = error.detail().map_or(detail, str::to_owned);
                self.emit(WsEvent::PartyLost { party_id, detail }).await;
            }
            Err(error) => {
                tracing::warn!(%party_id, %error, "cannot resynchronise the party");
            }
        }
    }
}

/// What folding a message into the view decided.
enum Applied {
    Emit,
    Duplicate,
    Gap { party_id: PartyId, after_seq: u64 },
    ResyncRefused { detail: String },
    NewParty { party_id: PartyId },
}

enum Order {
    Duplicate,
    Next,
    Gap,
}

fn order(last: u64, seq: u64) -> Order {
    if seq <= last {
        Order::Duplicate
    } else if seq == last + 1 {
        Order::Next
    } else {
        Order::Gap
    }
}
