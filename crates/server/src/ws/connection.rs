//! One WebSocket connection: authentication, requests, and the writer that
//! owns the socket's sending half.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use lanrage_proto::{ClientMessage, PartyExtras, PartyId, PeerId, ServerMessage};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::hub::{CloseReason, Control, Outgoing, Slot, encode};
use crate::{
    config::Config,
    metrics::Metrics,
    net::{ClientKey, Connection},
    service::{self, Grant, Left, LookupKeys, Service},
};

/// How long a socket the server closes gets for its close frame (and the
/// client's answer) before its connection is aborted.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A socket's next request is read only once its send queue holds at most
/// this many bytes: a client that asks (for snapshots, say) without reading
/// the answers holds that much of the server's memory, not a full queue,
/// and one whose backlog does not drain within [`CLOSE_GRACE`] is a slow
/// reader.
const REQUEST_BACKLOG: usize = 4 * 1024;

/// What the upgrade request's `Authorization` header said, if it had one.
#[derive(Debug)]
pub enum HeaderAuth {
    None,
    Valid(Grant),
    Invalid(String),
}

/// Ends the TCP connection under a socket at once: pending reads and writes
/// fail, and the socket closes with a reset, so the kernel drops what it
/// still buffers for a client that does not read. (None: a router served
/// without the connection layer, as in unit tests.)
#[derive(Debug, Clone, Default)]
pub struct Abort(pub Option<Connection>);

impl Abort {
    fn abort(&self) {
        if let Some(connection) = &self.0 {
            connection.abort();
        }
    }
}

/// A socket's reading half.
type Reader = SplitStream<WebSocket>;

/// Runs a connection until either side closes it.
pub async fn run(
    socket: WebSocket,
    state: super::Channel,
    header: HeaderAuth,
    mut slot: Slot,
    client: Option<ClientKey>,
    abort: Abort,
) {
    let config = state.service.config();
    let (sink, mut stream) = socket.split();
    let (queue, queue_rx) =
        super::queue::channel(config.ws_send_queue, super::queue::MAX_QUEUED_BYTES);
    let control = slot.control.clone();
    let ping_every = Duration::from_secs(config.ws_ping_interval_secs);
    let (prime, primed) = oneshot::channel();
    let writer = tokio::spawn(write_loop(
        sink,
        queue_rx,
        Writer {
            primed,
            control: control.clone(),
            ping_every,
            held_max: config.ws_send_queue,
            delivered: slot.delivered(),
            metrics: slot.metrics(),
        },
    ));
    let session = Session {
        service: state.service.clone(),
        queue,
        control: control.clone(),
        client: client.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
    };

    let authenticated = match header {
        HeaderAuth::Valid(grant) => Some((grant, None)),
        HeaderAuth::Invalid(message) => {
            session.refuse(message, None);
            None
        }
        HeaderAuth::None => {
            let auth_timeout = Duration::from_secs(config.ws_auth_timeout_secs);
            tokio::select! {
                outcome = session.authenticate(&mut stream) => match outcome {
                    Ok(granted) => Some(granted),
                    Err(reason) => {
                        control.close(reason);
                        None
                    }
                },
                () = tokio::time::sleep(auth_timeout) => {
                    session.reply(error("not authenticated in time", None), None);
                    control.close(CloseReason::AuthTimeout);
                    None
                }
                _ = control.closed() => None,
            }
        }
    };

    if let Some((grant, request_id)) = authenticated {
        // The server-wide cap counts members only: the slot is taken now,
        // not at the upgrade, so sockets that never authenticate cannot
        // lock members out.
        if slot.authenticate(config.ws_max_sockets) {
            serve(
                &session,
                &state,
                &slot,
                &mut stream,
                config,
                grant,
                request_id,
                prime,
            )
            .await;
        } else {
            session.reply(
                error(
                    "too many open sockets on this server; try again shortly",
                    request_id,
                ),
                None,
            );
            control.close(CloseReason::Full);
        }
    }
    control.close(CloseReason::ClientClosed);
    drop(session);
    // The writer stops writing as soon as the socket is closing, and gives
    // the close frame CLOSE_GRACE at most, so this wait is bounded.
    let end = match writer.await {
        Ok(end) => end,
        Err(_) => WriterEnd {
            close_written: false,
            deadline: Instant::now(),
        },
    };
    let reason = control.reason().unwrap_or(CloseReason::ClientClosed);
    // A close the server started is complete when the client answers it;
    // until then (within the grace) its frames are read and ignored.
    let answered = reason == CloseReason::ClientClosed
        || (end.close_written
            && tokio::time::timeout_at(end.deadline, close_answer(&mut stream))
                .await
                .unwrap_or(false));
    // A close the client started ends in an orderly close: tungstenite has
    // answered it, and a reset could discard that answer.
    if reason != CloseReason::ClientClosed
        && (!end.close_written || (reason.abandons_queue() && !answered))
    {
        abort.abort();
    }
    drop(stream);
    drop(slot);
}

