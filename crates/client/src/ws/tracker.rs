//! The party the socket follows, kept from the server's messages alone.
//!
//! The [`Tracker`] folds party events into its view in `seq` order, drops
//! what it has seen, holds what arrives past a gap, and says when a resume
//! or a snapshot is needed to fill one. It does no I/O: the socket task
//! feeds it what the server and the HTTP side jobs answered, and carries
//! out what it asks for ([`Output`]).

use std::collections::{BTreeMap, VecDeque};

use lanrage_proto::{ClientMessage, PartyId, PartyResponse, PeerId, ServerMessage};
use serde_json::json;

use super::events::WsEvent;
use crate::error::Result;

/// The `request_id` of the resume the client sends itself, so its answer
/// (or refusal) is told apart from the application's requests.
const RESYNC: &str = "lanrage-client-resync";

/// Beyond this many out-of-order events, they are dropped and a resume
/// (which replays them) is relied on instead. Also the bound on the
/// parties remembered in [`Tracker::passed_on`].
const MAX_PENDING: usize = 1024;

/// What the tracker asks of the task, in order.
#[derive(Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a few at a time, each handed on at once: boxing would cost an allocation per event"
)]
pub(super) enum Output {
    /// Hand `event` to the application. `followed` is the party followed
    /// when it was produced: what a snapshot owed to a slow reader covers.
    Event {
        event: WsEvent,
        followed: Option<PartyId>,
    },
    /// Read the party over HTTP and give the answer to
    /// [`Tracker::on_snapshot`]: one we found ourselves in without holding a
    /// view of it (`refused_resume` none), or one the server would not
    /// resume (`refused_resume` says why).
    FetchSnapshot {
        party_id: PartyId,
        refused_resume: Option<String>,
    },
}

/// Party events that arrived ahead of a gap, waiting for it to be filled.
#[derive(Debug)]
struct Pending {
    party_id: PartyId,
    events: BTreeMap<u64, ServerMessage>,
}

/// What folding an event into the view decided.
enum Fold {
    Emit,
    Duplicate,
    Gap,
}

/// The followed party and everything needed to deliver its events once
/// each, in `seq` order.
#[derive(Debug)]
pub(super) struct Tracker {
    me: PeerId,
    /// The followed party as its events describe it.
    view: Option<PartyResponse>,
    /// The view changed since the task last published it.
    view_changed: bool,
    pending: Option<Pending>,
    /// A resume was sent and its answer has not come yet.
    resuming: bool,
    /// A party we were seen joining and whose snapshot is being fetched.
    fetching: Option<PartyId>,
    /// The highest seq passed on, per party not followed (events go out as
    /// they come until the party is followed).
    passed_on: BTreeMap<PartyId, u64>,
    /// Events of the followed party up to this seq already reached the
    /// application before it was followed: folded, not emitted again.
    delivered: Option<(PartyId, u64)>,
    outputs: VecDeque<Output>,
}

impl Tracker {
    /// A tracker for peer `me`, following `party` if one is given.
    pub(super) fn new(me: PeerId, party: Option<PartyResponse>) -> Self {
        Self {
            me,
            view: party,
            view_changed: false,
            pending: None,
            resuming: false,
            fetching: None,
            passed_on: BTreeMap::new(),
            delivered: None,
            outputs: VecDeque::new(),
        }
    }

    /// The followed party as its events describe it.
    pub(super) fn view(&self) -> Option<&PartyResponse> {
        self.view.as_ref()
    }

    /// Whether the view changed since this was last asked.
    pub(super) fn take_view_changed(&mut self) -> bool {
        std::mem::take(&mut self.view_changed)
    }

    /// The next thing the task must do for the tracker.
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The followed party.
    pub(super) fn followed_party(&self) -> Option<&PartyId> {
        self.view.as_ref().map(|view| &view.party.party_id)
    }

    /// The followed party as a `party_update`, as a reader that missed some
    /// of its events needs it.
    pub(super) fn current_update(&self) -> Option<ServerMessage> {
        self.view.as_ref().map(|view| update_of(view, &self.me))
    }

    /// The resume that asks the server to replay what came after the view
    /// (or to send the party as it is); `None` when no party is followed.
    /// The task sends it on every fresh socket and whenever it starts
    /// following a party.
    pub(super) fn resume(&mut self) -> Option<ClientMessage> {
        let view = self.view.as_ref()?;
        self.resuming = true;
        Some(ClientMessage::Resume {
            party_id: view.party.party_id.clone(),
            after_seq: view.seq,
            request_id: Some(json!(RESYNC)),
        })
    }

