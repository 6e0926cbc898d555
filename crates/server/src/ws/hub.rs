//! The hub: every open socket, which peer each authenticated one belongs
//! to, and the one task that turns committed changes from the event bus
//! into frames on members' sockets.
//!
//! Each event is serialized once and handed to each recipient's socket queue
//! with a non-blocking `try_send`: O(recipients) work per event, no task per
//! event, no lock held across an await. A socket whose queue is full is a
//! slow reader: it is dropped, never buffered without limit.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use lanrage_proto::{PartyId, PeerId, ServerMessage};
use parking_lot::{Mutex, RwLock};
use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinSet,
};

use crate::{
    events::{Event, Revoked},
    metrics::Metrics,
    net::ClientKey,
    service::Service,
    telemetry::error_chain,
};

/// A frame queued for one socket. Party frames carry their party and `seq`
/// so the socket's writer never sends a party's events out of order or twice.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A live event from the bus: skipped if the socket already sent this
    /// party's `seq`, held while the socket is resuming that party. A signal
    /// carries its queue id, marked delivered once written.
    Event {
        text: Utf8Bytes,
        party: Option<(PartyId, u64)>,
        signal: Option<i64>,
    },
    /// A reply to this socket's own request; always sent.
    Reply {
        text: Utf8Bytes,
        party: Option<(PartyId, u64)>,
    },
    /// A replayed event or a snapshot: sent only if newer than what the
    /// socket already sent of that party.
    Catchup {
        text: Utf8Bytes,
        party: (PartyId, u64),
    },
    /// A resume starts: the client has the party up to `after_seq`; live
    /// events of the party wait until [`Outgoing::EndResume`].
    BeginResume { party_id: PartyId, after_seq: u64 },
    /// The replay or snapshot is queued: release the waiting live events.
    EndResume { party_id: PartyId },
}

/// Why the server closes a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its send queue filled, or a write to it stalled.
    SlowReader,
    Replaced,
    Resync,
    /// It did not answer pings for two ping intervals.
    Unresponsive,
    ClientClosed,
    /// Its authentication was refused.
    Refused,
    AuthTimeout,
    /// No member slot was free when it authenticated (`--ws-max-sockets`).
    Full,
    /// It kept sending far over its message rate.
    Flood,
    TokenExpired,
    TokenRevoked,
    InvalidUtf8,
    ProtocolViolation,
    TooBig,
    ShuttingDown,
}

impl CloseReason {
    /// WebSocket close code (RFC 6455 section 7.4.1; 4401 is ours) and
    /// reason text.
    pub fn frame(self) -> (u16, &'static str) {
        match self {
            Self::SlowReader => (1008, "send queue full: reading too slowly"),
            Self::Replaced => (1008, "replaced by a newer connection of this peer"),
            Self::Resync => (1013, "events were missed: reconnect and resume"),
            Self::Unresponsive => (1001, "pings not answered within two ping intervals"),
            Self::ClientClosed => (1000, "closed"),
            Self::Refused => (1008, "authentication failed"),
            Self::AuthTimeout => (1008, "not authenticated in time"),
            Self::Full => (
                1013,
                "too many open sockets on this server: try again later",
            ),
            Self::Flood => (1008, "message flood: far over the message rate"),
            Self::TokenExpired => (4401, "token expired: reconnect with a fresh token"),
            Self::TokenRevoked => (4401, "token revoked: reconnect with a fresh token"),
            Self::InvalidUtf8 => (1007, "text frame is not valid UTF-8"),
            Self::ProtocolViolation => (1002, "WebSocket protocol violation"),
            Self::TooBig => (1009, "frame or message over the size limit"),
            Self::ShuttingDown => (1001, "server shutting down"),
        }
    }

    /// A label for the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::SlowReader => "slow_reader",
            Self::Replaced => "replaced",
            Self::Resync => "resync",
            Self::Unresponsive => "unresponsive",
            Self::ClientClosed => "client_closed",
            Self::Refused => "refused",
            Self::AuthTimeout => "auth_timeout",
            Self::Full => "full",
            Self::Flood => "flood",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::ProtocolViolation => "protocol_violation",
            Self::TooBig => "too_big",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// The socket's authority ended: nothing queued for it goes out, only
    /// an `error` saying why, then the close frame.
    pub fn ends_authority(self) -> bool {
        matches!(self, Self::TokenExpired | Self::TokenRevoked)
    }