/// Serves an authenticated socket until it closes, its token ends, or it
/// stops answering pings.
#[allow(clippy::too_many_arguments)]
async fn serve(
    session: &Session,
    state: &super::Channel,
    slot: &Slot,
    stream: &mut Reader,
    config: &Config,
    grant: Grant,
    request_id: Option<serde_json::Value>,
    prime: oneshot::Sender<Primed>,
) {
    let control = &session.control;
    let peer_id = grant.peer_id.clone();
    let _registration = state.hub.register(
        slot,
        peer_id.clone(),
        grant.token_hash(),
        session.queue.clone(),
        config.ws_max_sockets_per_peer,
    );
    // Present (host authority) for as long as the socket is open.
    let _present = session.service.present_while_open(&peer_id);
    let lookup = LookupKeys::new(&session.client, grant.token_hash());
    // The socket's stream of party events starts after the party's
    // current seq: events committed before it connected, still on their
    // way through the bus, are not sent. The writer sends auth_ok first,
    // then what the bus delivered since registration.
    let current = match state.service.membership(&peer_id).await {
        Ok(current) => current,
        Err(error) => {
            state.service.count_db_error(&error);
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "cannot read the socket's party");
            None
        }
    };
    let auth_ok = encode(&ServerMessage::AuthOk {
        peer_id: peer_id.clone(),
        request_id,
    });
    let _ = prime.send(Primed { current, auth_ok });
    tracing::debug!(peer_id = %peer_id, "socket authenticated");
    let ping_every = Duration::from_secs(config.ws_ping_interval_secs);
    let flood = Flood::new(config);
    // The authority ends at the token's expiry instant, not at the next
    // message: a timer, raced against everything the socket does.
    let expiry = tokio::time::sleep(grant.remaining());
    tokio::pin!(expiry);
    // Each ping interval: is the token still there, and did the client
    // answer the pings? A revocation closes the socket as its event
    // arrives (the hub); this check catches one whose event was lost while
    // the database's notification feed was down.
    let mut check = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_pong = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = control.closed() => break,
            () = &mut expiry => {
                control.close(CloseReason::TokenExpired);
                break;
            }
            _ = check.tick() => {
                if last_pong.elapsed() >= ping_every * 2 {
                    control.close(CloseReason::Unresponsive);
                    break;
                }
                match state.service.still_granted(&grant).await {
                    Ok(true) => {}
                    Ok(false) => {
                        control.close(if grant.expired() {
                            CloseReason::TokenExpired
                        } else {
                            CloseReason::TokenRevoked
                        });
                        break;
                    }
                    // A database hiccup is no proof of revocation: the
                    // next check decides.
                    Err(error) => {
                        state.service.count_db_error(&error);
                        tracing::warn!(%peer_id, error = %crate::telemetry::error_chain(&error), "cannot recheck a socket's token");
                    }
                }
            }
            frame = stream.next() => match frame_or_end(frame) {
                Err(reason) => {
                    control.close(reason);
                    break;
                }
                Ok(Message::Text(text)) => {
                    slot.metrics().ws_messages_in.inc();
                    if let Err(reason) = session.backlog_drained().await {
                        control.close(reason);
                        break;
                    }
                    // The timer may not have fired yet at the very instant.
                    if grant.expired() {
                        control.close(CloseReason::TokenExpired);
                        break;
                    }
                    match flood.check() {
                        Pace::Ok => session.handle(&peer_id, &lookup, &text).await,
                        Pace::Limited => session.reply(error("rate limit exceeded: slow down", None), None),
                        Pace::Flood => {
                            control.close(CloseReason::Flood);
                            break;
                        }
                    }
                }
                Ok(Message::Binary(_)) => {
                    slot.metrics().ws_messages_in.inc();
                    if let Err(reason) = session.backlog_drained().await {
                        control.close(reason);
                        break;
                    }
                    // Refused frames count against the rate too, or a client
                    // could make the server answer at wire speed.
                    match flood.check() {
                        Pace::Ok => session.reply(error("binary frames are not supported: send JSON text", None), None),
                        Pace::Limited => {}
                        Pace::Flood => {
                            control.close(CloseReason::Flood);
                            break;
                        }
                    }
                }
                Ok(Message::Pong(_)) => last_pong = Instant::now(),
                Ok(Message::Ping(_) | Message::Close(_)) => {}
            },
        }
    }
}