    /// The resume to send because events are held past a gap, unless one
    /// is already on its way.
    pub(super) fn fill_gap(&mut self) -> Option<ClientMessage> {
        if self.resuming || !self.has_gap() {
            return None;
        }
        self.resume()
    }

    /// The socket is gone, and with it the answer to any resume sent on it.
    pub(super) fn disconnected(&mut self) {
        self.resuming = false;
    }

    /// Follows `party` (unless the view of it is already newer).
    pub(super) fn track(&mut self, party: PartyResponse) {
        let party_id = &party.party.party_id;
        if self.fetching.as_ref() == Some(party_id) {
            self.fetching = None;
        }
        // What went out before tracking must not go out again when the
        // resume replays it.
        self.delivered = self
            .passed_on
            .remove(party_id)
            .filter(|seq| *seq > party.seq)
            .map(|seq| (party_id.clone(), seq));
        let newer = match &self.view {
            Some(current) if current.party.party_id == *party_id => party.seq >= current.seq,
            _ => true,
        };
        if newer {
            self.set_view(Some(party));
        }
        self.drain_pending();
    }

    /// A message the server sent over the socket.
    pub(super) fn on_message(&mut self, message: ServerMessage) {
        match &message {
            ServerMessage::Ack {
                request_id: Some(id),
                ..
            } if is_resync(id) => {
                // The replay is complete: whatever still waits is past a
                // gap the replay did not fill.
                self.resuming = false;
                self.drain_pending();
            }
            ServerMessage::Error {
                message: detail,
                request_id: Some(id),
            } if is_resync(id) => {
                self.resuming = false;
                if let Some(party_id) = self.followed_party().cloned() {
                    self.outputs.push_back(Output::FetchSnapshot {
                        party_id,
                        refused_resume: Some(detail.clone()),
                    });
                }
            }
            _ => match message.party_seq().map(|(id, _)| id.clone()) {
                Some(party_id) => self.on_party_event(party_id, message),
                None => self.emit(WsEvent::Message(message)),
            },
        }
    }

    /// The answer to an [`Output::FetchSnapshot`]. A snapshot becomes the
    /// view, and is emitted as a `party_update`, if it is newer than what
    /// the events told so far.
    pub(super) fn on_snapshot(
        &mut self,
        party_id: PartyId,
        refused_resume: Option<String>,
        result: Result<PartyResponse>,
    ) {
        let fetched = self.fetching.as_ref() == Some(&party_id);
        let wanted = fetched || self.followed_party() == Some(&party_id);
        if fetched {
            self.fetching = None;
        }
        if !wanted {
            return;
        }
        match result {
            Ok(snapshot) => {
                let newer = match &self.view {
                    Some(view) if view.party.party_id == party_id => {
                        snapshot.seq > view.seq
                            || (refused_resume.is_some() && snapshot.seq == view.seq)
                    }
                    _ => true,
                };
                if newer {
                    let message = update_of(&snapshot, &self.me);
                    self.set_view(Some(snapshot));
                    self.emit(WsEvent::Message(message));
                }
                self.drain_pending();
            }
            Err(error) if matches!(error.status(), Some(404 | 403)) => {
                if self.followed_party() == Some(&party_id) {
                    self.set_view(None);
                }
                self.pending = None;
                if let Some(detail) = refused_resume {
                    let detail = error.detail().map_or(detail, str::to_owned);
                    self.emit(WsEvent::PartyLost { party_id, detail });
                }
            }
            Err(error) => {
                tracing::warn!(%party_id, %error, "cannot read the party");
                // Without a snapshot, what was held for it goes out as it came.
                if self.followed_party() != Some(&party_id)
                    && let Some(pending) = self.pending.take()
                {
                    for (_, message) in pending.events {
                        self.pass_on(message);
                    }
                }
            }
        }
    }

