//! A socket's bounded send queue. tokio's mpsc allocates a block of 32
//! slots for every channel up front (about 3 KiB with our items); this one
//! holds nothing while empty, and most sockets are idle most of the time:
//! 10,000 of them must fit in 80 MiB.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::hub::Outgoing;

/// A queue emptied back to this many slots or fewer keeps its allocation.
const KEEP_SLOTS: usize = 8;
/// The most bytes of text a socket's queue holds beyond its first item:
/// the item count alone would let a client that never reads pin 256
/// snapshots, hundreds of KiB each for a big party. A queue this full is a
/// slow reader's, like one at its item limit.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// The bytes of text an item holds.
fn size(item: &Outgoing) -> usize {
    match item {
        Outgoing::Event { text, .. }
        | Outgoing::Reply { text, .. }
        | Outgoing::Catchup { text, .. } => text.len(),
        Outgoing::BeginResume { .. } | Outgoing::EndResume { .. } => 0,
    }
}

#[derive(Debug, Default)]
struct Items {
    queue: VecDeque<Outgoing>,
    bytes: usize,
}

#[derive(Debug)]
struct Shared {
    items: Mutex<Items>,
    capacity: usize,
    max_bytes: usize,
    /// An item was queued, or the last sender left.
    queued: Notify,
    /// An item was taken: room for a waiting sender.
    taken: Notify,
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
}

impl Shared {
    fn items(&self) -> MutexGuard<'_, Items> {
        self.items.lock()
    }
}

/// Why an item was not queued.
#[derive(Debug)]
pub enum TrySendError {
    /// The queue holds `capacity` items.
    Full(Outgoing),
    /// The writer is gone.
    Closed(Outgoing),
}

/// A queue of at most `capacity` items and, beyond its first item,
/// `max_bytes` of text.
pub fn channel(capacity: usize, max_bytes: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        items: Mutex::new(Items::default()),
        capacity: capacity.max(1),
        max_bytes,
        queued: Notify::new(),
        taken: Notify::new(),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The queueing side; cheap to clone.
#[derive(Debug)]
pub struct Sender {
    shared: Arc<Shared>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.queued.notify_one();
        }
    }
}

impl Sender {
    pub fn try_send(&self, item: Outgoing) -> Result<(), TrySendError> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        {
            let mut items = self.shared.items();
            let bytes = size(&item);
            if items.queue.len() >= self.shared.capacity
                || (!items.queue.is_empty() && items.bytes + bytes > self.shared.max_bytes)
            {
                return Err(TrySendError::Full(item));
            }
            items.bytes += bytes;
            items.queue.push_back(item);
        }
        self.shared.queued.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err` once the writer is gone.
    pub async fn send(&self, mut item: Outgoing) -> Result<(), Outgoing> {
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => item = back,
            }
            taken.await;
        }
    }

    /// Waits until the queue holds at most `bytes` of text, so a client's
    /// next request is read only once what it was sent is on its way;
    /// false once the writer is gone.
    pub async fn drained_to(&self, bytes: usize) -> bool {
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if self.shared.receiver_gone.load(Ordering::Acquire) {
                return false;
            }
            if self.shared.items().bytes <= bytes {
                return true;
            }
            taken.await;
        }
    }

    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }
}

/// The writer's side.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.taken.notify_waiters();
    }
}

impl Receiver {
    /// The next item, if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let item = {
            let mut items = self.shared.items();
            let item = items.queue.pop_front();
            if let Some(item) = &item {
                items.bytes -= size(item);
            }
            if items.queue.is_empty() && items.queue.capacity() > KEEP_SLOTS {
                items.queue = VecDeque::new();
            }
            item
        };
        if item.is_some() {
            // A request waiting for the backlog to drain and a sender
            // waiting for room may both be waiting.
            self.shared.taken.notify_waiters();
        }
        item
    }

    /// The next item; `None` once it is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let shared = self.shared.clone();
        loop {
            let queued = shared.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if shared.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            queued.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn item(n: u64) -> Outgoing {
        Outgoing::EndResume {
            party_id: lanrage_proto::PartyId::parse(format!("p{n}")).unwrap(),
        }
    }

    fn party(item: &Outgoing) -> String {
        match item {
            Outgoing::EndResume { party_id } => party_id.to_string(),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn items_come_out_in_order_up_to_the_capacity() {
        let (sender, mut receiver) = channel(2, MAX_QUEUED_BYTES);
        sender.try_send(item(1)).unwrap();
        sender.try_send(item(2)).unwrap();
        assert!(matches!(
            sender.try_send(item(3)),
            Err(TrySendError::Full(_))
        ));
        assert_eq!(party(&receiver.recv().await.unwrap()), "p1");
        sender.try_send(item(3)).unwrap();
        assert_eq!(party(&receiver.recv().await.unwrap()), "p2");
        assert_eq!(party(&receiver.recv().await.unwrap()), "p3");
        assert!(receiver.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_and_a_closed_queue_says_so() {
        let (sender, mut receiver) = channel(1, MAX_QUEUED_BYTES);
        sender.try_send(item(1)).unwrap();
        let waiting = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(item(2)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(party(&receiver.recv().await.unwrap()), "p1");
        assert!(waiting.await.unwrap());
        assert_eq!(party(&receiver.recv().await.unwrap()), "p2");
        drop(sender);
        assert!(receiver.recv().await.is_none(), "every sender gone");

        let (sender, receiver) = channel(1, MAX_QUEUED_BYTES);
        drop(receiver);
        assert!(matches!(
            sender.try_send(item(1)),
            Err(TrySendError::Closed(_))
        ));
        assert!(sender.send(item(1)).await.is_err());
    }

    #[tokio::test]
    async fn an_emptied_queue_gives_its_memory_back() {
        let (sender, mut receiver) = channel(100, MAX_QUEUED_BYTES);
        for n in 0..50 {
            sender.try_send(item(n)).unwrap();
        }
        while receiver.try_recv().is_some() {}
        assert_eq!(receiver.shared.items().queue.capacity(), 0);
    }

    fn text(bytes: usize) -> Outgoing {
        Outgoing::Reply {
            text: "x".repeat(bytes).into(),
            party: None,
        }
    }

    #[tokio::test]
    async fn a_request_waits_for_the_backlog_to_drain() {
        let (sender, mut receiver) = channel(100, MAX_QUEUED_BYTES);
        sender.try_send(text(3000)).unwrap();
        sender.try_send(text(2000)).unwrap();
        assert!(sender.drained_to(5000).await, "within the limit already");
        let waiting = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.drained_to(2500).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "5000 bytes queued");
        receiver.recv().await.unwrap();
        assert!(waiting.await.unwrap(), "2000 bytes left");
        drop(receiver);
        assert!(!sender.drained_to(0).await, "the writer is gone");
    }

    #[tokio::test]
    async fn a_queue_holds_a_bounded_number_of_bytes_but_always_one_item() {
        let (sender, mut receiver) = channel(100, 1000);
        sender.try_send(text(5000)).unwrap();
        assert!(matches!(
            sender.try_send(text(1)),
            Err(TrySendError::Full(_))
        ));
        receiver.recv().await.unwrap();
        sender.try_send(text(600)).unwrap();
        sender.try_send(text(400)).unwrap();
        assert!(matches!(
            sender.try_send(text(1)),
            Err(TrySendError::Full(_))
        ));
        receiver.recv().await.unwrap();
        sender.try_send(text(600)).unwrap();
    }
}
