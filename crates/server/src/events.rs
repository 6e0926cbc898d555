//! The one place state changes are announced: the service layer publishes
//! each committed change here, and whoever delivers them (the WebSocket hub)
//! subscribes.

use std::sync::{Arc, OnceLock};

use lanrage_proto::{PeerId, ServerMessage, Signal};
use tokio::sync::broadcast;

/// How many events a slow subscriber may lag behind before it loses some.
const CAPACITY: usize = 4096;

/// A committed change.
#[derive(Debug, Clone)]
pub enum Event {
    /// A party event (`peer_joined`, `peer_left`, `party_update`,
    /// `party_ended`) and the peers it concerns: the members before and
    /// after the change.
    Party {
        message: Arc<ServerMessage>,
        recipients: Arc<[PeerId]>,
    },
    /// A signal for one member; `id` is its row in the signal queue.
    Signal { signal: Arc<Signal>, id: i64 },
    /// Tokens of `peer_id` were revoked (their rows deleted): caches drop
    /// them and sockets authenticated with them close.
    Revoked { peer_id: PeerId, tokens: Revoked },
    /// The feed of every instance's events stopped (the database's
    /// notification connection dropped): until the next [`Event::Resync`]
    /// other instances' changes may go unannounced.
    Interrupted,
    /// Events may have been lost (the database's notification connection
    /// dropped): every socket should get its party's current state.
    Resync,
}

/// Which of a peer's tokens a revocation ended, by their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One token (a logout).
    One(String),
    /// Every token of the peer but the one named, if any (a rotation keeps
    /// the token it issues; an admin revocation keeps none).
    AllBut(Option<String>),
}

impl Revoked {
    /// Whether the token with this hash is among those revoked.
    pub fn covers(&self, token_hash: &str) -> bool {
        match self {
            Self::One(hash) => hash == token_hash,
            Self::AllBut(kept) => kept.as_deref() != Some(token_hash),
        }
    }
}

/// Sees every event as it is published, before any subscriber: for state
/// that must never lag behind the bus, as a subscriber may (a read cache).
pub type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// In-process fan-out of committed changes.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    observer: Arc<OnceLock<Observer>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.sender.receiver_count())
            .field("observed", &self.observer.get().is_some())
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            observer: Arc::default(),
        }
    }
}

impl EventBus {
    /// Sets the one [`Observer`]; `false` (and `observer` unused) when the
    /// bus already has one.
    pub fn observe(&self, observer: Observer) -> bool {
        self.observer.set(observer).is_ok()
    }

    pub fn publish(&self, event: Event) {
        if let Some(observer) = self.observer.get() {
            observer(&event);
        }
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