/// A socket's message rate: over it a message is refused with an `error`;
/// a client that keeps sending far over it (more refused messages than
/// four times the rate allows) is flooding and is closed. `None` when rate
/// limiting is off.
struct Flood(
    Option<(
        governor::DefaultDirectRateLimiter,
        governor::DefaultDirectRateLimiter,
    )>,
);

enum Pace {
    Ok,
    Limited,
    Flood,
}

impl Flood {
    fn new(config: &Config) -> Self {
        use std::num::NonZeroU32;

        if config.rate_limit != crate::config::Switch::On {
            return Self(None);
        }
        let limiter = |burst_factor: u32| {
            let rate = NonZeroU32::new(config.ws_messages_per_sec).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(config.ws_messages_per_sec.saturating_mul(burst_factor))
                .unwrap_or(rate);
            governor::DefaultDirectRateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            )
        };
        Self(Some((limiter(2), limiter(4))))
    }

    fn check(&self) -> Pace {
        match &self.0 {
            None => Pace::Ok,
            Some((rate, _)) if rate.check().is_ok() => Pace::Ok,
            Some((_, patience)) if patience.check().is_ok() => Pace::Limited,
            Some(_) => Pace::Flood,
        }
    }
}

/// A frame read from the socket, or why the socket ends.
fn frame_or_end(read: Option<Result<Message, axum::Error>>) -> Result<Message, CloseReason> {
    match read {
        None | Some(Ok(Message::Close(_))) => Err(CloseReason::ClientClosed),
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(read_failure(&error)),
    }
}

/// The close a failed read calls for (RFC 6455 section 7.4.1).
fn read_failure(error: &axum::Error) -> CloseReason {
    use tungstenite::error::{Error as E, ProtocolError as P};

    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(error) = current.downcast_ref::<E>() {
            return match error {
                E::Utf8(_) => CloseReason::InvalidUtf8,
                E::Capacity(_) => CloseReason::TooBig,
                // The connection went away: nothing to tell it.
                E::Protocol(P::ResetWithoutClosingHandshake) => CloseReason::ClientClosed,
                E::Protocol(_) | E::AttackAttempt => CloseReason::ProtocolViolation,
                _ => CloseReason::ClientClosed,
            };
        }
        cause = current.source();
    }
    CloseReason::ClientClosed
}

/// Reads, ignoring all, until the client answers a close: true if it did.
async fn close_answer(stream: &mut Reader) -> bool {
    loop {
        match stream.next().await {
            Some(Ok(Message::Close(_))) | None => return true,
            Some(Ok(_)) => {}
            Some(Err(_)) => return false,
        }
    }
}

fn error(message: impl Into<String>, request_id: Option<serde_json::Value>) -> ServerMessage {
    ServerMessage::Error {
        message: message.into(),
        request_id,
    }
}

