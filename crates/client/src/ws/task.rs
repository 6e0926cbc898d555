//! The socket's task: the state machine of connections. It owns the socket
//! and drives the other units: server frames go to the [`Tracker`], what
//! the tracker and the side jobs produce goes to the [`Delivery`], the HTTP
//! work the tracker asks for runs beside it as jobs, and a lost socket is
//! reopened with backoff.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lanrage_proto::{PartyId, PartyResponse, PeerId, ServerMessage, Signal};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{self, Message};

use super::{
    Events, WsConfig, WsState,
    connect::{Socket, decode, open, send, socket_error},
    delivery::Delivery,
    events::WsEvent,
    signals::SignalInbox,
    tracker::{Output, Tracker},
};
use crate::{
    ControlPlane,
    error::{ClientError, Result},
    event::{DisconnectReason, ErrorEvent},
    http::HttpClient,
};

/// What a [`WsClient`](super::WsClient) asks of its task.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per party followed, through a channel of a few"
)]
pub(super) enum Command {
    Track(PartyResponse),
    Close(oneshot::Sender<()>),
}

/// The client's ends of a running task.
pub(super) struct Running {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) state: watch::Receiver<WsState>,
    pub(super) view: watch::Receiver<Option<PartyResponse>>,
    pub(super) events: Events,
    pub(super) signals: Arc<SignalInbox>,
    pub(super) task: JoinHandle<()>,
}

/// Starts the task on `socket`, just opened and authenticated as `peer_id`,
/// following `party` if one is given.
pub(super) fn spawn(
    http: HttpClient,
    url: String,
    config: WsConfig,
    party: Option<PartyResponse>,
    socket: Socket,
    peer_id: PeerId,
) -> Running {
    let (events_tx, events) = mpsc::channel(config.event_buffer.max(1));
    let (commands_tx, commands) = mpsc::channel(64);
    let (state_tx, state) = watch::channel(WsState::Connected);
    let (view_tx, view) = watch::channel(party.clone());
    let signals = Arc::new(SignalInbox::default());
    let mut task = Task {
        signals: signals.clone(),
        tracker: Tracker::new(peer_id.clone(), party),
        delivery: Delivery::new(events_tx, config.event_buffer),
        http,
        url,
        config,
        commands,
        state: state_tx,
        view: view_tx,
        jobs: JoinSet::new(),
    };
    task.emit(WsEvent::Connected {
        peer_id,
        reconnect: false,
    });
    Running {
        commands: commands_tx,
        state,
        view,
        events: Events::new(events, signals.clone()),
        signals,
        task: tokio::spawn(task.run(socket)),
    }
}

enum SessionEnd {
    Lost(DisconnectReason),
    Closed,
}

