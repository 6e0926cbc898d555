//! The write path: every change to the shared state is one [`WriteOp`],
//! applied by [`apply`] inside a write transaction (a [`Change`]), with a
//! typed [`Outcome`].
//!
//! How the transaction runs is decided once, by the backend (see
//! [`super::Mode`]): on PostgreSQL each op runs alone in its own
//! transaction on the caller's task, here in [`Service::write`]; on SQLite
//! it is queued to the group-commit writer (`group_commit.rs`), which runs
//! many ops in one transaction. Either way an op is plain data and
//! [`apply`] reads nothing but the op and the transaction, so the same op
//! can run again (alone, when a shared transaction failed) with the same
//! meaning.
//!
//! To add a write: a variant here, its outcome, one arm in [`apply`], and a
//! public method (in the module of its noun) that builds the op and turns
//! the outcome back into its own type.

use std::sync::Arc;

use lanrage_proto::{
    Invite, KickResponse, Name, NatReport, PartyId, PathOutcome, PathReport, PathsResponse, PeerId,
    PeerInfo, PublicKey, RelayId, ServerMessage, SettingsPatch, SettingsResponse, Signal,
    SignalData, Timestamp,
};
use lanrage_rules::{Admission, InviteSecret};

use super::{
    Error, Joined, Left, Result, Service, Transferred, invites::Redeemed, relay_choice::Recomputed,
};
use crate::{
    config::Config,
    events::{Event, Revoked},
    store::{RttEntry, Store, StoreResult, Tx},
};