    /// The client is not taking what it is sent: queued frames are dropped
    /// and the close frame gets a short grace before the connection is
    /// aborted.
    pub fn abandons_queue(self) -> bool {
        matches!(self, Self::SlowReader | Self::Unresponsive)
    }
}

/// Tells a socket's tasks to close, and why (the first reason wins).
#[derive(Debug)]
pub struct Control {
    reason: watch::Sender<Option<CloseReason>>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            reason: watch::channel(None).0,
        }
    }
}

impl Control {
    pub fn close(&self, reason: CloseReason) {
        self.reason.send_if_modified(|slot| {
            let first = slot.is_none();
            slot.get_or_insert(reason);
            first
        });
    }

    /// The reason given first, once the socket is closing.
    pub fn reason(&self) -> Option<CloseReason> {
        *self.reason.borrow()
    }

    /// Completes once [`Control::close`] was called, with its reason.
    pub async fn closed(&self) -> CloseReason {
        let mut reason = self.reason.subscribe();
        match reason.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(CloseReason::ShuttingDown),
            // The sender lives in self: unreachable while self is borrowed.
            Err(_) => CloseReason::ShuttingDown,
        }
    }
}

/// How the hub reaches one authenticated socket.
#[derive(Debug)]
struct Entry {
    id: u64,
    /// The hash of the token it authenticated with: a revocation naming
    /// it closes the socket.
    token_hash: String,
    queue: super::queue::Sender,
    control: Arc<Control>,
}

/// Every open socket and the authenticated ones by peer.
#[derive(Debug)]
pub struct Hub {
    peers: RwLock<HashMap<PeerId, Vec<Entry>>>,
    /// Every open socket, authenticated or not, so shutdown reaches all.
    sockets: Mutex<HashMap<u64, Arc<Control>>>,
    next_id: AtomicU64,
    /// Authenticated sockets, capped by `--ws-max-sockets`.
    members: AtomicUsize,
    /// Sockets not authenticated yet, per client address, capped by
    /// `--ws-max-unauthenticated-per-ip` (they never take a member slot).
    unauthenticated: Mutex<HashMap<ClientKey, usize>>,
    /// Signals written to a socket, to be marked delivered in the queue.
    delivered: mpsc::UnboundedSender<i64>,
    delivered_rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    resync_running: AtomicBool,
    resync_again: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (delivered, delivered_rx) = mpsc::unbounded_channel();
        Self {
            metrics,
            peers: RwLock::default(),
            sockets: Mutex::default(),
            next_id: AtomicU64::new(0),
            members: AtomicUsize::new(0),
            unauthenticated: Mutex::default(),
            delivered,
            delivered_rx: Mutex::new(Some(delivered_rx)),
            resync_running: AtomicBool::new(false),
            resync_again: AtomicBool::new(false),
        }
    }
}

/// A socket's membership in the hub; unregisters itself when dropped.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    peer_id: PeerId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(&self.peer_id, self.id);
    }
}

/// An open socket: counted against its address's cap while it has not
/// authenticated, then against the server-wide cap, until dropped.
#[derive(Debug)]
pub struct Slot {
    hub: Arc<Hub>,
    id: u64,
    pub control: Arc<Control>,
    /// The address whose unauthenticated count this socket holds.
    unauthenticated: Option<ClientKey>,
    member: bool,
}

impl Slot {
    /// Where the socket's writer reports signals it wrote.
    pub fn delivered(&self) -> mpsc::UnboundedSender<i64> {
        self.hub.delivered.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.hub.metrics.clone()
    }