fn ack(status: &str, request_id: Option<serde_json::Value>) -> ServerMessage {
    ServerMessage::Ack {
        status: status.to_owned(),
        request_id,
    }
}

/// The message a refused request gets: the same words as over HTTP.
fn refusal(service: &Service, error: service::Error) -> String {
    service.count_db_error(&error);
    error.client_detail().into_owned()
}

/// A connection's request side.
struct Session {
    service: Service,
    queue: super::queue::Sender,
    control: Arc<Control>,
    /// The client's address as rate limits key it (IPv6 per /64).
    client: String,
}

impl Session {
    /// Waits until the socket's backlog is at most [`REQUEST_BACKLOG`];
    /// `Err`: why the socket ends instead.
    async fn backlog_drained(&self) -> Result<(), CloseReason> {
        tokio::select! {
            biased;
            reason = self.control.closed() => Err(reason),
            drained = tokio::time::timeout(CLOSE_GRACE, self.queue.drained_to(REQUEST_BACKLOG)) => match drained {
                Ok(true) => Ok(()),
                Ok(false) => Err(CloseReason::ClientClosed),
                Err(_) => Err(CloseReason::SlowReader),
            },
        }
    }

    /// Queues a reply; a socket too slow to take its own replies is closed.
    fn reply(&self, message: ServerMessage, party: Option<(PartyId, u64)>) {
        let Some(text) = encode(&message) else { return };
        if self
            .queue
            .try_send(Outgoing::Reply { text, party })
            .is_err()
        {
            self.control.close(CloseReason::SlowReader);
        }
    }

    /// Sends an error and closes the socket.
    fn refuse(&self, message: String, request_id: Option<serde_json::Value>) {
        self.reply(error(message, request_id), None);
        self.control.close(CloseReason::Refused);
    }

    /// Reads frames until one authenticates; anything else gets an error.
    /// `Err`: why the socket ends (a refusal has queued its `error`).
    async fn authenticate(
        &self,
        stream: &mut Reader,
    ) -> Result<(Grant, Option<serde_json::Value>), CloseReason> {
        loop {
            let text = match frame_or_end(stream.next().await)? {
                Message::Text(text) => text,
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
                Message::Binary(_) => {
                    self.reply(
                        error("binary frames are not supported: send JSON text", None),
                        None,
                    );
                    continue;
                }
            };
            match parse(&text) {
                Ok((
                    ClientMessage::Auth {
                        peer_id,
                        token,
                        request_id,
                    },
                    _,
                )) => {
                    return match self.service.grant(&token).await {
                        // No peer_id (or null) means the token's own peer.
                        Ok(grant) if peer_id.as_ref().is_none_or(|p| *p == grant.peer_id) => {
                            Ok((grant, request_id))
                        }
                        Ok(_) => {
                            let claimed = peer_id.map(|p| p.to_string()).unwrap_or_default();
                            self.refuse(
                                format!("the token does not belong to {claimed}"),
                                request_id,
                            );
                            Err(CloseReason::Refused)
                        }
                        Err(e) => {
                            self.refuse(refusal(&self.service, e), request_id);
                            Err(CloseReason::Refused)
                        }
                    };
                }
                Ok((_, request_id)) => {
                    self.reply(
                        error(
                            "authenticate first: send {\"type\":\"auth\",\"peer_id\",\"token\"}",
                            request_id,
                        ),
                        None,
                    );
                }
                Err((message, request_id)) => self.reply(error(message, request_id), None),
            }
        }
    }