/// One change to the shared state.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    /// `caller` creates a party it hosts, leaving the one it is in.
    CreateParty {
        caller: PeerId,
        name: Name,
        host: PeerInfo,
        settings: Option<SettingsPatch>,
    },
    /// `caller` joins a party (or moves to it, or refreshes its info).
    JoinParty {
        caller: PeerId,
        party_id: PartyId,
        info: PeerInfo,
        how: Admission,
    },
    /// The host `caller` changes some of its party's settings.
    PatchSettings {
        caller: PeerId,
        party_id: PartyId,
        patch: SettingsPatch,
    },
    /// The host `caller` hands its party to `new_host_id`.
    TransferHost {
        caller: PeerId,
        party_id: PartyId,
        new_host_id: PeerId,
        expected_epoch: Option<u64>,
    },
    /// The host `caller` removes `peer_id` (and bans it with `ban`).
    Kick {
        caller: PeerId,
        party_id: PartyId,
        peer_id: PeerId,
        ban: bool,
    },
    /// The host `caller` makes a join code for its party.
    CreateInvite {
        caller: PeerId,
        party_id: PartyId,
        max_uses: u32,
        ttl_secs: u64,
    },
    /// The host `caller` revokes a live invite of its party.
    RevokeInvite {
        caller: PeerId,
        party_id: PartyId,
        nameplate: String,
    },
    /// A wrong secret was given for the invite holding `nameplate`.
    InviteFailure { nameplate: String },
    /// `caller` redeems a join code.
    JoinByCode {
        caller: PeerId,
        nameplate: String,
        secret: InviteSecret,
        info: PeerInfo,
    },
    /// `peer_id` (the caller) replaces its round-trip report.
    ReportRtts {
        party_id: PartyId,
        peer_id: PeerId,
        rtts: Vec<RttEntry>,
    },
    /// `peer_id` (the caller) reports its NAT behaviour.
    ReportNat {
        party_id: PartyId,
        peer_id: PeerId,
        nat: NatReport,
    },
    /// `caller` reports outcomes of connecting to other members.
    ReportPaths {
        caller: PeerId,
        party_id: PartyId,
        reports: Vec<PathReport>,
    },
    /// Path plan: recomputes the party's plans.
    RecomputePaths { party_id: PartyId },
    /// Relay choice: recomputes the party's recommendation.
    RecomputeRelay { party_id: PartyId },
    /// Presence: hands a migrating party over from a host still absent
    /// since before `cutoff`.
    ReplaceAbsentHost {
        party_id: PartyId,
        cutoff: Timestamp,
        now: Timestamp,
    },
    /// `peer_id` leaves a party (already checked to be the caller).
    LeaveParty { party_id: PartyId, peer_id: PeerId },
    /// `caller` queues a signal for another member.
    SendSignal {
        caller: PeerId,
        party_id: PartyId,
        to_peer_id: PeerId,
        signal_data: SignalData,
    },
    /// Cleanup: removes a member still silent since before `cutoff`.
    RemoveIfStale {
        party_id: PartyId,
        peer_id: PeerId,
        cutoff: Timestamp,
        now: Timestamp,
    },
    /// Cleanup: ends a party whose host is no longer among its members.
    EndIfOrphaned { party_id: PartyId, now: Timestamp },
    /// Registration: stores a new token (by its hash) for `peer_id`.
    IssueToken {
        token_hash: String,
        peer_id: PeerId,
        created_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Revokes the tokens of `peer_id` that `tokens` names (a logout).
    RevokeTokens { peer_id: PeerId, tokens: Revoked },
    /// The operator ends the party.
    EndParty { party_id: PartyId },
    /// The operator takes `peer_id` out of the party.
    RemoveMember { party_id: PartyId, peer_id: PeerId },
    /// The operator revokes every token of `peer_id`, takes it out of its
    /// party, and bans it (and its bound key) when `ban` is set.
    RevokePeer { peer_id: PeerId, ban: bool },
    /// A key-bound peer moves its binding to `public_key`, which it just
    /// proved; its one token from then on is the one given here.
    RotateKey {
        peer_id: PeerId,
        public_key: PublicKey,
        token_hash: String,
        created_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Ops that only tests need: they hold, fail or break the writer.
    #[cfg(test)]
    Test(TestOp),
}

/// What a [`WriteOp`] did.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// [`WriteOp::CreateParty`] and [`WriteOp::JoinParty`].
    Joined(Joined),
    /// [`WriteOp::LeaveParty`], [`WriteOp::EndParty`] and
    /// [`WriteOp::RemoveMember`].
    Left(Left),
    /// [`WriteOp::SendSignal`]: the signal as queued.
    SignalSent(Signal),
    /// [`WriteOp::RemoveIfStale`]: `None` when the member was gone or no
    /// longer silent.
    RemovedIfStale(Option<Left>),
    /// [`WriteOp::EndIfOrphaned`]: whether the party ended.
    EndedIfOrphaned(bool),
    /// [`WriteOp::ReplaceAbsentHost`]: whether the host changed.
    HostReplaced(bool),
    /// [`WriteOp::PatchSettings`].
    Settings(SettingsResponse),
    /// [`WriteOp::TransferHost`].
    Transferred(Transferred),
    /// [`WriteOp::Kick`].
    Kicked(KickResponse),
    /// [`WriteOp::CreateInvite`].
    InviteCreated(Invite),
    /// [`WriteOp::RevokeInvite`].
    InviteRevoked,
    /// [`WriteOp::InviteFailure`].
    FailureCounted,
    /// [`WriteOp::JoinByCode`].
    Redeemed(Redeemed),
    /// [`WriteOp::ReportRtts`]: the ignored relay IDs, and whether
    /// announcing a change had to wait.
    RttsReported((Vec<RelayId>, bool)),
    /// [`WriteOp::RecomputeRelay`].
    RelayRecomputed(Recomputed),
    /// [`WriteOp::ReportNat`] and [`WriteOp::RecomputePaths`].
    PathsPlanned(PathsResponse),
    /// [`WriteOp::ReportPaths`]: each outcome with its class pair.
    PathsReported(Vec<((String, String), PathOutcome)>),
    /// [`WriteOp::IssueToken`].
    TokenIssued,
    /// [`WriteOp::RevokeTokens`] and [`WriteOp::RevokePeer`]: how many
    /// tokens were revoked.
    Revoked(u64),
    /// [`WriteOp::RotateKey`].
    Rotated,
    #[cfg(test)]
    Tested,
}