    /// Takes a member slot for the socket, which stops counting as
    /// unauthenticated; false when `max` members are connected already.
    pub fn authenticate(&mut self, max: usize) -> bool {
        if !self.member {
            if !self.hub.take_member_slot(max) {
                return false;
            }
            self.member = true;
        }
        if let Some(client) = self.unauthenticated.take() {
            self.hub.release_unauthenticated(client);
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hub.sockets.lock().remove(&self.id);
        if let Some(client) = self.unauthenticated.take() {
            self.hub.release_unauthenticated(client);
        }
        if self.member {
            self.hub.members.fetch_sub(1, Ordering::AcqRel);
        }
        self.hub.metrics.sockets.dec();
    }
}

impl Hub {
    /// Opens a slot for a new socket that has yet to authenticate, unless
    /// `max_per_client` sockets of `client` are in that state already.
    /// Without a known address the socket is only bounded by the auth
    /// timeout.
    pub fn admit(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        max_per_client: usize,
    ) -> Option<Slot> {
        if let Some(client) = client {
            let mut counts = self.unauthenticated.lock();
            let count = counts.entry(client).or_default();
            if *count >= max_per_client {
                return None;
            }
            *count += 1;
            self.metrics.ws_unauthenticated.inc();
        }
        Some(self.open_slot(client, false))
    }

    /// Opens a slot for a socket already authenticated (by its upgrade's
    /// header), unless `max` members are connected.
    pub fn admit_member(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.take_member_slot(max)
            .then(|| self.open_slot(None, true))
    }

    /// Whether a member slot is free now (an upgrade is refused early
    /// when none is, rather than at its `auth`).
    pub fn has_member_room(&self, max: usize) -> bool {
        self.members.load(Ordering::Acquire) < max
    }

    fn open_slot(self: &Arc<Self>, unauthenticated: Option<ClientKey>, member: bool) -> Slot {
        self.metrics.sockets.inc();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(Control::default());
        self.sockets.lock().insert(id, control.clone());
        Slot {
            hub: self.clone(),
            id,
            control,
            unauthenticated,
            member,
        }
    }

    fn take_member_slot(&self, max: usize) -> bool {
        let mut open = self.members.load(Ordering::Acquire);
        loop {
            if open >= max {
                return false;
            }
            match self
                .members
                .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => open = now,
            }
        }
    }

