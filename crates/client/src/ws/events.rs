//! What a [`WsClient`](super::WsClient) tells the application: the state of
//! its socket, and its events in order. Inside, the socket task passes
//! [`WsEvent`]s (protocol messages included); the application reads them
//! as [`Event`]s through [`Events`], which keeps the protocol frames in.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use futures_util::Stream;
use lanrage_proto::{PartyId, PeerId, ServerMessage};
use tokio::sync::{mpsc, watch};

use super::signals::SignalInbox;
use crate::event::{DisconnectReason, ErrorEvent, Event};

/// Where the socket is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// The socket task's events, on their way to [`Events`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WsEvent {
    Connected {
        peer_id: PeerId,
        reconnect: bool,
    },
    /// A server message: a party event (deduplicated and in `seq` order),
    /// or a protocol frame that [`Events`] keeps from the application.
    Message(ServerMessage),
    /// The signal waiting in the inbox under this number.
    Signal(u64),
    Disconnected {
        reason: DisconnectReason,
    },
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        error: ErrorEvent,
    },
    PartyLost {
        party_id: PartyId,
        detail: String,
    },
    Lagged {
        dropped: u64,
    },
    GaveUp {
        attempts: u32,
        error: ErrorEvent,
    },
}

/// The events of a socket: a [`Stream`] of [`Event`]s, or
/// [`Events::recv`].
///
/// The socket never waits for the application: it keeps answering the
/// server's pings and folding party events into its view however slowly
/// events are read. Up to [`WsConfig::event_buffer`](super::WsConfig)
/// events wait here, and as many again inside the client. Beyond that the
/// client sheds: events of the followed party are dropped (the party view
/// stays exact) and, once the application catches up, it receives
/// [`Event::Lagged`] and then one [`Event::PartyUpdated`] with the party
/// as it is, so it is never left on a stale view; connection changes are
/// dropped oldest first and counted in the same [`Event::Lagged`]; signals
/// are never dropped: those shed come right after the [`Event::Lagged`]
/// (unless `poll_signals` took them meanwhile).
///
/// Dropping this stream is fine: party events are then no longer delivered,
/// and signals wait for
/// [`ControlPlane::poll_signals`](crate::ControlPlane::poll_signals).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<WsEvent>,
    signals: Arc<SignalInbox>,
    ready: VecDeque<Event>,
}

impl Events {
    pub(super) fn new(rx: mpsc::Receiver<WsEvent>, signals: Arc<SignalInbox>) -> Self {
        Self {
            rx,
            signals,
            ready: VecDeque::new(),
        }
    }

    /// The next event; `None` once the socket is closed or gave up and
    /// every event (and every signal not taken otherwise) was read.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(event) => self.absorb(event),
                None => {
                    let left = self.signals.take_all();
                    if left.is_empty() {
                        return Poll::Ready(None);
                    }
                    self.ready.extend(left.into_iter().map(Event::Signal));
                }
            }
        }
    }

    /// Turns what the task sent into what the application reads.
    fn absorb(&mut self, event: WsEvent) {
        let event = match event {
            WsEvent::Message(message) => match application_event(message) {
                Some(event) => event,
                None => return,
            },
            // Gone if `poll_signals` took it first.
            WsEvent::Signal(id) => match self.signals.take(id) {
                Some(signal) => Event::Signal(signal),
                None => return,
            },
            WsEvent::Lagged { dropped } => {
                self.ready.push_back(Event::Lagged { dropped });
                // Signals shed on the way come now: the inbox kept them.
                let shed = self.signals.take_all();
                self.ready.extend(shed.into_iter().map(Event::Signal));
                return;
            }
            WsEvent::Connected { peer_id, reconnect } => Event::Connected { peer_id, reconnect },
            WsEvent::Disconnected { reason } => Event::Disconnected { reason },
            WsEvent::Reconnecting {
                attempt,
                retry_in,
                error,
            } => Event::Reconnecting {
                attempt,
                retry_in,
                error,
            },
            WsEvent::PartyLost { party_id, detail } => Event::PartyLost { party_id, detail },
            WsEvent::GaveUp { attempts, error } => Event::GaveUp { attempts, error },
        };
        self.ready.push_back(event);
    }
}

/// The application's event of a server message; `None` for protocol
/// frames (authentication, acknowledgements, errors of the client's own
/// requests), which the client handles itself.
fn application_event(message: ServerMessage) -> Option<Event> {
    Some(match message {
        ServerMessage::PartyUpdate {
            party,
            seq,
            virtual_ip,
            ..
        } => Event::PartyUpdated {
            party,
            seq,
            virtual_ip,
        },
        ServerMessage::PeerJoined {
            party_id,
            peer,
            seq,
        } => Event::PeerJoined {
            party_id,
            peer,
            seq,
        },
        ServerMessage::PeerLeft {
            party_id,
            peer_id,
            reason,
            seq,
        } => Event::PeerLeft {
            party_id,
            peer_id,
            reason,
            seq,
        },
        ServerMessage::HostChanged {
            party_id,
            old_host_id,
            new_host_id,
            reason,
            host_epoch,
            seq,
        } => Event::HostChanged {
            party_id,
            old_host_id,
            new_host_id,
            reason,
            host_epoch,
            seq,
        },
        ServerMessage::PathPlan {
            party_id,
            pairs,
            seq,
        } => Event::PathPlan {
            party_id,
            pairs,
            seq,
        },
        ServerMessage::RelayRecommendation {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            seq,
        } => Event::RelayRecommended {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            seq,
        },
        ServerMessage::InviteRevoked {
            party_id,
            nameplate,
            reason,
            seq,
        } => Event::InviteRevoked {
            party_id,
            nameplate,
            reason,
            seq,
        },
        ServerMessage::PartySettings {
            party_id,
            settings,
            seq,
        } => Event::SettingsChanged {
            party_id,
            settings,
            seq,
        },
        ServerMessage::PartyEnded {
            party_id,
            reason,
            seq,
        } => Event::PartyEnded {
            party_id,
            reason,
            seq,
        },
        ServerMessage::Error { message, .. } => {
            tracing::warn!(%message, "the control server reported an error on the socket");
            return None;
        }
        // Signals reach the application through the inbox; the rest are
        // the protocol's own.
        ServerMessage::Signal { .. } | ServerMessage::AuthOk { .. } | ServerMessage::Ack { .. } => {
            return None;
        }
    })
}

impl Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_event(cx)
    }
}

/// Every change of a socket's [`WsState`], from
/// [`WsClient::state_changes`](super::WsClient::state_changes).
#[derive(Debug, Clone)]
pub struct StateChanges(pub(super) watch::Receiver<WsState>);

impl StateChanges {
    /// The state now.
    pub fn current(&self) -> WsState {
        self.0.borrow().clone()
    }

    /// Waits for the next change and returns the new state; `None` once
    /// the socket's task is gone (the state stays what it last was).
    pub async fn changed(&mut self) -> Option<WsState> {
        self.0.changed().await.ok()?;
        Some(self.0.borrow_and_update().clone())
    }
}
