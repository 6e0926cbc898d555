//! The one place state changes are announced: the service layer publishes
//! each committed change here, and whoever delivers them (the WebSocket hub)
//! subscribes.

use std::sync::Arc;

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
    /// Events may have been lost (the database's notification connection
    /// dropped): every socket should get its party's current state.
    Resync,
}

/// In-process fan-out of committed changes.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