    fn release_unauthenticated(&self, client: ClientKey) {
        let mut counts = self.unauthenticated.lock();
        if let Some(count) = counts.get_mut(&client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&client);
            }
        }
        self.metrics.ws_unauthenticated.dec();
    }

    /// Open sockets, authenticated or not.
    pub fn open_sockets(&self) -> usize {
        self.sockets.lock().len()
    }

    /// Adds the socket of `slot`, authenticated for `peer_id` with the
    /// token whose hash is `token_hash`; beyond `max_per_peer` sockets the
    /// peer's oldest is closed.
    pub fn register(
        self: &Arc<Self>,
        slot: &Slot,
        peer_id: PeerId,
        token_hash: &str,
        queue: super::queue::Sender,
        max_per_peer: usize,
    ) -> Registration {
        let mut evicted = Vec::new();
        {
            let mut peers = self.peers.write();
            let entries = peers.entry(peer_id.clone()).or_default();
            while entries.len() >= max_per_peer.max(1) {
                evicted.push(entries.remove(0));
            }
            entries.push(Entry {
                id: slot.id,
                token_hash: token_hash.to_owned(),
                queue,
                control: slot.control.clone(),
            });
        }
        for entry in evicted {
            entry.control.close(CloseReason::Replaced);
        }
        Registration {
            hub: self.clone(),
            peer_id,
            id: slot.id,
        }
    }

    fn remove(&self, peer_id: &PeerId, id: u64) {
        let mut peers = self.peers.write();
        if let Some(entries) = peers.get_mut(peer_id) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                peers.remove(peer_id);
            }
        }
    }

    /// Queues `item` on every socket of each recipient. Full queues get
    /// their socket closed.
    fn deliver<'a>(&self, recipients: impl IntoIterator<Item = &'a PeerId>, item: &Outgoing) {
        let mut slow = Vec::new();
        {
            let peers = self.peers.read();
            for peer in recipients {
                for entry in peers.get(peer).into_iter().flatten() {
                    if let Err(super::queue::TrySendError::Full(_)) =
                        entry.queue.try_send(item.clone())
                    {
                        slow.push(entry.control.clone());
                    }
                }
            }
        }
        // Counted once per socket, by its writer, whoever noticed first.
        for control in slow {
            control.close(CloseReason::SlowReader);
        }
    }

    /// Closes every open socket (shutdown, or events were lost).
    pub fn close_all(&self, reason: CloseReason) {
        for control in self.sockets.lock().values() {
            control.close(reason);
        }
    }

    fn close_peer(&self, peer_id: &PeerId, reason: CloseReason) {
        for entry in self.peers.read().get(peer_id).into_iter().flatten() {
            entry.control.close(reason);
        }
    }

    /// Closes the sockets of `peer_id` authenticated with a token among
    /// `tokens` (4401, after an `error` saying why).
    fn close_revoked(&self, peer_id: &PeerId, tokens: &Revoked) {
        for entry in self.peers.read().get(peer_id).into_iter().flatten() {
            if tokens.covers(&entry.token_hash) {
                entry.control.close(CloseReason::TokenRevoked);
            }
        }
    }

    /// Waits until no socket is open, at most `timeout`.
    pub async fn drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Routes the bus to the sockets until the bus closes. Everything it
    /// starts lives inside this future: stopping it (the server aborts it
    /// once every socket is closed) stops them all.
    pub async fn run(self: Arc<Self>, service: Service) {
        let written = self.delivered_rx.lock().take();
        tokio::select! {
            () = self.clone().mark_delivered(written, service.clone()) => {}
            () = self.dispatch(service) => {}
        }
    }

    /// Marks the signals written to sockets, one at a time, in order, so
    /// the dispatcher never waits for the database.
    async fn mark_delivered(
        self: Arc<Self>,
        written: Option<mpsc::UnboundedReceiver<i64>>,
        service: Service,
    ) {
        let Some(mut written) = written else {
            return std::future::pending().await;
        };
        while let Some(id) = written.recv().await {
            if let Err(error) = service.mark_signal_delivered(id).await {
                service.count_db_error(&error);
                tracing::warn!(error = %error_chain(&error), "cannot mark a signal delivered");
            }
            // Counted once marked, so a scrape that sees it also finds the
            // row marked.
            self.metrics.signals_delivered.inc();
        }
    }

    async fn dispatch(self: Arc<Self>, service: Service) {
        let mut events = service.events().subscribe();
        // Resyncs read the database: they run beside the dispatcher, owned
        // by it.
        let mut resyncs = JoinSet::new();
        loop {
            while resyncs.try_join_next().is_some() {}
            match events.recv().await {
                Ok(Event::Party {
                    message,
                    recipients,
                }) => {
                    let Some(text) = encode(&message) else {
                        continue;
                    };
                    let party = message.party_seq().map(|(id, seq)| (id.clone(), seq));
                    let item = Outgoing::Event {
                        text,
                        party,
                        signal: None,
                    };
                    self.deliver(recipients.iter(), &item);
                }
                Ok(Event::Signal { signal, id }) => {
                    let message = ServerMessage::Signal {
                        party_id: signal.party_id.clone(),
                        from_peer_id: signal.from_peer_id.clone(),
                        to_peer_id: signal.to_peer_id.clone(),
                        signal_data: signal.signal_data.clone(),
                        sent_at: signal.sent_at,
                    };
                    let Some(text) = encode(&message) else {
                        continue;
                    };
                    let item = Outgoing::Event {
                        text,
                        party: None,
                        signal: Some(id),
                    };
                    self.deliver([&signal.to_peer_id], &item);
                }
                Ok(Event::Revoked { peer_id, tokens }) => self.close_revoked(&peer_id, &tokens),
                // The resync that ends the outage brings every socket up
                // to date; until then there is nothing to send.
                Ok(Event::Interrupted) => {}
                Ok(Event::Resync) => {
                    if let Some(resync) = self.clone().resync_task(service.clone()) {
                        resyncs.spawn(resync);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Some sockets would miss events: make them reconnect and
                    // resume rather than act on a stale view.
                    tracing::warn!(missed, "event bus lagged; closing sockets so they resync");
                    self.close_all(CloseReason::Resync);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// A resync to start, or `None` when one is running: it is asked to go
    /// round once more.
    fn resync_task(
        self: Arc<Self>,
        service: Service,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.resync_again.store(true, Ordering::Release);
        if self.resync_running.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(async move {
            while self.resync_again.swap(false, Ordering::AcqRel) {
                self.resync(&service).await;
            }
            self.resync_running.store(false, Ordering::Release);
        })
    }

    /// Sends every connected peer its party's current state after events
    /// may have been lost. A peer no longer in any party may have missed
    /// its party's end: its sockets are closed so they reconnect and find
    /// out.
    async fn resync(&self, service: &Service) {
        let peers: Vec<PeerId> = self.peers.read().keys().cloned().collect();
        for peer_id in peers {
            let view = match service.membership(&peer_id).await {
                Ok(Some((party_id, _))) => service.party_view(&peer_id, &party_id).await,
                Ok(None) => {
                    self.close_peer(&peer_id, CloseReason::Resync);
                    continue;
                }
                Err(error) => Err(error),
            };
            match view {
                Ok(view) => {
                    let virtual_ip = view.virtual_ips.get(&peer_id).copied();
                    let party = (view.party.party_id.clone(), view.seq);
                    let message = ServerMessage::PartyUpdate {
                        party: view.party,
                        seq: view.seq,
                        virtual_ip,
                        request_id: None,
                        snapshot: true,
                        extras: view.extras,
                    };
                    if let Some(text) = encode(&message) {
                        self.deliver([&peer_id], &Outgoing::Catchup { text, party });
                    }
                }
                Err(error) => {
                    tracing::warn!(%peer_id, error = %error_chain(&error), "cannot resync a socket; closing it");
                    self.close_peer(&peer_id, CloseReason::Resync);
                }
            }
        }
    }
}

/// A server message as a text frame.
pub fn encode(message: &ServerMessage) -> Option<Utf8Bytes> {
    match serde_json::to_string(message) {
        // The serializer doubles its buffer as it goes: a snapshot waiting
        // in a queue would hold up to twice its size.
        Ok(mut text) => {
            text.shrink_to_fit();
            Some(text.into())
        }
        Err(error) => {
            tracing::error!(%error, "cannot serialize a server message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testing::panic_holding, ws::queue};

    fn text(item: &Outgoing) -> &str {
        match item {
            Outgoing::Event { text, .. } => text.as_str(),
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn a_panic_while_the_hub_is_locked_skips_no_later_registration() {
        let hub = Arc::new(Hub::new(Arc::new(Metrics::default())));
        let client = ClientKey::of("127.0.0.1".parse().unwrap());
        panic_holding(|| hub.unauthenticated.lock());
        panic_holding(|| hub.sockets.lock());
        panic_holding(|| hub.peers.write());

        let mut slot = hub
            .admit(Some(client), 1)
            .expect("the address is under its cap");
        assert!(hub.admit(Some(client), 1).is_none(), "and now at it");
        assert_eq!(hub.open_sockets(), 1);
        assert!(slot.authenticate(1));
        let peer = PeerId::parse("alice").unwrap();
        let (sender, mut receiver) = queue::channel(4, queue::MAX_QUEUED_BYTES);
        let registration = hub.register(&slot, peer.clone(), "hash", sender, 1);

        let event = Outgoing::Event {
            text: "hello".into(),
            party: None,
            signal: None,
        };
        hub.deliver([&peer], &event);
        let received = receiver
            .try_recv()
            .expect("the registered socket gets the event");
        assert_eq!(text(&received), "hello");

        drop(registration);
        hub.deliver([&peer], &event);
        assert!(receiver.try_recv().is_none(), "unregistered on drop");
        drop(slot);
        assert_eq!(hub.open_sockets(), 0);
    }
}
