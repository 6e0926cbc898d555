//! What a [`WsClient`](super::WsClient) tells the application: the state of
//! its socket, and its events in order.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use lanrage_proto::{PartyId, PeerId, ServerMessage};
use tokio::sync::mpsc;

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

/// What a [`WsClient`](super::WsClient) reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// The socket is authenticated (`reconnect` is false the first time).
    Connected { peer_id: PeerId, reconnect: bool },
    /// A server message: a party event (deduplicated and in `seq` order), a
    /// signal (including those queued while the socket was down, fetched
    /// after a reconnect), or the answer to a request sent with
    /// [`WsClient::send`](super::WsClient::send).
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

/// The events of a [`WsClient`](super::WsClient): a [`Stream`], or
/// [`WsEvents::recv`].
///
/// The socket never waits for the application: it keeps answering the
/// server's pings and folding party events into
/// [`WsClient::party`](super::WsClient::party) however slowly events are
/// read. Up to [`WsConfig::event_buffer`](super::WsConfig::event_buffer)
/// events wait here, and as many again inside the client. Beyond that the
/// client sheds: events of the followed party are dropped (the party view
/// stays exact) and, once the application catches up, it receives
/// [`WsEvent::Lagged`] and then one `party_update` with the party as it is,
/// so it is never left on a stale view; other events (signals, answers,
/// connection changes) are dropped oldest first and counted in the same
/// [`WsEvent::Lagged`].
#[derive(Debug)]
pub struct WsEvents {
    rx: mpsc::Receiver<WsEvent>,
}

impl WsEvents {
    pub(super) fn new(rx: mpsc::Receiver<WsEvent>) -> Self {
        Self { rx }
    }

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
