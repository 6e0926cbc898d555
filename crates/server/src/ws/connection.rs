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
    let control = Arc::new(Control::default());
    let ping_every = Duration::from_secs(config.ws_ping_interval_secs);
    let (prime, primed) = oneshot::channel();
    let writer = tokio::spawn(write_loop(
        sink,
        queue_rx,
        primed,
        control.clone(),
        ping_every,
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
            peer_id.clone(),
            session.queue.clone(),
            control.clone(),
            config.ws_max_sockets_per_peer,
        );
        // The socket's stream of party events starts after the party's
        // current seq: events committed before it connected, still on their
        // way through the bus, are not sent.
        let current = match state.service.store().membership(&peer_id).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(error = %crate::store::error_chain(&error), "cannot read the socket's party");
                None
            }
        };
        let _ = prime.send(current);
        // Only now: from auth_ok on, the socket hears of every change.
        session.reply(
            ServerMessage::AuthOk {
                peer_id: peer_id.clone(),
                request_id,
            },
            None,
        );
        tracing::debug!(peer_id = %peer_id, "socket authenticated");
        // Ping interval plus slack: a live client has answered a ping by then.
        let idle = ping_every * 2 + Duration::from_secs(5);
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
                    Ok(Some(Ok(Message::Text(text)))) => session.handle(&peer_id, &text).await,
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
fn refusal(error: service::Error) -> String {
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
        self.control.close(CloseReason::ClientClosed);
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
                            self.refuse(refusal(e), request_id);
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
            self.reply(error(refusal(e), request_id), None);
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
    /// party when the log no longer holds them all.
    async fn resume(
        &self,
        caller: &PeerId,
        party_id: &PartyId,
        after_seq: u64,
        request_id: Option<serde_json::Value>,
    ) -> service::Result<()> {
        let view = self.service.party_view(caller, party_id).await?;
        let events = self
            .service
            .store()
            .events_after(party_id, after_seq)
            .await?;
        let complete = after_seq <= view.seq
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
                let party = event.party_seq().map(|(id, seq)| (id.clone(), seq));
                self.reply(event, party);
            }
            self.reply(ack("resumed", request_id), None);
        } else {
            let virtual_ip = view.virtual_ips.get(caller).copied();
            self.reply(
                ServerMessage::PartyUpdate {
                    party: view.party,
                    seq: view.seq,
                    virtual_ip,
                    request_id,
                },
                Some((party_id.clone(), view.seq)),
            );
        }
        Ok(())
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

/// Owns the sending half: frames from the queue, pings, and the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut primed: oneshot::Receiver<Option<(PartyId, u64)>>,
    control: Arc<Control>,
    ping_every: Duration,
) {
    // Highest seq sent per party: live events already sent as a reply or a
    // replay (or older than the socket) are not sent.
    let mut sent: HashMap<PartyId, u64> = HashMap::new();
    // Events wait here until the socket knows where its party stood.
    let mut held: Option<Vec<Outgoing>> = Some(Vec::new());
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    // A write that does not complete in this time means a dead peer.
    let write_timeout = ping_every.max(Duration::from_secs(5));
    let reason = loop {
        tokio::select! {
            biased;
            reason = control.closed() => break reason,
            start = &mut primed, if held.is_some() => {
                if let Ok(Some((party_id, seq))) = start {
                    sent.insert(party_id, seq);
                }
                for item in held.take().into_iter().flatten() {
                    let Some(text) = admit(&mut sent, item) else { continue };
                    if !matches!(tokio::time::timeout(write_timeout, sink.send(Message::Text(text))).await, Ok(Ok(()))) {
                        control.close(CloseReason::Unresponsive);
                        return;
                    }
                }
            }
            item = queue.recv() => {
                let Some(item) = item else { break CloseReason::ClientClosed };
                let item = match (&mut held, item) {
                    (Some(held), event @ Outgoing::Event { .. }) => {
                        held.push(event);
                        continue;
                    }
                    (_, item) => item,
                };
                let Some(text) = admit(&mut sent, item) else { continue };
                match tokio::time::timeout(write_timeout, sink.send(Message::Text(text))).await {
                    Ok(Ok(())) => {}
                    _ => {
                        control.close(CloseReason::Unresponsive);
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if !matches!(tokio::time::timeout(write_timeout, sink.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    control.close(CloseReason::Unresponsive);
                    return;
                }
            }
        }
    };
    if reason != CloseReason::SlowReader {
        // What was queued before the close still goes out (replies to the
        // last requests, the events of a shutdown).
        while let Ok(item) = queue.try_recv() {
            let Some(text) = admit(&mut sent, item) else {
                continue;
            };
            if !matches!(
                tokio::time::timeout(write_timeout, sink.send(Message::Text(text))).await,
                Ok(Ok(()))
            ) {
                return;
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

/// The frame to send for `item`, or none for a party event already sent.
fn admit(sent: &mut HashMap<PartyId, u64>, item: Outgoing) -> Option<Utf8Bytes> {
    match item {
        Outgoing::Reply { text, party } => {
            if let Some((party_id, seq)) = party {
                let last = sent.entry(party_id).or_default();
                *last = (*last).max(seq);
            }
            Some(text)
        }
        Outgoing::Event { text, party: None } => Some(text),
        Outgoing::Event {
            text,
            party: Some((party_id, seq)),
        } => {
            let last = sent.entry(party_id).or_default();
            if seq <= *last {
                return None;
            }
            *last = seq;
            Some(text)
        }
    }
}
