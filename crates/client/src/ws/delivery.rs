//! Events on their way to the application, which may read slowly or not at
//! all: the socket task never waits for it. Up to the channel's capacity
//! wait in the channel, as many again in a backlog here; beyond that the
//! backlog is shed, as [`Events`](super::Events) documents.

use std::collections::VecDeque;

use lanrage_proto::{PartyId, ServerMessage};
use tokio::sync::mpsc::{self, OwnedPermit, error::SendError, error::TrySendError};

use super::events::WsEvent;

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

    /// Events wait in the backlog, or the reader is owed a `Lagged` (and a
    /// snapshot).
    pub(super) fn has_backlog(&self) -> bool {
        !self.outbox.is_empty() || self.owes()
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
            // Nobody will read again: nothing is owed to anyone.
            Err(_) => {
                self.outbox.clear();
                self.dropped = 0;
                self.owe_snapshot = false;
            }
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

    /// Events were shed since the reader last caught up.
    fn owes(&self) -> bool {
        self.owe_snapshot || self.dropped > 0
    }

    /// The next event waiting for the application: the backlog in order,
    /// then, if events were shed, `Lagged` and a snapshot of the party.
    fn next(&mut self, party: impl FnOnce() -> Option<ServerMessage>) -> Option<WsEvent> {
        if self.outbox.is_empty() && self.owes() {
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::ws::fixtures::{joined, party, party_id, update};

    /// An event of no party, told apart by `label`.
    fn other(label: &str) -> WsEvent {
        WsEvent::Disconnected {
            reason: crate::event::DisconnectReason::ClosedByServer {
                code: None,
                reason: label.into(),
            },
        }
    }

    fn of_party(seq: u64) -> WsEvent {
        WsEvent::Message(joined("bob", seq))
    }

    /// A delivery into a channel of `capacity`, with a backlog of as many.
    fn delivery(capacity: usize) -> (Delivery, mpsc::Receiver<WsEvent>) {
        let (events, rx) = mpsc::channel(capacity);
        (Delivery::new(events, capacity), rx)
    }

    /// What a reader that now catches up reads: the channel, then the
    /// backlog, with `party` as the followed party's snapshot.
    fn catch_up(
        delivery: &mut Delivery,
        rx: &mut mpsc::Receiver<WsEvent>,
        party: Option<ServerMessage>,
    ) -> Vec<WsEvent> {
        let mut read = Vec::new();
        loop {
            while let Ok(event) = rx.try_recv() {
                read.push(event);
            }
            if !delivery.has_backlog() {
                return read;
            }
            let room = delivery
                .room()
                .now_or_never()
                .expect("the channel has room");
            delivery.deliver(room, || party.clone());
        }
    }

    #[test]
    fn a_reader_that_keeps_up_gets_events_straight_through_the_channel() {
        let (mut delivery, mut rx) = delivery(4);

        delivery.emit(other("a"), None);
        delivery.emit(of_party(2), Some(&party_id()));

        assert!(!delivery.has_backlog());
        assert_eq!(rx.try_recv().ok(), Some(other("a")));
        assert_eq!(rx.try_recv().ok(), Some(of_party(2)));
    }

    #[test]
    fn events_of_the_followed_party_give_way_to_a_snapshot_of_it() {
        let (mut delivery, mut rx) = delivery(2);
        let followed = party_id();
        let snapshot = update(&party(5, &["alice", "bob"]));

        delivery.emit(of_party(2), Some(&followed));
        delivery.emit(of_party(3), Some(&followed));
        delivery.emit(other("a"), Some(&followed));
        delivery.emit(of_party(4), Some(&followed));
        delivery.emit(of_party(5), Some(&followed));
        delivery.emit(other("b"), Some(&followed));

        assert_eq!(
            catch_up(&mut delivery, &mut rx, Some(snapshot.clone())),
            [
                of_party(2),
                of_party(3),
                other("a"),
                other("b"),
                WsEvent::Lagged { dropped: 2 },
                WsEvent::Message(snapshot),
            ]
        );
    }

    #[test]
    fn the_backlog_is_bounded_and_sheds_its_oldest_events() {
        let (mut delivery, mut rx) = delivery(2);

        for label in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
            delivery.emit(other(label), None);
        }

        assert_eq!(delivery.outbox.len(), 2);
        assert_eq!(
            catch_up(&mut delivery, &mut rx, None),
            [
                other("0"),
                other("1"),
                other("8"),
                other("9"),
                WsEvent::Lagged { dropped: 6 },
            ]
        );
    }

    #[test]
    fn events_of_a_party_not_followed_are_shed_like_any_other() {
        let (mut delivery, mut rx) = delivery(1);

        delivery.emit(of_party(2), None);
        delivery.emit(of_party(3), None);
        delivery.emit(of_party(4), None);

        assert_eq!(
            catch_up(&mut delivery, &mut rx, None),
            [of_party(2), of_party(4), WsEvent::Lagged { dropped: 1 }]
        );
    }

    #[test]
    fn a_reader_gone_after_falling_behind_leaves_nothing_owed() {
        let (mut delivery, rx) = delivery(1);
        let followed = party_id();
        for seq in 2..6 {
            delivery.emit(of_party(seq), Some(&followed));
        }
        delivery.emit(other("a"), Some(&followed));
        assert!(delivery.has_backlog());
        drop(rx);

        let room = delivery
            .room()
            .now_or_never()
            .expect("no waiting on a closed channel");
        delivery.deliver(room, || None);

        assert!(!delivery.has_backlog());
        delivery.emit(of_party(6), Some(&followed));
        assert!(!delivery.has_backlog());
    }

    #[test]
    fn once_caught_up_events_flow_straight_again() {
        let (mut delivery, mut rx) = delivery(1);
        for label in ["0", "1", "2", "3"] {
            delivery.emit(other(label), None);
        }
        let _ = catch_up(&mut delivery, &mut rx, None);

        delivery.emit(other("4"), None);

        assert!(!delivery.has_backlog());
        assert_eq!(rx.try_recv().ok(), Some(other("4")));
    }

    #[test]
    fn without_a_reader_nothing_is_kept() {
        let (mut delivery, rx) = delivery(2);
        drop(rx);

        for label in ["0", "1", "2", "3"] {
            delivery.emit(other(label), None);
        }

        assert!(!delivery.has_backlog());
    }

    #[tokio::test]
    async fn at_the_end_the_reader_gets_everything_left() {
        let (mut delivery, mut rx) = delivery(2);
        for label in ["0", "1", "2", "3", "4", "5"] {
            delivery.emit(other(label), None);
        }

        let read = async {
            let mut read = Vec::new();
            while read.len() < 5 {
                read.extend(rx.recv().await);
            }
            read
        };
        let ((), read) = tokio::join!(delivery.flush(|| None), read);

        assert_eq!(
            read,
            [
                other("0"),
                other("1"),
                other("4"),
                other("5"),
                WsEvent::Lagged { dropped: 2 },
            ]
        );
        assert!(!delivery.has_backlog());
    }
}
