//! One WebSocket connection: authentication, requests, and the writer that
//! owns the socket's sending half.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use lanrage_proto::{ClientMessage, PartyId, PeerId, ServerMessage};
use tokio::sync::{mpsc, oneshot};

use super::hub::{CloseReason, Control, Outgoing, Slot, encode};
use crate::{
    api::{AppState, error::ApiError},
    metrics::Metrics,
    service::{self, Left, Service},
};

/// What the upgrade request's `Authorization` header said, if it had one.
#[derive(Debug)]
pub enum HeaderAuth {
    None,
    Valid(PeerId),
    Invalid(String),
}

/// Runs a connection until either side closes it.
pub async fn run(socket: WebSocket, state: AppState, header: HeaderAuth, slot: Slot) {
    let config = state.service.config().clone();
    let (sink, mut stream) = socket.split();
    let (queue, queue_rx) = mpsc::channel(config.ws_send_queue);
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
    };

    let authenticated = match header {
        HeaderAuth::Valid(peer_id) => Some((peer_id, None)),
        HeaderAuth::Invalid(message) => {
            session.refuse(message, None);
            None
        }
        HeaderAuth::None => {
            let auth_timeout = Duration::from_secs(config.ws_auth_timeout_secs);
            tokio::select! {
                peer = session.authenticate(&mut stream) => peer,
                () = tokio::time::sleep(auth_timeout) => {
                    session.refuse("not authenticated in time".into(), None);
                    None
                }
                _ = control.closed() => None,
            }
        }
    };

    if let Some((peer_id, request_id)) = authenticated {
        let _registration = state.hub.register(
            &slot,
            peer_id.clone(),
            session.queue.clone(),
            config.ws_max_sockets_per_peer,
        );
        // The socket's stream of party events starts after the party's
        // current seq: events committed before it connected, still on their
        // way through the bus, are not sent. The writer sends auth_ok first,
        // then what the bus delivered since registration.
        let current = match state.service.store().membership(&peer_id).await {
            Ok(current) => current,
            Err(error) => {
                state.service.metrics().count_db_error(&error);
                tracing::warn!(error = %crate::store::error_chain(&error), "cannot read the socket's party");
                None
            }
        };
        let auth_ok = encode(&ServerMessage::AuthOk {
            peer_id: peer_id.clone(),
            request_id,
        });
        let _ = prime.send(Primed { current, auth_ok });
        tracing::debug!(peer_id = %peer_id, "socket authenticated");
        // Ping interval plus slack: a live client has answered a ping by then.
        let idle = ping_every * 2 + Duration::from_secs(5);
        let flood = (config.rate_limit == crate::config::Switch::On).then(|| {
            let rate = std::num::NonZeroU32::new(config.ws_messages_per_sec)
                .unwrap_or(std::num::NonZeroU32::MIN);
            let burst = std::num::NonZeroU32::new(config.ws_messages_per_sec.saturating_mul(2))
                .unwrap_or(rate);
            governor::DefaultDirectRateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            )
        });
        loop {
            tokio::select! {
                frame = tokio::time::timeout(idle, stream.next()) => match frame {
                    Err(_) => {
                        control.close(CloseReason::Unresponsive);
                        break;
                    }
                    Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                        control.close(CloseReason::ClientClosed);
                        break;
                    }
                    Ok(Some(Ok(Message::Text(text)))) => {
                        slot.metrics().ws_messages_in.inc();
                        if flood.as_ref().is_some_and(|limit| limit.check().is_err()) {
                            session.reply(error("rate limit exceeded: slow down", None), None);
                            continue;
                        }
                        session.handle(&peer_id, &text).await;
                    }
                    Ok(Some(Ok(Message::Binary(_)))) => {
                        session.reply(error("binary frames are not supported: send JSON text", None), None);
                    }
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                },
                _ = control.closed() => break,
            }
        }
    }
    control.close(CloseReason::ClientClosed);
    // The writer sends the close frame; give it a moment, then let go.
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    drop(slot);
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
    if let service::Error::Store(store) = &error {
        service.metrics().count_db_error(store);
    }
    ApiError::from(error).detail
}

/// A connection's request side.
struct Session {
    service: Service,
    queue: mpsc::Sender<Outgoing>,
    control: Arc<Control>,
}

