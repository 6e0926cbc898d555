//! Events on their way to the application, which may read slowly or not at
//! all: the socket task never waits for it. Up to the channel's capacity
//! wait in the channel, as many again in a backlog here; beyond that the
//! backlog is shed, as [`WsEvents`](super::WsEvents) documents.

use std::collections::VecDeque;

use lanrage_proto::{PartyId, ServerMessage};
use tokio::sync::mpsc::{self, OwnedPermit, error::SendError, error::TrySendError};

use super::WsEvent;

/// The channel to the application and the backlog behind it.
#[derive(Debug)]
pub(super) struct Delivery {
    events: mpsc::Sender<WsEvent>,
    /// How many events the backlog holds before it sheds.
    limit: usize,
    /// Events the application has not taken yet, beyond the channel.
    outbox: VecDeque<WsEvent>,
    /// Events shed since the application last caught up.
    dropped: u64,
    /// Events of the followed party were shed: a snapshot is owed.
    owe_snapshot: bool,
}

impl Delivery {
    /// Delivers into `events`, keeping at most `limit` events (at least 1)
    /// behind it.
    pub(super) fn new(events: mpsc::Sender<WsEvent>, limit: usize) -> Self {
        Self {
            events,
            limit: limit.max(1),
            outbox: VecDeque::new(),
            dropped: 0,
            owe_snapshot: false,
        }
    }

    /// Hands `event` to the application without ever waiting for it.
    /// `followed` is the party followed when the event was produced.
    pub(super) fn emit(&mut self, event: WsEvent, followed: Option<&PartyId>) {
        if self.owe_snapshot && concerns(&event, followed) {
            // The snapshot owed to the application will include it.
            self.dropped += 1;
            return;
        }
        let event = if self.outbox.is_empty() && !self.owe_snapshot {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Full(event)) => event,
                // Nobody listens; the view is still kept for the remote plane.
                Err(TrySendError::Closed(_)) => return,
            }
        } else {
            event
        };
        self.outbox.push_back(event);
        if self.outbox.len() > self.limit {
            self.shed(followed);
        }
    }

    /// Events wait in the backlog, or a snapshot is owed.
    pub(super) fn has_backlog(&self) -> bool {
        !self.outbox.is_empty() || self.owe_snapshot
    }

    /// Resolves when the channel has room for one more event; owns what it
    /// needs, so the task can wait on it beside its other work.
    pub(super) fn room(
        &self,
    ) -> impl Future<Output = Result<OwnedPermit<WsEvent>, SendError<()>>> + use<> {
        self.events.clone().reserve_owned()
    }

    /// Moves the next waiting event into the room [`Delivery::room`] found.
    /// `party` gives the followed party as a `party_update`, sent after a
    /// [`WsEvent::Lagged`] when events were shed.
    pub(super) fn deliver(
        &mut self,
        room: Result<OwnedPermit<WsEvent>, SendError<()>>,
        party: impl FnOnce() -> Option<ServerMessage>,
    ) {
        match room {
            Ok(permit) => {
                if let Some(event) = self.next(party) {
                    permit.send(event);
                }
            }
            Err(_) => self.outbox.clear(),
        }
    }

    /// At the end: waits for the application to take what is left (or to
    /// drop its receiver).
    pub(super) async fn flush(&mut self, party: impl Fn() -> Option<ServerMessage>) {
        while let Some(event) = self.next(&party) {
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }

    /// The application is too slow: events of the followed party give way
    /// to a snapshot owed, then the oldest of the rest are dropped.
    fn shed(&mut self, followed: Option<&PartyId>) {
        let before = self.outbox.len();
        if followed.is_some() {
            self.outbox.retain(|event| !concerns(event, followed));
            if self.outbox.len() < before {
                self.owe_snapshot = true;
            }
        }
        while self.outbox.len() > self.limit {
            self.outbox.pop_front();
        }
        let shed = before - self.outbox.len();
        self.dropped += shed as u64;
        tracing::warn!(
            shed,
            "the application is not reading socket events; shedding"
        );
    }

    /// The next event waiting for the application: the backlog in order,
    /// then, if events were shed, `Lagged` and a snapshot of the party.
    fn next(&mut self, party: impl FnOnce() -> Option<ServerMessage>) -> Option<WsEvent> {
        if self.outbox.is_empty() && (self.owe_snapshot || self.dropped > 0) {
            self.owe_snapshot = false;
            self.outbox.push_back(WsEvent::Lagged {
                dropped: std::mem::take(&mut self.dropped),
            });
            if let Some(update) = party() {
                self.outbox.push_back(WsEvent::Message(update));
            }
        }
        self.outbox.pop_front()
    }
}

/// Whether `event` is an event of `party`.
fn concerns(event: &WsEvent, party: Option<&PartyId>) -> bool {
    let WsEvent::Message(message) = event else {
        return false;
    };
    match (message.party_seq(), party) {
        (Some((of, _)), Some(party)) => of == party,
        _ => false,
    }
}