    /// Handles one text frame of an authenticated socket.
    async fn handle(&self, caller: &PeerId, lookup: &LookupKeys, text: &str) {
        let (message, request_id) = match parse(text) {
            Ok(parsed) => parsed,
            Err((message, request_id)) => return self.reply(error(message, request_id), None),
        };
        let service = &self.service;
        let outcome = match message {
            ClientMessage::Auth { .. } => {
                Err(service::Error::Invalid("already authenticated".into()))
            }
            ClientMessage::RegisterParty {
                name,
                host_peer,
                settings,
                ..
            } => service
                .create_party(caller, name, host_peer, settings)
                .await
                .map(|joined| self.party_reply(joined, request_id.clone())),
            ClientMessage::TransferHost {
                party_id,
                new_host_id,
                expected_epoch,
                ..
            } => service
                .transfer_host(caller, &party_id, &new_host_id, expected_epoch)
                .await
                .map(|done| {
                    let reply = ServerMessage::PartyUpdate {
                        party: done.party,
                        seq: done.seq,
                        virtual_ip: None,
                        request_id: request_id.clone(),
                        snapshot: false,
                        extras: PartyExtras {
                            host_epoch: Some(done.host_epoch),
                            ..PartyExtras::default()
                        },
                    };
                    // Not in place of an event: the change made two
                    // (`host_changed`, then `party_update`), and a reply
                    // counted as the second would stop the first.
                    self.reply(reply, None);
                }),
            ClientMessage::Kick {
                party_id,
                peer_id,
                ban,
                ..
            } => service
                .kick(caller, &party_id, &peer_id, ban)
                .await
                .map(|_| self.reply(ack("removed", request_id.clone()), None)),
            ClientMessage::JoinParty { party_id, peer, .. } => service
                .join_party(caller, &party_id, peer)
                .await
                .map(|joined| self.party_reply(joined, request_id.clone())),
            ClientMessage::JoinByCode { code, peer, .. } => service
                .join_by_code(caller, lookup, &code, peer)
                .await
                .map(|joined| self.party_reply(joined, request_id.clone())),
            ClientMessage::LeaveParty {
                party_id, peer_id, ..
            } => service
                .leave_party(caller, &party_id, &peer_id)
                .await
                .map(|left| {
                    let status = match left {
                        Left::Left => "left",
                        Left::PartyDeleted => "party_deleted",
                    };
                    self.reply(ack(status, request_id.clone()), None);
                }),
            ClientMessage::Heartbeat {
                party_id, peer_id, ..
            } => service
                .heartbeat(caller, &party_id, &peer_id)
                .await
                .map(|()| self.reply(ack("ok", request_id.clone()), None)),
            ClientMessage::Signal {
                party_id,
                from_peer_id,
                to_peer_id,
                signal_data,
                ..
            } => {
                if from_peer_id != *caller {
                    Err(service::Error::Forbidden(format!(
                        "authenticated as {caller}, cannot send signals as {from_peer_id}"
                    )))
                } else {
                    service
                        .send_signal(caller, &party_id, to_peer_id, signal_data)
                        .await
                        .map(|_| self.reply(ack("sent", request_id.clone()), None))
                }
            }
            ClientMessage::Resume {
                party_id,
                after_seq,
                ..
            } => {
                self.resume(caller, &party_id, after_seq, request_id.clone())
                    .await
            }
        };
        if let Err(e) = outcome {
            self.reply(error(refusal(&self.service, e), request_id), None);
        }
    }

    fn party_reply(&self, joined: service::Joined, request_id: Option<serde_json::Value>) {
        let party = (joined.party.party_id.clone(), joined.seq);
        self.reply(
            ServerMessage::PartyUpdate {
                party: joined.party,
                seq: joined.seq,
                virtual_ip: Some(joined.virtual_ip),
                request_id,
                snapshot: false,
                extras: joined.extras,
            },
            Some(party),
        );
    }

