//! Signals received on the socket and not yet taken by the application.
//!
//! The server counts a signal delivered once it is written to the socket,
//! so the client owes it to the application until the application takes
//! it, from the event stream or from `poll_signals`, whichever comes
//! first. Each signal waits here under a number; whoever takes it removes
//! it, so it is handed out once.

use std::collections::VecDeque;

use lanrage_proto::{PartyId, Signal};
use parking_lot::Mutex;

/// Signals kept for an application that takes none, however long it runs:
/// past this the oldest is dropped, with a warning.
const MAX_WAITING: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct SignalInbox(Mutex<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    signals: VecDeque<(u64, Signal)>,
}

impl SignalInbox {
    /// Keeps `signal`; the number to take it by.
    pub(crate) fn put(&self, signal: Signal) -> u64 {
        let mut waiting = self.0.lock();
        let id = waiting.next;
        waiting.next += 1;
        waiting.signals.push_back((id, signal));
        if waiting.signals.len() > MAX_WAITING {
            waiting.signals.pop_front();
            tracing::warn!(
                "{MAX_WAITING} signals wait untaken: the application reads neither events nor poll_signals; dropping the oldest"
            );
        }
        id
    }

    /// Takes the signal numbered `id`, unless it was taken already.
    pub(crate) fn take(&self, id: u64) -> Option<Signal> {
        let mut waiting = self.0.lock();
        let at = waiting.signals.iter().position(|(n, _)| *n == id)?;
        waiting.signals.remove(at).map(|(_, signal)| signal)
    }

    /// Takes every signal of `party_id`, oldest first.
    pub(crate) fn take_party(&self, party_id: &PartyId) -> Vec<Signal> {
        let mut waiting = self.0.lock();
        let (taken, kept) = std::mem::take(&mut waiting.signals)
            .into_iter()
            .partition(|(_, signal)| signal.party_id == *party_id);
        waiting.signals = kept;
        taken.into_iter().map(|(_, signal)| signal).collect()
    }

    /// Takes every signal, oldest first.
    pub(crate) fn take_all(&self) -> Vec<Signal> {
        let mut waiting = self.0.lock();
        waiting
            .signals
            .drain(..)
            .map(|(_, signal)| signal)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::{PeerId, SignalData, Timestamp};

    use super::*;

    fn signal(party: &str, n: u64) -> Signal {
        Signal {
            party_id: PartyId::parse(party).expect("valid id"),
            from_peer_id: PeerId::parse("bob").expect("valid id"),
            to_peer_id: PeerId::parse("alice").expect("valid id"),
            signal_data: SignalData::parse(serde_json::json!({ "n": n })).expect("valid"),
            sent_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn a_signal_is_taken_once_whichever_way() {
        let inbox = SignalInbox::default();
        let first = inbox.put(signal("friday", 1));
        let second = inbox.put(signal("friday", 2));
        inbox.put(signal("other", 3));

        assert_eq!(inbox.take(first), Some(signal("friday", 1)));
        assert_eq!(inbox.take(first), None);
        assert_eq!(
            inbox.take_party(&PartyId::parse("friday").expect("valid")),
            [signal("friday", 2)]
        );
        assert_eq!(inbox.take(second), None);
        assert_eq!(inbox.take_all(), [signal("other", 3)]);
        assert!(inbox.take_all().is_empty());
    }

    #[test]
    fn the_inbox_is_bounded() {
        let inbox = SignalInbox::default();
        for n in 0..(MAX_WAITING as u64 + 5) {
            inbox.put(signal("friday", n));
        }
        let kept = inbox.take_all();
        assert_eq!(kept.len(), MAX_WAITING);
        assert_eq!(kept[0], signal("friday", 5));
    }
}