/// Applies `op` inside `change`: the one dispatch from an op to the code
/// that carries it out. On error the caller undoes the op's writes (the
/// transaction is dropped, or its savepoint rolled back).
pub(super) async fn apply(change: &mut Change<'_>, op: &WriteOp) -> Result<Outcome> {
    match op {
        WriteOp::CreateParty {
            caller,
            name,
            host,
            settings,
        } => Service::create_in(change, caller, name, host, settings.as_ref())
            .await
            .map(Outcome::Joined),
        WriteOp::JoinParty {
            caller,
            party_id,
            info,
            how,
        } => Service::join_in(change, caller, party_id, info, *how)
            .await
            .map(Outcome::Joined),
        WriteOp::PatchSettings {
            caller,
            party_id,
            patch,
        } => Service::patch_settings_in(change, caller, party_id, patch)
            .await
            .map(Outcome::Settings),
        WriteOp::TransferHost {
            caller,
            party_id,
            new_host_id,
            expected_epoch,
        } => Service::transfer_host_in(change, caller, party_id, new_host_id, *expected_epoch)
            .await
            .map(Outcome::Transferred),
        WriteOp::Kick {
            caller,
            party_id,
            peer_id,
            ban,
        } => Service::kick_in(change, caller, party_id, peer_id, *ban)
            .await
            .map(Outcome::Kicked),
        WriteOp::CreateInvite {
            caller,
            party_id,
            max_uses,
            ttl_secs,
        } => Service::create_invite_in(change, caller, party_id, *max_uses, *ttl_secs)
            .await
            .map(Outcome::InviteCreated),
        WriteOp::RevokeInvite {
            caller,
            party_id,
            nameplate,
        } => Service::revoke_invite_in(change, caller, party_id, nameplate)
            .await
            .map(|()| Outcome::InviteRevoked),
        WriteOp::InviteFailure { nameplate } => Service::invite_failure_in(change, nameplate)
            .await
            .map(|()| Outcome::FailureCounted),
        WriteOp::JoinByCode {
            caller,
            nameplate,
            secret,
            info,
        } => Service::join_by_code_in(change, caller, nameplate, secret, info)
            .await
            .map(Outcome::Redeemed),
        WriteOp::ReportRtts {
            party_id,
            peer_id,
            rtts,
        } => Service::report_rtts_in(change, party_id, peer_id, rtts)
            .await
            .map(Outcome::RttsReported),
        WriteOp::ReportNat {
            party_id,
            peer_id,
            nat,
        } => Service::report_nat_in(change, party_id, peer_id, nat)
            .await
            .map(Outcome::PathsPlanned),
        WriteOp::ReportPaths {
            caller,
            party_id,
            reports,
        } => Service::report_paths_in(change, caller, party_id, reports)
            .await
            .map(Outcome::PathsReported),
        WriteOp::RecomputePaths { party_id } => {
            Service::recompute_paths_in(change, party_id, Timestamp::now())
                .await
                .map(Outcome::PathsPlanned)
        }
        WriteOp::RecomputeRelay { party_id } => {
            Service::recompute_relay_in(change, party_id, Timestamp::now())
                .await
                .map(Outcome::RelayRecomputed)
        }
        WriteOp::ReplaceAbsentHost {
            party_id,
            cutoff,
            now,
        } => Service::replace_absent_host_in(change, party_id, *cutoff, *now)
            .await
            .map(Outcome::HostReplaced),
        WriteOp::LeaveParty { party_id, peer_id } => Service::leave_in(change, party_id, peer_id)
            .await
            .map(Outcome::Left),
        WriteOp::SendSignal {
            caller,
            party_id,
            to_peer_id,
            signal_data,
        } => Service::send_signal_in(change, caller, party_id, to_peer_id, signal_data)
            .await
            .map(Outcome::SignalSent),
        WriteOp::RemoveIfStale {
            party_id,
            peer_id,
            cutoff,
            now,
        } => Service::remove_if_stale_in(change, party_id, peer_id, *cutoff, *now)
            .await
            .map(Outcome::RemovedIfStale),
        WriteOp::EndIfOrphaned { party_id, now } => {
            Service::end_if_orphaned_in(change, party_id, *now)
                .await
                .map(Outcome::EndedIfOrphaned)
        }
        WriteOp::IssueToken {
            token_hash,
            peer_id,
            created_at,
            expires_at,
        } => {
            if !change
                .tx
                .insert_token(token_hash, peer_id, *created_at, *expires_at)
                .await?
            {
                return Err(super::tokens::banned(peer_id));
            }
            Ok(Outcome::TokenIssued)
        }
        WriteOp::RevokeTokens { peer_id, tokens } => {
            Service::revoke_in(change, peer_id, tokens.clone())
                .await
                .map(Outcome::Revoked)
        }
        WriteOp::EndParty { party_id } => Service::end_party_in(change, party_id)
            .await
            .map(Outcome::Left),
        WriteOp::RemoveMember { party_id, peer_id } => {
            Service::remove_member_in(change, party_id, peer_id)
                .await
                .map(Outcome::Left)
        }
        WriteOp::RevokePeer { peer_id, ban } => Service::revoke_peer_in(change, peer_id, *ban)
            .await
            .map(Outcome::Revoked),
        WriteOp::RotateKey {
            peer_id,
            public_key,
            token_hash,
            created_at,
            expires_at,
        } => {
            let token = (token_hash.as_str(), *created_at, *expires_at);
            Service::rotate_in(change, peer_id, public_key, token).await?;
            Ok(Outcome::Rotated)
        }
        #[cfg(test)]
        WriteOp::Test(test) => test.apply(change).await,
    }
}