    /// Replays the party's events after `after_seq`, or sends the current
    /// party when the log no longer holds them all or there are more than
    /// the socket's queue could take at once (half of it: the replay
    /// limit). The choice is made from the sequence numbers before any event
    /// is read, and at most the replay limit of events is read, so a resume
    /// costs the same however long the party's history.
    async fn resume(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        after_seq: u64,
        request_id: Option<serde_json::Value>,
    ) -> service::Result<()> {
        let mut view = self.service.party_view(caller, party_id).await?;
        // Live events of the party wait in the writer from here until the
        // replay is queued, so everything goes out in seq order, once. A
        // client ahead of the server (a restored database) has nothing that
        // counts: it gets the snapshot.
        self.send(Outgoing::BeginResume {
            party_id: party_id.clone(),
            after_seq: if view.seq >= after_seq { after_seq } else { 0 },
        })
        .await;
        // Events committed while the view was read went out live, before
        // the resume began: the answer must reach past them.
        let moved_on = !matches!(
            self.service.membership(caller).await,
            Ok(Some((ref id, seq))) if id == party_id && seq == view.seq
        );
        if moved_on {
            match self.service.party_view(caller, party_id).await {
                Ok(newer) => view = newer,
                Err(error) => {
                    self.send(Outgoing::EndResume {
                        party_id: party_id.clone(),
                    })
                    .await;
                    return Err(error);
                }
            }
        }
        let replay_limit = u64::try_from(self.queue.max_capacity() / 2).unwrap_or(u64::MAX);
        // The log holds at most this many of the newest events.
        let kept = self
            .service
            .config()
            .event_log_max_per_party
            .max(service::MIN_EVENT_LOG);
        let gap = view.seq.checked_sub(after_seq);
        let may_replay = gap.is_some_and(|gap| gap <= replay_limit && gap <= kept);
        let events = match gap {
            Some(gap) if may_replay && gap > 0 => {
                match self.service.events_after(party_id, after_seq, gap).await {
                    Ok(events) => events,
                    Err(error) => {
                        self.send(Outgoing::EndResume {
                            party_id: party_id.clone(),
                        })
                        .await;
                        return Err(error);
                    }
                }
            }
            _ => Vec::new(),
        };
        // The log may still have lost some of them (pruned by age, or a
        // party that ended): a replay must be whole, or it is a snapshot.
        let complete = may_replay
            && events
                .iter()
                .zip(after_seq + 1..)
                .all(|(event, expected)| event.party_seq().map(|(_, seq)| seq) == Some(expected))
            && events
                .last()
                .and_then(|e| e.party_seq())
                .map_or(after_seq, |(_, seq)| seq)
                >= view.seq;
        if complete {
            for event in events {
                if let (Some(text), Some((id, seq))) = (encode(&event), event.party_seq()) {
                    self.send(Outgoing::Catchup {
                        text,
                        party: (id.clone(), seq),
                    })
                    .await;
                }
            }
            self.send(Outgoing::EndResume {
                party_id: party_id.clone(),
            })
            .await;
            self.reply(ack("resumed", request_id), None);
        } else {
            let virtual_ip = view.virtual_ips.get(caller).copied();
            let snapshot = ServerMessage::PartyUpdate {
                party: view.party,
                seq: view.seq,
                virtual_ip,
                request_id,
                snapshot: true,
                extras: view.extras,
            };
            if let Some(text) = encode(&snapshot) {
                self.send(Outgoing::Catchup {
                    text,
                    party: (party_id.clone(), view.seq),
                })
                .await;
            }
            self.send(Outgoing::EndResume {
                party_id: party_id.clone(),
            })
            .await;
        }
        Ok(())
    }

    /// Queues an item, waiting for room (a resume's replay is bounded by
    /// half the queue, so this waits only on a reader that is draining).
    async fn send(&self, item: Outgoing) {
        if tokio::time::timeout(Duration::from_secs(10), self.queue.send(item))
            .await
            .is_err()
        {
            self.control.close(CloseReason::SlowReader);
        }
    }
}

/// Parses a client frame; on failure, the error text and any `request_id`.
fn parse(
    text: &str,
) -> Result<(ClientMessage, Option<serde_json::Value>), (String, Option<serde_json::Value>)> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (format!("invalid JSON: {e}"), None))?;
    let request_id = value.get("request_id").cloned();
    if !value.is_object() || value.get("type").is_none() {
        return Err((
            "a message is a JSON object with a \"type\"".into(),
            request_id,
        ));
    }
    match serde_path_to_error::deserialize(value) {
        Ok(message) => Ok((message, request_id)),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if path == "." {
                inner.to_string()
            } else {
                format!("invalid field `{path}`: {inner}")
            };
            Err((message, request_id))
        }
    }
}