impl Session {
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
    async fn authenticate(
        &self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Option<(PeerId, Option<serde_json::Value>)> {
        while let Some(Ok(frame)) = stream.next().await {
            let text = match frame {
                Message::Text(text) => text,
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) => continue,
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
                    return match self.service.authenticate(&token).await {
                        Ok(owner) if owner == peer_id => Some((owner, request_id)),
                        Ok(_) => {
                            self.refuse(
                                format!("the token does not belong to {peer_id}"),
                                request_id,
                            );
                            None
                        }
                        Err(e) => {
                            self.refuse(refusal(&self.service, e), request_id);
                            None
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
        None
    }

    /// Handles one text frame of an authenticated socket.
    async fn handle(&self, caller: &PeerId, text: &str) {
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
                name, host_peer, ..
            } => service
                .create_party(caller, name, host_peer)
                .await
                .map(|joined| self.party_reply(joined, request_id.clone())),
            ClientMessage::JoinParty { party_id, peer, .. } => service
                .join_party(caller, &party_id, peer)
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
        let view = self.service.party_view(caller, party_id).await?;
        let replay_limit = u64::try_from(self.queue.max_capacity() / 2).unwrap_or(u64::MAX);
        // The log holds at most this many of the newest events.
        let kept = self
            .service
            .config()
            .event_log_max_per_party
            .max(service::MIN_EVENT_LOG);
        // A client ahead of the server (a restored database) has nothing
        // that counts: it gets the snapshot.
        let gap = view.seq.checked_sub(after_seq);
        let may_replay = gap.is_some_and(|gap| gap <= replay_limit && gap <= kept);
        // Live events of the party wait in the writer until the replay is
        // queued, so everything goes out in seq order, once.
        self.send(Outgoing::BeginResume {
            party_id: party_id.clone(),
            after_seq: if gap.is_some() { after_seq } else { 0 },
        })
        .await;
        let events = match gap {
            Some(gap) if may_replay && gap > 0 => {
                match self
                    .service
                    .store()
                    .events_after(party_id, after_seq, gap)
                    .await
                {
                    Ok(events) => events,
                    Err(error) => {
                        self.send(Outgoing::EndResume {
                            party_id: party_id.clone(),
                        })
                        .await;
                        return Err(error.into());
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

/// Sends one frame; false when the peer does not take it in time.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    timeout: Duration,
    metrics: &Metrics,
) -> bool {
    let text = matches!(message, Message::Text(_));
    let written = matches!(
        tokio::time::timeout(timeout, sink.send(message)).await,
        Ok(Ok(()))
    );
    if written && text {
        metrics.ws_messages_out.inc();
    }
    written
}

/// Owns the sending half: frames from the queue, pings, and the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    writer: Writer,
) {
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
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    // A write that does not complete in this time means a dead peer.
    let write_timeout = ping_every.max(Duration::from_secs(5));
    let mut pending: std::collections::VecDeque<Outgoing> = std::collections::VecDeque::new();
    let reason = 'outer: loop {
        // Items released by a resume or by authentication go first.
        while let Some(item) = pending.pop_front() {
            match sent.step(item) {
                Step::Send(text, signal) => {
                    if !write(&mut sink, Message::Text(text), write_timeout, &metrics).await {
                        break 'outer CloseReason::Unresponsive;
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
                        && !write(&mut sink, Message::Text(text), write_timeout, &metrics).await
                    {
                        break CloseReason::Unresponsive;
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
                if !write(&mut sink, Message::Ping(Default::default()), write_timeout, &metrics).await {
                    break CloseReason::Unresponsive;
                }
            }
        }
    };
    control.close(reason);
    if !matches!(reason, CloseReason::SlowReader | CloseReason::Unresponsive) {
        // What was queued before the close still goes out (replies to the
        // last requests, an error before a refusal, the events of a
        // shutdown).
        pending.extend(std::iter::from_fn(|| queue.try_recv().ok()));
        while let Some(item) = pending.pop_front() {
            match sent.step(item) {
                Step::Send(text, signal) => {
                    if !write(&mut sink, Message::Text(text), write_timeout, &metrics).await {
                        return;
                    }
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
    let _ = tokio::time::timeout(write_timeout, async {
        let _ = sink.send(close).await;
        let _ = sink.close().await;
    })
    .await;
}