impl Outcome {
    /// The error for an outcome of the wrong kind: a bug in [`apply`].
    pub(super) fn mismatch(self, wanted: &str) -> Error {
        Error::Internal(format!("a write answered {self:?} where {wanted} was due").into())
    }
}

impl TryFrom<Outcome> for Joined {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::Joined(joined) => Ok(joined),
            other => Err(other.mismatch("Joined")),
        }
    }
}

impl TryFrom<Outcome> for Left {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::Left(left) => Ok(left),
            other => Err(other.mismatch("Left")),
        }
    }
}

impl TryFrom<Outcome> for Signal {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::SignalSent(signal) => Ok(signal),
            other => Err(other.mismatch("SignalSent")),
        }
    }
}

impl TryFrom<Outcome> for Option<Left> {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::RemovedIfStale(left) => Ok(left),
            other => Err(other.mismatch("RemovedIfStale")),
        }
    }
}

impl TryFrom<Outcome> for u64 {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::Revoked(count) => Ok(count),
            other => Err(other.mismatch("Revoked")),
        }
    }
}

impl TryFrom<Outcome> for bool {
    type Error = Error;

    fn try_from(outcome: Outcome) -> Result<Self> {
        match outcome {
            Outcome::EndedIfOrphaned(done) | Outcome::HostReplaced(done) => Ok(done),
            other => Err(other.mismatch("EndedIfOrphaned or HostReplaced")),
        }
    }
}

/// The outcomes that are their answer's own type.
macro_rules! outcome_into {
    ($($type:ty => $variant:ident),+ $(,)?) => {$(
        impl TryFrom<Outcome> for $type {
            type Error = Error;

            fn try_from(outcome: Outcome) -> Result<Self> {
                match outcome {
                    Outcome::$variant(value) => Ok(value),
                    other => Err(other.mismatch(stringify!($variant))),
                }
            }
        }
    )+};
}

outcome_into!(
    SettingsResponse => Settings,
    Transferred => Transferred,
    KickResponse => Kicked,
    Invite => InviteCreated,
    Redeemed => Redeemed,
    (Vec<RelayId>, bool) => RttsReported,
    Recomputed => RelayRecomputed,
);

impl Service {
    /// Runs `op` as one change, committed (and its events announced)
    /// before this returns. Ops that may lose a race are retried by their
    /// caller ([`Service::retrying`]), which hands in a fresh copy.
    pub(crate) async fn write(&self, op: WriteOp) -> Result<Outcome> {
        match &self.mode {
            super::Mode::SingleWriter { queue, .. } => queue.submit(op).await,
            super::Mode::SharedDatabase => {
                let mut change = Change::begin(&*self.store, &self.config).await?;
                let outcome = apply(&mut change, &op).await?;
                let events = change.commit().await?;
                // The store announces the events itself, to every instance;
                // this one forgets at once what they ended, so the caller's
                // next heartbeat is checked against the database, and what
                // they changed, so the caller reads its own write before
                // the announcement comes back.
                for event in events {
                    match event {
                        Event::Party { message, .. } => {
                            self.heartbeats.forget(&message);
                            if let Some((party_id, _)) = message.party_seq() {
                                self.snapshots.invalidate(party_id);
                            }
                        }
                        // Applied here before the caller is answered (the
                        // token cache, this instance's sockets), not only
                        // when the announcement comes back; applying it
                        // twice changes nothing.
                        revoked @ Event::Revoked { .. } => self.events.publish(revoked),
                        _ => {}
                    }
                }
                Ok(outcome)
            }
        }
    }
}

/// A write transaction and the events its ops will announce once it
/// commits.
pub(crate) struct Change<'c> {
    pub(crate) tx: Box<dyn Tx>,
    events: Vec<Event>,
    pub(crate) config: &'c Config,
}

impl std::fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Change<'c> {
    pub(super) async fn begin(store: &dyn Store, config: &'c Config) -> StoreResult<Self> {
        Ok(Self {
            tx: store.begin().await?,
            events: Vec::new(),
            config,
        })
    }
}