/// What the writer learns once the socket is authenticated.
struct Primed {
    /// The peer's party and its seq at registration.
    current: Option<(PartyId, u64)>,
    auth_ok: Option<Utf8Bytes>,
}

/// The writer's settings and connections to the rest.
struct Writer {
    primed: oneshot::Receiver<Primed>,
    control: Arc<Control>,
    ping_every: Duration,
    /// Most live events kept while authenticating or resuming.
    held_max: usize,
    delivered: mpsc::UnboundedSender<i64>,
    metrics: Arc<Metrics>,
}

/// The writer's view of what the client has.
#[derive(Default)]
struct Sent {
    /// Highest seq sent per party.
    seq: HashMap<PartyId, u64>,
    /// Parties being resumed: their live events wait here.
    resuming: HashMap<PartyId, Vec<Outgoing>>,
}

/// What to do with one queued item.
enum Step {
    Send(Utf8Bytes, Option<i64>),
    Skip,
    /// Items held back until a resume ends, now due.
    Release(Vec<Outgoing>),
}

impl Sent {
    fn newer(&mut self, (party_id, seq): &(PartyId, u64)) -> bool {
        let last = self.seq.entry(party_id.clone()).or_default();
        if *seq <= *last {
            return false;
        }
        *last = *seq;
        true
    }

    fn step(&mut self, item: Outgoing) -> Step {
        match item {
            Outgoing::Reply { text, party } => {
                if let Some((party_id, seq)) = party {
                    let last = self.seq.entry(party_id).or_default();
                    *last = (*last).max(seq);
                }
                Step::Send(text, None)
            }
            Outgoing::Event {
                text,
                party: None,
                signal,
            } => Step::Send(text, signal),
            Outgoing::Event {
                text,
                party: Some(party),
                signal,
            } => {
                if let Some(held) = self.resuming.get_mut(&party.0) {
                    held.push(Outgoing::Event {
                        text,
                        party: Some(party),
                        signal,
                    });
                    return Step::Skip;
                }
                if self.newer(&party) {
                    Step::Send(text, signal)
                } else {
                    Step::Skip
                }
            }
            Outgoing::Catchup { text, party } => {
                if self.newer(&party) {
                    Step::Send(text, None)
                } else {
                    Step::Skip
                }
            }
            Outgoing::BeginResume {
                party_id,
                after_seq,
            } => {
                // The client has the party up to after_seq, whatever this
                // socket sent before.
                self.seq.insert(party_id.clone(), after_seq);
                self.resuming.entry(party_id).or_default();
                Step::Skip
            }
            Outgoing::EndResume { party_id } => {
                Step::Release(self.resuming.remove(&party_id).unwrap_or_default())
            }
        }
    }

    fn held(&self) -> usize {
        self.resuming.values().map(Vec::len).sum()
    }
}

/// Sends one frame, racing the close signal: a socket being closed (its
/// queue full, its token ended) stops waiting on a blocked write at once.
/// `Err`: why the socket ends; a write that does not complete within
/// `stall` means a client that does not read.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    stall: Duration,
    control: &Control,
    metrics: &Metrics,
) -> Result<(), CloseReason> {
    let text = matches!(message, Message::Text(_));
    tokio::select! {
        biased;
        reason = control.closed() => Err(reason),
        sent = tokio::time::timeout(stall, sink.send(message)) => match sent {
            Ok(Ok(())) => {
                if text {
                    metrics.ws_messages_out.inc();
                }
                Ok(())
            }
            Ok(Err(_)) => Err(CloseReason::ClientClosed),
            Err(_) => Err(CloseReason::SlowReader),
        },
    }
}

/// How the writer ended.
struct WriterEnd {
    /// The close frame was handed to the connection.
    close_written: bool,
    /// Until when the client may answer the close.
    deadline: Instant,
}