    fn on_party_event(&mut self, party_id: PartyId, message: ServerMessage) {
        if self.followed_party() == Some(&party_id) {
            self.fold(message);
            self.drain_pending();
            return;
        }
        if self.fetching.as_ref() == Some(&party_id) {
            match message {
                // A full party (the answer to a join over this socket):
                // no need to wait for the fetch.
                ServerMessage::PartyUpdate { .. } => {
                    self.fetching = None;
                    self.adopt(message);
                    self.drain_pending();
                }
                ServerMessage::PartyEnded { .. } => {
                    self.fetching = None;
                    self.pending = None;
                    self.emit(WsEvent::Message(message));
                }
                other => self.hold(party_id, other),
            }
            return;
        }
        match message {
            ServerMessage::PartyUpdate { .. } => {
                self.adopt(message);
                self.drain_pending();
            }
            ServerMessage::PeerJoined { ref peer, .. } if peer.peer_id == self.me => {
                // We are in a party we hold no view of (joined over HTTP,
                // or moved): its snapshot is fetched beside the socket,
                // and its events wait for it.
                self.pass_on(message);
                self.pending = None;
                self.fetching = Some(party_id.clone());
                self.outputs.push_back(Output::FetchSnapshot {
                    party_id,
                    refused_resume: None,
                });
            }
            other => self.pass_on(other),
        }
    }

    /// An event of a party not followed: out as it comes.
    fn pass_on(&mut self, message: ServerMessage) {
        if let Some((party_id, seq)) = message.party_seq() {
            if self.passed_on.len() >= MAX_PENDING {
                self.passed_on.clear();
            }
            let last = self.passed_on.entry(party_id.clone()).or_default();
            *last = (*last).max(seq);
        }
        self.emit(WsEvent::Message(message));
    }

    /// A `party_update` of a party not followed yet: it becomes the view.
    fn adopt(&mut self, message: ServerMessage) {
        let ServerMessage::PartyUpdate {
            party,
            seq,
            virtual_ip,
            request_id,
            extras,
            ..
        } = &message
        else {
            return;
        };
        let mut virtual_ips = BTreeMap::new();
        if let (Some(_), Some(ip)) = (request_id, virtual_ip) {
            virtual_ips.insert(self.me.clone(), *ip);
        }
        self.set_view(Some(PartyResponse {
            party: party.clone(),
            virtual_ips,
            seq: *seq,
            // Snapshots and replies carry a read's extras (who proved
            // their key, settings, host epoch); other updates leave them
            // to the next read of the party.
            extras: extras.clone(),
        }));
        self.emit(WsEvent::Message(message));
    }