impl Change<'_> {
    pub(crate) fn publish_party(&mut self, message: ServerMessage, recipients: Vec<PeerId>) {
        self.events.push(Event::Party {
            message: Arc::new(message),
            recipients: recipients.into(),
        });
    }

    pub(crate) fn publish(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Applies `op` in its own savepoint: kept when it succeeds, undone
    /// with its events when it fails, so ops sharing the transaction fail
    /// alone. The outer error means the transaction itself is in doubt.
    pub(super) async fn apply_in_savepoint(
        &mut self,
        op: &WriteOp,
    ) -> StoreResult<Result<Outcome>> {
        let events = self.events.len();
        self.tx.savepoint().await?;
        let outcome = match apply(self, op).await {
            Ok(outcome) => match self.tx.release_savepoint().await {
                Ok(()) => return Ok(Ok(outcome)),
                Err(error) => Err(error.into()),
            },
            Err(error) => Err(error),
        };
        self.tx.rollback_to_savepoint().await?;
        self.events.truncate(events);
        Ok(outcome)
    }

    /// Commits; gives back the events, in the order they were made, for
    /// whoever announces them.
    pub(super) async fn commit(self) -> Result<Vec<Event>> {
        self.tx.commit().await?;
        Ok(self.events)
    }
}

/// Ops for the write path's own tests.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) enum TestOp {
    /// Adds a permit to `started`, then holds its transaction until it
    /// gets one from `release`: whatever is queued meanwhile commits as
    /// one batch.
    Hold {
        started: Arc<tokio::sync::Semaphore>,
        release: Arc<tokio::sync::Semaphore>,
    },
    /// Joins `caller` to the party, then fails: its writes must vanish.
    JoinThenFail {
        caller: PeerId,
        party_id: PartyId,
        info: PeerInfo,
    },
    /// A bug: panics inside its transaction.
    Panic,
}

#[cfg(test)]
impl TestOp {
    async fn apply(&self, change: &mut Change<'_>) -> Result<Outcome> {
        match self {
            Self::Hold { started, release } => {
                started.add_permits(1);
                let _held = release.acquire().await;
                Ok(Outcome::Tested)
            }
            Self::JoinThenFail {
                caller,
                party_id,
                info,
            } => {
                Service::join_in(change, caller, party_id, info, Admission::ById).await?;
                Err(Error::Forbidden("refused after writing".into()))
            }
            Self::Panic => panic!("a bug in a change"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::EventBus,
        metrics::Metrics,
        store::SqliteStore,
        testing::{info, peer},
    };

    #[tokio::test]
    async fn alone_in_its_transaction_a_failing_op_leaves_nothing_and_events_are_the_stores() {
        // The shared-database mode (PostgreSQL's), over SQLite: the store
        // is said to deliver events itself, so no writer and no publishing.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("control.db").display());
        let store = Arc::new(SqliteStore::open(&url).await.unwrap());
        let bus = EventBus::default();
        let mut published = bus.subscribe();
        let (service, writer) = Service::new(
            store,
            Arc::new(Config::defaults()),
            bus,
            true,
            Arc::new(Metrics::default()),
        );
        assert!(writer.is_none());
        let created = service
            .create_party(
                &peer("host"),
                Name::parse("party").unwrap(),
                info("host"),
                None,
            )
            .await
            .unwrap();
        let party_id = created.party.party_id;

        let failing = WriteOp::Test(TestOp::JoinThenFail {
            caller: peer("failing"),
            party_id: party_id.clone(),
            info: info("failing"),
        });
        let refused = service.write(failing).await;
        assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");

        let joined = service
            .join_party(&peer("guest"), &party_id, info("guest"))
            .await
            .unwrap();
        assert_eq!(joined.seq, 2, "the failed op's seq was not used");
        let (record, members) = service.store().snapshot(&party_id).await.unwrap().unwrap();
        let ids: Vec<_> = members.iter().map(|m| m.peer.peer_id.as_str()).collect();
        assert_eq!(ids, ["host", "guest"]);
        assert_eq!(record.seq, 2);
        assert!(
            published.try_recv().is_err(),
            "the service published an event"
        );
    }

    #[test]
    fn an_outcome_of_the_wrong_kind_is_an_internal_error() {
        let wrong = Outcome::EndedIfOrphaned(true);
        assert!(matches!(Joined::try_from(wrong), Err(Error::Internal(_))));
        assert!(matches!(
            bool::try_from(Outcome::EndedIfOrphaned(true)),
            Ok(true)
        ));
    }
}