/// HTTP work done beside the socket task, and its result.
enum Job {
    /// A snapshot the tracker asked for.
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

struct Task {
    http: HttpClient,
    url: String,
    config: WsConfig,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<WsState>,
    /// The tracker's view, published for [`WsClient::party`](super::WsClient::party).
    view: watch::Sender<Option<PartyResponse>>,
    tracker: Tracker,
    delivery: Delivery,
    /// Signals received and not yet taken by the application.
    signals: Arc<SignalInbox>,
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
            self.tracker.disconnected();
            self.emit(WsEvent::Disconnected {
                reason: reason.clone(),
            });
            let mut error = ErrorEvent::new(ClientError::Disconnected(reason));
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
                    Err(e) => error = ErrorEvent::new(e),
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
    ) -> std::result::Result<(), tungstenite::Error> {
        if reconnected && let Some(party_id) = self.tracker.followed_party().cloned() {
            let http = self.http.clone();
            self.jobs.spawn(async move {
                let result = http.poll_signals(&party_id).await;
                Job::Signals { party_id, result }
            });
        }
        match self.tracker.resume() {
            Some(resume) => send(socket, &resume).await,
            None => Ok(()),
        }
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
                    Some(Command::Track(party)) => {
                        self.tracker.track(party);
                        self.settle();
                    }
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    if let Ok(job) = done {
                        self.on_job(job);
                    }
                }
                room = self.delivery.room(), if self.delivery.has_backlog() => {
                    self.delivery.deliver(room, || self.tracker.current_update());
                }
            }
        }
    }

    async fn session(&mut self, socket: &mut Socket) -> SessionEnd {
        let idle = self.config.idle_timeout;
        let mut last_frame = Instant::now();
        loop {
            if let Some(resume) = self.tracker.fill_gap()
                && let Err(e) = send(socket, &resume).await
            {
                return self.failed(e);
            }
            tokio::select! {
                () = tokio::time::sleep_until(last_frame + idle) => {
                    return SessionEnd::Lost(DisconnectReason::Silent { after: idle });
                }
                frame = socket.next() => {
                    last_frame = Instant::now();
                    match frame {
                        None => return SessionEnd::Lost(DisconnectReason::ConnectionClosed),
                        Some(Err(e)) => return self.failed(e),
                        Some(Ok(Message::Close(frame))) => {
                            return SessionEnd::Lost(match frame {
                                Some(f) => DisconnectReason::ClosedByServer {
                                    code: Some(f.code.into()),
                                    reason: f.reason.to_string(),
                                },
                                None => DisconnectReason::ClosedByServer { code: None, reason: String::new() },
                            });
                        }
                        Some(Ok(Message::Text(text))) => match decode(text.as_str()) {
                            Some(ServerMessage::Signal { party_id, from_peer_id, to_peer_id, signal_data, sent_at }) => {
                                self.receive_signal(Signal { party_id, from_peer_id, to_peer_id, signal_data, sent_at });
                            }
                            Some(message) => {
                                self.tracker.on_message(message);
                                self.settle();
                            }
                            None => {}
                        },
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
                    Some(Command::Track(party)) => {
                        self.tracker.track(party);
                        self.settle();
                        if let Some(resume) = self.tracker.resume()
                            && let Err(e) = send(socket, &resume).await
                        {
                            return self.failed(e);
                        }
                    }
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    if let Ok(job) = done {
                        self.on_job(job);
                    }
                }
                room = self.delivery.room(), if self.delivery.has_backlog() => {
                    self.delivery.deliver(room, || self.tracker.current_update());
                }
            }
        }
    }

    fn on_job(&mut self, job: Job) {
        match job {
            Job::Snapshot {
                party_id,
                refused_resume,
                result,
            } => {
                self.tracker.on_snapshot(party_id, refused_resume, result);
                self.settle();
            }
            Job::Signals { party_id, result } => match result {
                Ok(signals) => {
                    for signal in signals {
                        self.receive_signal(signal);
                    }
                }
                Err(error) => {
                    tracing::warn!(%party_id, %error, "cannot fetch the signals queued while disconnected");
                }
            },
        }
    }

    /// A signal for the application: kept until it takes it, one way or
    /// the other, and announced on the event stream.
    fn receive_signal(&mut self, signal: Signal) {
        let id = self.signals.put(signal);
        self.emit(WsEvent::Signal(id));
    }

    /// The socket's session ends on a failed read or write.
    fn failed(&self, error: tungstenite::Error) -> SessionEnd {
        SessionEnd::Lost(DisconnectReason::Failed(ErrorEvent::new(socket_error(
            &self.url, error,
        ))))
    }

    /// Carries out what the tracker asked for, and publishes its view if it
    /// changed.
    fn settle(&mut self) {
        while let Some(output) = self.tracker.poll_output() {
            match output {
                Output::Event { event, followed } => self.delivery.emit(event, followed.as_ref()),
                Output::FetchSnapshot {
                    party_id,
                    refused_resume,
                } => {
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
            }
        }
        if self.tracker.take_view_changed() {
            self.view.send_replace(self.tracker.view().cloned());
        }
    }

    /// An event of the task's own (connections, fetched signals).
    fn emit(&mut self, event: WsEvent) {
        self.delivery.emit(event, self.tracker.followed_party());
    }

    async fn flush(&mut self) {
        self.delivery.flush(|| self.tracker.current_update()).await;
    }
}