    /// Folds an event of the followed party into the view: the next one is
    /// applied and emitted, one already seen dropped, one past a gap held.
    ///
    /// `seq` comes from the server, so the one after the view's is computed
    /// with checked arithmetic: a view at `u64::MAX` has no next event, and
    /// whatever claims to come after it is dropped as seen, neither
    /// wrapping to 0 nor panicking.
    fn fold(&mut self, message: ServerMessage) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let last = view.seq;
        let next = last.checked_add(1);
        let outcome = match &message {
            ServerMessage::PartyUpdate {
                party,
                seq,
                virtual_ip,
                request_id,
                extras,
                ..
            } => {
                let ours = request_id.is_some();
                // A snapshot we asked for is shown even if nothing
                // changed; an unrequested stale one is not.
                if *seq < last || (*seq == last && !ours) {
                    Fold::Duplicate
                } else {
                    if request_id.as_ref().is_some_and(is_resync) {
                        self.resuming = false;
                    }
                    view.party = party.clone();
                    view.seq = *seq;
                    if let (true, Some(ip)) = (ours, virtual_ip) {
                        view.virtual_ips.insert(self.me.clone(), *ip);
                    }
                    view.virtual_ips
                        .retain(|peer, _| party.peers.contains_key(peer));
                    if extras.verified.is_empty() {
                        view.extras
                            .verified
                            .retain(|peer, _| party.peers.contains_key(peer));
                    } else {
                        view.extras.verified = extras.verified.clone();
                    }
                    if extras.host_epoch.is_some() {
                        view.extras.host_epoch = extras.host_epoch;
                    }
                    if extras.settings.is_some() {
                        view.extras.settings = extras.settings;
                    }
                    if extras.succession.is_some() {
                        view.extras.succession = extras.succession.clone();
                    }
                    Fold::Emit
                }
            }
            ServerMessage::PartyEnded { seq, .. } if *seq > last => {
                // The end is final: no need to fill a gap before it.
                self.view = None;
                Fold::Emit
            }
            ServerMessage::PeerJoined { peer, seq, .. } if Some(*seq) == next => {
                view.party.peers.insert(peer.peer_id.clone(), peer.clone());
                view.seq = *seq;
                Fold::Emit
            }
            ServerMessage::HostChanged {
                new_host_id,
                host_epoch,
                seq,
                ..
            } if Some(*seq) == next => {
                view.party.host_id = new_host_id.clone();
                view.extras.host_epoch = Some(*host_epoch);
                // The new host is no one's successor now; where a former
                // host that stayed falls in line only the next read says.
                if let Some(succession) = view.extras.succession.as_mut() {
                    succession.retain(|peer| peer != new_host_id);
                }
                view.seq = *seq;
                Fold::Emit
            }
            ServerMessage::PartySettings { settings, seq, .. } if Some(*seq) == next => {
                view.extras.settings = Some(*settings);
                view.seq = *seq;
                Fold::Emit
            }
            ServerMessage::InviteRevoked { seq, .. }
            | ServerMessage::RelayRecommendation { seq, .. }
            | ServerMessage::PathPlan { seq, .. }
                if Some(*seq) == next =>
            {
                view.seq = *seq;
                Fold::Emit
            }
            ServerMessage::PeerLeft { peer_id, seq, .. } if Some(*seq) == next => {
                view.party.peers.remove(peer_id);
                view.virtual_ips.remove(peer_id);
                view.extras.verified.remove(peer_id);
                if let Some(succession) = view.extras.succession.as_mut() {
                    succession.retain(|peer| peer != peer_id);
                }
                view.seq = *seq;
                if *peer_id == self.me {
                    self.view = None;
                }
                Fold::Emit
            }
            ServerMessage::PeerJoined { seq, .. }
            | ServerMessage::PeerLeft { seq, .. }
            | ServerMessage::HostChanged { seq, .. }
            | ServerMessage::PartySettings { seq, .. }
            | ServerMessage::InviteRevoked { seq, .. }
            | ServerMessage::RelayRecommendation { seq, .. }
            | ServerMessage::PathPlan { seq, .. }
                if is_past_gap(*seq, last) =>
            {
                Fold::Gap
            }
            _ => Fold::Duplicate,
        };
        match outcome {
            Fold::Emit => {
                self.view_changed = true;
                let seen = match (&self.delivered, message.party_seq()) {
                    (Some((delivered, upto)), Some((party_id, seq))) => {
                        party_id == delivered && seq <= *upto
                    }
                    _ => false,
                };
                if !seen {
                    self.emit(WsEvent::Message(message));
                }
            }
            Fold::Duplicate => {}
            Fold::Gap => {
                if let Some((party_id, _)) = message.party_seq() {
                    let party_id = party_id.clone();
                    tracing::debug!(%party_id, "gap in party events; resuming");
                    // Held until the resume (sent from the session loop)
                    // fills the gap.
                    self.hold(party_id, message);
                }
            }
        }
    }

    /// Keeps an event that arrived early until the ones before it are in.
    fn hold(&mut self, party_id: PartyId, message: ServerMessage) {
        let Some((_, seq)) = message.party_seq() else {
            return;
        };
        let pending = match &mut self.pending {
            Some(pending) if pending.party_id == party_id => pending,
            slot => slot.insert(Pending {
                party_id,
                events: BTreeMap::new(),
            }),
        };
        if pending.events.len() >= MAX_PENDING {
            // The resume replays them all anyway.
            pending.events.clear();
        }
        pending.events.insert(seq, message);
    }

    /// Applies the held events that now follow the view; those still past
    /// a gap stay (and [`Tracker::fill_gap`] asks for a resume).
    fn drain_pending(&mut self) {
        loop {
            let Some(view) = &self.view else {
                // Not following the held events' party (it ended, or we
                // left): keep them only while its snapshot is on its way.
                if self.fetching.is_none() {
                    self.pending = None;
                }
                return;
            };
            let Some(pending) = self.pending.as_mut() else {
                return;
            };
            if pending.party_id != view.party.party_id {
                if self.fetching.as_ref() != Some(&pending.party_id) {
                    self.pending = None;
                }
                return;
            }
            let Some(entry) = pending.events.first_entry() else {
                self.pending = None;
                return;
            };
            if is_past_gap(*entry.key(), view.seq) {
                return;
            }
            let message = entry.remove();
            self.fold(message);
        }
    }

    /// Events of the followed party are held past a gap.
    fn has_gap(&self) -> bool {
        let (Some(view), Some(pending)) = (&self.view, &self.pending) else {
            return false;
        };
        pending.party_id == view.party.party_id
            && pending
                .events
                .keys()
                .next()
                .is_some_and(|first| is_past_gap(*first, view.seq))
    }

    fn set_view(&mut self, view: Option<PartyResponse>) {
        self.view = view;
        self.view_changed = true;
    }

    fn emit(&mut self, event: WsEvent) {
        let followed = self.followed_party().cloned();
        self.outputs.push_back(Output::Event { event, followed });
    }
}