/// Owns the sending half: frames from the queue, pings, and the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: super::queue::Receiver,
    writer: Writer,
) -> WriterEnd {
    let Writer {
        mut primed,
        control,
        ping_every,
        held_max,
        delivered,
        metrics,
    } = writer;
    let mut sent = Sent::default();
    // Until authenticated, live events wait (they may predate the socket).
    let mut before_auth: Option<Vec<Outgoing>> = Some(Vec::new());
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    // A write that does not complete in this time means a client that
    // does not read.
    let stall = ping_every.max(CLOSE_GRACE);
    let mut pending: std::collections::VecDeque<Outgoing> = std::collections::VecDeque::new();
    let reason = 'outer: loop {
        // Items released by a resume or by authentication go first.
        while let Some(item) = pending.pop_front() {
            match sent.step(item) {
                Step::Send(text, signal) => {
                    if let Err(reason) =
                        write(&mut sink, Message::Text(text), stall, &control, &metrics).await
                    {
                        break 'outer reason;
                    }
                    if let Some(id) = signal {
                        let _ = delivered.send(id);
                    }
                }
                Step::Skip => {}
                Step::Release(items) => pending.extend(items),
            }
        }
        if before_auth.as_ref().map_or(0, Vec::len) + sent.held() > held_max {
            break CloseReason::SlowReader;
        }
        tokio::select! {
            biased;
            reason = control.closed() => break reason,
            start = &mut primed, if before_auth.is_some() => {
                let waiting = before_auth.take().unwrap_or_default();
                if let Ok(Primed { current, auth_ok }) = start {
                    if let Some((party_id, seq)) = current {
                        sent.seq.insert(party_id, seq);
                    }
                    if let Some(text) = auth_ok
                        && let Err(reason) = write(&mut sink, Message::Text(text), stall, &control, &metrics).await
                    {
                        break reason;
                    }
                }
                pending.extend(waiting);
            }
            item = queue.recv() => {
                let Some(item) = item else { break CloseReason::ClientClosed };
                match (&mut before_auth, item) {
                    (Some(waiting), event @ Outgoing::Event { .. }) => waiting.push(event),
                    (_, item) => pending.push_back(item),
                }
            }
            _ = ping.tick() => {
                if let Err(reason) = write(&mut sink, Message::Ping(Default::default()), stall, &control, &metrics).await {
                    break reason;
                }
            }
        }
    };
    control.close(reason);
    // The first reason given wins, whoever gave it.
    let reason = control.reason().unwrap_or(reason);
    // Counted here, once per socket, however many noticed.
    if reason == CloseReason::SlowReader {
        metrics.ws_slow_readers_dropped.inc();
    }
    metrics
        .ws_closes
        .get_or_create(&vec![("reason", reason.label().to_owned())])
        .inc();
    let deadline = Instant::now() + CLOSE_GRACE;
    let farewell = async {
        if reason == CloseReason::ClientClosed {
            // tungstenite queued the answer to the client's close frame;
            // nothing may follow it, and a flush writes it.
            sink.flush().await.ok()?;
            return Some(());
        }
        if reason.ends_authority() {
            // Nothing more reaches a socket whose token ended: only why.
            let (_, why) = reason.frame();
            if let Some(text) = encode(&error(why, None)) {
                sink.send(Message::Text(text)).await.ok()?;
                metrics.ws_messages_out.inc();
            }
        } else if !reason.abandons_queue() {
            // What was queued before the close still goes out (replies to
            // the last requests, an error before a refusal, the events of a
            // shutdown).
            pending.extend(std::iter::from_fn(|| queue.try_recv()));
            while let Some(item) = pending.pop_front() {
                match sent.step(item) {
                    Step::Send(text, signal) => {
                        sink.send(Message::Text(text)).await.ok()?;
                        metrics.ws_messages_out.inc();
                        if let Some(id) = signal {
                            let _ = delivered.send(id);
                        }
                    }
                    Step::Skip => {}
                    Step::Release(items) => pending.extend(items),
                }
            }
        }
        let (code, why) = reason.frame();
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(why),
        }));
        sink.send(close).await.ok()?;
        Some(())
    };
    let close_written = matches!(
        tokio::time::timeout_at(deadline, farewell).await,
        Ok(Some(()))
    );
    WriterEnd {
        close_written,
        deadline,
    }
}