/// Whether an event numbered `seq` leaves events missing after `last`.
/// Nothing follows `u64::MAX`, so nothing is past a gap after it.
fn is_past_gap(seq: u64, last: u64) -> bool {
    last.checked_add(1).is_some_and(|next| seq > next)
}

fn is_resync(request_id: &serde_json::Value) -> bool {
    request_id.as_str() == Some(RESYNC)
}

/// `party` as the `party_update` a reader receives, with `me`'s virtual IP.
fn update_of(party: &PartyResponse, me: &PeerId) -> ServerMessage {
    ServerMessage::PartyUpdate {
        party: party.party.clone(),
        seq: party.seq,
        virtual_ip: party.virtual_ips.get(me).copied(),
        request_id: None,
        snapshot: false,
        extras: party.extras.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use reqwest::StatusCode;

    use super::*;
    use crate::{
        error::ClientError,
        ws::fixtures::{ack, ended, joined, left, party, party_id, peer_id, update},
    };

    /// Alice's tracker, following the party at `seq` with `members`.
    fn following(seq: u64, members: &[&str]) -> Tracker {
        Tracker::new(peer_id("alice"), Some(party(seq, members)))
    }

    fn outputs(tracker: &mut Tracker) -> Vec<Output> {
        std::iter::from_fn(|| tracker.poll_output()).collect()
    }

    /// The events asked for, which must be all there is.
    fn events(tracker: &mut Tracker) -> Vec<WsEvent> {
        outputs(tracker)
            .into_iter()
            .map(|output| match output {
                Output::Event { event, .. } => event,
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    /// The seq of each party event among `events`.
    fn seqs(events: &[WsEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|event| match event {
                WsEvent::Message(message) => message.party_seq().map(|(_, seq)| seq),
                _ => None,
            })
            .collect()
    }

    fn members(tracker: &Tracker) -> Vec<String> {
        tracker.view().map_or_else(Vec::new, |view| {
            view.party
                .peers
                .keys()
                .map(|id| id.as_str().to_owned())
                .collect()
        })
    }

    fn view_seq(tracker: &Tracker) -> Option<u64> {
        tracker.view().map(|view| view.seq)
    }

    fn resync_error(detail: &str) -> ServerMessage {
        ServerMessage::Error {
            message: detail.into(),
            request_id: Some(json!(RESYNC)),
        }
    }

    fn refused(status: StatusCode, detail: &str) -> ClientError {
        ClientError::Refused {
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    fn assert_resume_after(message: Option<ClientMessage>, after: u64) {
        assert_eq!(
            message,
            Some(ClientMessage::Resume {
                party_id: party_id(),
                after_seq: after,
                request_id: Some(json!(RESYNC)),
            })
        );
    }

    #[test]
    fn events_in_order_are_applied_and_emitted() {
        let mut tracker = following(1, &["alice"]);

        tracker.on_message(joined("bob", 2));
        tracker.on_message(joined("carol", 3));
        tracker.on_message(left("bob", 4));

        assert_eq!(seqs(&events(&mut tracker)), [2, 3, 4]);
        assert_eq!(view_seq(&tracker), Some(4));
        assert_eq!(members(&tracker), ["alice", "carol"]);
        assert!(tracker.take_view_changed());
        assert!(!tracker.take_view_changed());
        assert_eq!(tracker.fill_gap(), None);
    }

    #[test]
    fn host_changes_and_settings_are_folded_into_the_view() {
        let mut start = party(3, &["alice", "bob", "carol"]);
        start.extras.host_epoch = Some(1);
        start.extras.succession = Some(vec![peer_id("bob"), peer_id("carol")]);
        let mut tracker = Tracker::new(peer_id("bob"), Some(start));
        let settings = lanrage_proto::PartySettings {
            host_policy: lanrage_proto::HostPolicy::Migrate,
            ..Default::default()
        };

        tracker.on_message(ServerMessage::PartySettings {
            party_id: party_id(),
            settings,
            seq: 4,
        });
        tracker.on_message(left("alice", 5));
        tracker.on_message(ServerMessage::HostChanged {
            party_id: party_id(),
            old_host_id: peer_id("alice"),
            new_host_id: peer_id("bob"),
            reason: "left".into(),
            host_epoch: 2,
            seq: 6,
        });

        assert_eq!(seqs(&events(&mut tracker)), [4, 5, 6]);
        let view = tracker.view().expect("still followed");
        assert_eq!(view.party.host_id, peer_id("bob"));
        assert_eq!(view.extras.host_epoch, Some(2));
        assert_eq!(view.extras.settings, Some(settings));
        assert_eq!(view.extras.succession, Some(vec![peer_id("carol")]));
        assert_eq!(view.seq, 6);
    }

    #[test]
    fn events_already_seen_are_dropped() {
        let mut tracker = following(3, &["alice", "bob"]);

        tracker.on_message(joined("bob", 2));
        tracker.on_message(left("bob", 3));
        tracker.on_message(update(&party(3, &["alice", "bob"])));
        tracker.on_message(update(&party(1, &["alice"])));
        tracker.on_message(ended(3));

        assert_eq!(events(&mut tracker), []);
        assert_eq!(view_seq(&tracker), Some(3));
        assert_eq!(members(&tracker), ["alice", "bob"]);
        assert!(!tracker.take_view_changed());
    }

    #[test]
    fn an_event_past_a_gap_is_held_and_a_resume_asked_for_once() {
        let mut tracker = following(1, &["alice"]);

        tracker.on_message(joined("carol", 3));

        assert_eq!(events(&mut tracker), []);
        assert_eq!(view_seq(&tracker), Some(1));
        assert_resume_after(tracker.fill_gap(), 1);
        assert_eq!(tracker.fill_gap(), None, "a resume is on its way");
    }

    #[test]
    fn the_replay_releases_held_events_in_order() {
        let mut tracker = following(1, &["alice"]);
        tracker.on_message(joined("dave", 4));
        tracker.on_message(joined("carol", 3));
        assert_resume_after(tracker.fill_gap(), 1);

        tracker.on_message(joined("bob", 2));
        tracker.on_message(joined("carol", 3));
        tracker.on_message(joined("dave", 4));
        tracker.on_message(ack(RESYNC));

        assert_eq!(seqs(&events(&mut tracker)), [2, 3, 4]);
        assert_eq!(members(&tracker), ["alice", "bob", "carol", "dave"]);
        assert_eq!(tracker.fill_gap(), None);
    }

    #[test]
    fn a_gap_the_replay_left_open_is_resumed_again() {
        let mut tracker = following(1, &["alice"]);
        tracker.on_message(joined("carol", 3));
        assert_resume_after(tracker.fill_gap(), 1);

        tracker.on_message(ack(RESYNC));

        assert_resume_after(tracker.fill_gap(), 1);
    }

    #[test]
    fn a_lost_socket_forgets_the_resume_sent_on_it() {
        let mut tracker = following(1, &["alice"]);
        tracker.on_message(joined("carol", 3));
        assert_resume_after(tracker.fill_gap(), 1);

        tracker.disconnected();

        assert_resume_after(tracker.fill_gap(), 1);
    }

    #[test]
    fn the_snapshot_answering_a_resume_is_shown_and_releases_what_follows_it() {
        let mut tracker = following(1, &["alice"]);
        tracker.on_message(joined("dave", 5));
        assert_resume_after(tracker.fill_gap(), 1);
        let ServerMessage::PartyUpdate { party, seq, .. } = update(&party(4, &["alice", "bob"]))
        else {
            unreachable!()
        };

        tracker.on_message(ServerMessage::PartyUpdate {
            party,
            seq,
            virtual_ip: Some(Ipv4Addr::new(10, 66, 0, 2)),
            request_id: Some(json!(RESYNC)),
            snapshot: true,
            extras: lanrage_proto::PartyExtras {
                verified: [(peer_id("alice"), true)].into(),
                ..Default::default()
            },
        });

        assert_eq!(seqs(&events(&mut tracker)), [4, 5]);
        assert_eq!(members(&tracker), ["alice", "bob", "dave"]);
        let view = tracker.view().unwrap();
        assert_eq!(
            view.virtual_ips.get(&peer_id("alice")),
            Some(&Ipv4Addr::new(10, 66, 0, 2))
        );
        // The snapshot says who proved their key; later events keep it.
        assert_eq!(view.extras.verified, [(peer_id("alice"), true)].into());
        assert_eq!(tracker.fill_gap(), None);
    }

    #[test]
    fn a_refused_resume_is_filled_by_a_snapshot() {
        let mut tracker = following(1, &["alice"]);
        tracker.on_message(joined("dave", 5));
        assert_resume_after(tracker.fill_gap(), 1);

        tracker.on_message(resync_error("too far behind"));

        assert_eq!(
            outputs(&mut tracker),
            [Output::FetchSnapshot {
                party_id: party_id(),
                refused_resume: Some("too far behind".into()),
            }]
        );
        tracker.on_snapshot(
            party_id(),
            Some("too far behind".into()),
            Ok(party(4, &["alice", "bob", "carol"])),
        );
        let events = events(&mut tracker);
        assert_eq!(seqs(&events), [4, 5]);
        assert!(matches!(
            &events[0],
            WsEvent::Message(ServerMessage::PartyUpdate {
                request_id: None,
                ..
            })
        ));
        assert_eq!(members(&tracker), ["alice", "bob", "carol", "dave"]);
        assert!(tracker.take_view_changed());
    }

    #[test]
    fn a_snapshot_no_newer_than_the_view_is_not_shown_unless_a_resume_was_refused() {
        let mut tracker = following(5, &["alice"]);

        tracker.on_snapshot(party_id(), None, Ok(party(5, &["alice"])));
        tracker.on_snapshot(party_id(), None, Ok(party(4, &["alice"])));
        assert_eq!(events(&mut tracker), []);

        tracker.on_snapshot(party_id(), Some("gone".into()), Ok(party(5, &["alice"])));
        assert_eq!(seqs(&events(&mut tracker)), [5]);
    }

    #[test]
    fn a_party_gone_while_the_socket_was_down_is_reported_lost() {
        let mut tracker = following(3, &["alice", "bob"]);
        tracker.on_message(resync_error("not in this party"));
        assert_eq!(outputs(&mut tracker).len(), 1);

        tracker.on_snapshot(
            party_id(),
            Some("not in this party".into()),
            Err(refused(StatusCode::NOT_FOUND, "party not found")),
        );

        assert_eq!(
            events(&mut tracker),
            [WsEvent::PartyLost {
                party_id: party_id(),
                detail: "party not found".into(),
            }]
        );
        assert_eq!(tracker.view(), None);
        assert_eq!(tracker.resume(), None);
    }

    #[test]
    fn joining_a_party_not_followed_fetches_it_and_holds_its_events_meanwhile() {
        let mut tracker = Tracker::new(peer_id("alice"), None);

        tracker.on_message(joined("alice", 3));
        let first = outputs(&mut tracker);
        tracker.on_message(joined("carol", 5));
        tracker.on_message(joined("bob", 4));
        assert_eq!(outputs(&mut tracker), []);
        tracker.on_snapshot(party_id(), None, Ok(party(3, &["host", "alice"])));

        assert!(matches!(
            &first[..],
            [
                Output::Event {
                    event: WsEvent::Message(ServerMessage::PeerJoined { seq: 3, .. }),
                    followed: None
                },
                Output::FetchSnapshot {
                    refused_resume: None,
                    ..
                },
            ]
        ));
        assert_eq!(seqs(&events(&mut tracker)), [3, 4, 5]);
        assert_eq!(members(&tracker), ["alice", "bob", "carol", "host"]);
        assert_eq!(tracker.followed_party(), Some(&party_id()));
    }

    #[test]
    fn without_the_snapshot_held_events_go_out_as_they_came() {
        let mut tracker = Tracker::new(peer_id("alice"), None);
        tracker.on_message(joined("alice", 3));
        tracker.on_message(joined("carol", 5));
        tracker.on_message(joined("bob", 4));
        let _ = outputs(&mut tracker);

        tracker.on_snapshot(
            party_id(),
            None,
            Err(refused(StatusCode::SERVICE_UNAVAILABLE, "busy")),
        );

        assert_eq!(seqs(&events(&mut tracker)), [4, 5]);
        assert_eq!(tracker.view(), None);
    }

    #[test]
    fn events_passed_on_before_tracking_are_not_repeated_by_the_replay() {
        let mut tracker = Tracker::new(peer_id("alice"), None);
        tracker.on_message(joined("bob", 2));
        tracker.on_message(joined("carol", 3));
        assert_eq!(seqs(&events(&mut tracker)), [2, 3]);

        tracker.track(party(1, &["alice"]));
        assert_resume_after(tracker.resume(), 1);
        tracker.on_message(joined("bob", 2));
        tracker.on_message(joined("carol", 3));
        tracker.on_message(joined("dave", 4));

        assert_eq!(seqs(&events(&mut tracker)), [4]);
        assert_eq!(members(&tracker), ["alice", "bob", "carol", "dave"]);
    }

    #[test]
    fn tracking_keeps_a_newer_view_of_the_same_party() {
        let mut tracker = following(4, &["alice", "bob"]);

        tracker.track(party(2, &["alice"]));

        assert_eq!(view_seq(&tracker), Some(4));
        assert_eq!(members(&tracker), ["alice", "bob"]);
    }

    #[test]
    fn an_unrequested_party_update_is_adopted_when_nothing_is_followed() {
        let mut tracker = Tracker::new(peer_id("alice"), None);

        tracker.on_message(update(&party(7, &["host", "alice"])));
        tracker.on_message(joined("bob", 8));

        assert_eq!(seqs(&events(&mut tracker)), [7, 8]);
        assert_eq!(view_seq(&tracker), Some(8));
        assert!(tracker.take_view_changed());
    }

    #[test]
    fn the_party_ending_stops_following_it_even_past_a_gap() {
        let mut tracker = following(2, &["alice", "bob"]);
        tracker.on_message(joined("dave", 9));

        tracker.on_message(ended(7));

        let outputs = outputs(&mut tracker);
        assert!(matches!(
            &outputs[..],
            [Output::Event {
                event: WsEvent::Message(ServerMessage::PartyEnded { seq: 7, .. }),
                followed: None
            }]
        ));
        assert_eq!(tracker.view(), None);
        assert_eq!(tracker.fill_gap(), None);
        assert_eq!(tracker.current_update(), None);
    }

    #[test]
    fn leaving_the_party_oneself_stops_following_it() {
        let mut tracker = following(2, &["alice", "bob"]);

        tracker.on_message(left("alice", 3));

        assert_eq!(seqs(&events(&mut tracker)), [3]);
        assert_eq!(tracker.view(), None);
    }

    #[test]
    fn events_say_which_party_was_followed_when_they_were_produced() {
        let mut tracker = following(1, &["alice"]);

        tracker.on_message(joined("bob", 2));
        tracker.on_message(ack("heartbeat-1"));

        assert_eq!(
            outputs(&mut tracker),
            [
                Output::Event {
                    event: WsEvent::Message(joined("bob", 2)),
                    followed: Some(party_id()),
                },
                Output::Event {
                    event: WsEvent::Message(ack("heartbeat-1")),
                    followed: Some(party_id()),
                },
            ]
        );
    }

    #[test]
    fn nothing_is_resumed_when_nothing_is_followed() {
        let mut tracker = Tracker::new(peer_id("alice"), None);

        assert_eq!(tracker.resume(), None);
        assert_eq!(tracker.fill_gap(), None);
        assert_eq!(tracker.current_update(), None);
    }

    #[test]
    fn a_seq_of_u64_max_past_a_gap_is_held_until_the_events_before_it_are_in() {
        let mut tracker = following(5, &["alice"]);

        tracker.on_message(joined("bob", u64::MAX));
        assert_eq!(events(&mut tracker), []);
        assert_resume_after(tracker.fill_gap(), 5);
        tracker.on_message(update(&party(u64::MAX - 1, &["alice", "carol"])));

        assert_eq!(seqs(&events(&mut tracker)), [u64::MAX - 1, u64::MAX]);
        assert_eq!(view_seq(&tracker), Some(u64::MAX));
        assert_eq!(members(&tracker), ["alice", "bob", "carol"]);
    }

    #[test]
    fn nothing_follows_a_view_at_u64_max() {
        let mut tracker = Tracker::new(peer_id("alice"), None);
        tracker.on_message(update(&party(u64::MAX, &["alice"])));
        assert_eq!(seqs(&events(&mut tracker)), [u64::MAX]);

        tracker.on_message(joined("bob", u64::MAX));
        tracker.on_message(joined("carol", 0));
        tracker.on_message(left("alice", u64::MAX));
        tracker.on_message(ended(u64::MAX));

        assert_eq!(events(&mut tracker), []);
        assert_eq!(view_seq(&tracker), Some(u64::MAX));
        assert_eq!(members(&tracker), ["alice"]);
        assert_eq!(tracker.fill_gap(), None);
    }

    #[test]
    fn events_held_when_the_view_jumps_to_u64_max_are_dropped_as_seen() {
        let mut tracker = following(5, &["alice"]);
        tracker.on_message(joined("carol", 7));

        tracker.on_message(update(&party(u64::MAX, &["alice", "bob"])));

        assert_eq!(seqs(&events(&mut tracker)), [u64::MAX]);
        assert_eq!(members(&tracker), ["alice", "bob"]);
        assert_eq!(tracker.fill_gap(), None);
    }
}
