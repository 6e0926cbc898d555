//! Storage behind one interface.
//!
//! The party rules live once, in `lanrage-rules` (shared with the client's
//! local plane), applied by the service layer through the primitive
//! operations of a [`Tx`]; the store only says how to read and write rows.
//! Everything it returns is already validated: a row that does not parse
//! is reported as [`StoreError::Corrupt`], never passed on.
//!
//! # Layers
//!
//! - **The core** (`core.rs`): `Storage` implements
//!   [`Store`] and its transaction implements [`Tx`], once for both
//!   databases. Every statement is written there, in one SQL spelling:
//!   `?` placeholders and a few `{marker}`s, next to the code that binds
//!   its arguments and turns its rows into records (`rows.rs`).
//! - **The dialect layer**, one file per database, holding only what truly
//!   differs:
//!   - a `Dialect` value filling the markers: placeholders (`?` or `$n`),
//!     row locks (`{lock}`, `{skip_locked}`: `FOR UPDATE [SKIP LOCKED]` on
//!     PostgreSQL, nothing under SQLite's single writer), `{greatest}`
//!     (`MAX` or `GREATEST`), `{byte_order}` (`COLLATE "C"`) and
//!     `{id_list}` (a list argument as rows: `json_each` or `UNNEST`), and
//!     `serialized_writer`, which lets SQLite read both parties of a join
//!     in one unlocked statement where PostgreSQL locks them in id order;
//!   - a `Backend` (pools, opening and migrating, the event feed) and its
//!     `BackendTx`, which decides how writes travel. SQLite runs every
//!     write on a thread of its own (`sqlite_writer.rs`) that owns the one
//!     write connection (rusqlite): a transaction's statements are plain
//!     calls there, each prepared once and kept, and a write costs one
//!     hand-off to that thread and one back, however many statements it
//!     has. The group-commit writer runs there (`Store::write_runtime`),
//!     and so does each of the store's own writes (`Backend::on_writer`,
//!     through `Storage::writing` in the core); reads outside a write stay
//!     on sqlx's read-only pool. On PostgreSQL a *write group* (the
//!     statements of one operation, which never read each other's writes)
//!     is one round trip: chained into one statement of data-modifying
//!     common table expressions. PostgreSQL also announces
//!     each event and signal with `pg_notify` in the transaction
//!     (`Announcement`), where SQLite's service publishes after commit;
//!   - nothing for upserts (`ON CONFLICT … DO UPDATE SET … = excluded.…`)
//!     or `RETURNING`: both databases accept the same spelling (SQLite
//!     since 3.35; rusqlite and sqlx link the same bundled SQLite);
//!   - the few statements with no common spelling: PostgreSQL's coalesced
//!     heartbeats join against `UNNEST` arrays (SQLite sends one `UPDATE`
//!     per beat from the core's default).
//!
//! # Where each rule lives
//!
//! - A logged event advances its party's `seq`, and the party's log is
//!   trimmed to its newest events: `Tx::insert_event` in the core, one
//!   write group (until SQLite migration 5, a trigger did the first).
//! - A member that leaves takes the signals waiting for it:
//!   `Tx::delete_member` in the core, one write group (until SQLite
//!   migration 5, a trigger).
//! - A deleted party takes its members and signals with it: the schema's
//!   `ON DELETE CASCADE`, on both databases. Its events stay until pruned.
//! - One peer in at most one party (`members` keyed by `peer_id`), one
//!   virtual IP per member of a party (`UNIQUE (party_id, vip_index)`),
//!   one cleanup lease row (`CHECK (id = 1)`): schema constraints, the same
//!   on both.
//! - Everything else (who may join, which virtual IP, when a party ends):
//!   `lanrage-rules`, through the service layer.
//!
//! # The schema
//!
//! `migrations/sqlite/` and `migrations/postgres/` keep their own histories
//! (sqlx checks each applied migration's checksum, so neither can be
//! rewritten), but they describe one schema: the same tables, columns,
//! keys, indexes and foreign keys, with types differing only in spelling
//! (`INTEGER` for `BIGINT`, and for `BOOLEAN`, which SQLite lacks). The
//! tests in `tests/api_postgres/schema.rs` migrate a fresh database of each
//! kind and compare them by introspection, failing on any difference; they
//! also upgrade databases created by the migrations of the release before
//! the core and require that same schema.
//!
//! # Adding a table (or a column, or an index)
//!
//! 1. Add a migration to each folder, next number in each history, and
//!    list it in that backend's `migrator()`. Write the same DDL in both
//!    where you can (`TEXT`, `BIGINT`/`INTEGER`, `NOT NULL`, named indexes);
//!    `cargo test --test api_postgres schema` tells you where they differ.
//! 2. Write the operations in `core.rs`, once, with `?` placeholders; reach
//!    for a new `Dialect` marker only for syntax that has no common
//!    spelling, and give it a value in both dialects.
//! 3. Map rows in `rows.rs`, add the operation to [`Store`] or [`Tx`], and
//!    test it through the API suites, which run on both databases.

mod core;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_checkpoint;
mod sqlite_writer;

use async_trait::async_trait;
use lanrage_proto::{
    Name, PartyId, PartySettings, Peer, PeerId, Region, Relay, RelayId, ServerMessage, Signal,
    Timestamp,
};

pub use postgres::{PgSettings, PostgresStore};
pub use sqlite::SqliteStore;

use crate::events::{EventBus, Revoked};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (pool exhausted, connection refused,
    /// file unavailable): the caller may try again later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness constraint refused the write, or the transaction lost
    /// a race (deadlock, serialization failure): running it again may work.
    #[error("conflicting write")]
    Conflict(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("migrating the database failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0:?} is not a usable SQLite database path: {1}")]
    BadPath(String, &'static str),
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the database folder {path}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a database error means "try again later" rather than a bug:
/// SQLite busy, locked, out of memory, read-only, I/O, full or unopenable;
/// PostgreSQL connection failures, shutdowns and exhausted resources.
fn is_transient(error: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    if let Ok(sqlite) = code.parse::<i32>() {
        // Extended SQLite codes keep the primary code in the low byte.
        return matches!(sqlite & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14);
    }
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

/// PostgreSQL serialization failures and deadlocks: the transaction lost a
/// race and can simply run again.
fn is_retryable(error: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(error.code().as_deref(), Some("40001" | "40P01"))
}

impl StoreError {
    /// The kind this error is counted as in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Conflict(_) => "conflict",
            _ => "other",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error)
            }
            sqlx::Error::Database(db) if db.is_unique_violation() || is_retryable(db.as_ref()) => {
                Self::Conflict(error)
            }
            sqlx::Error::Database(db) if is_transient(db.as_ref()) => Self::Unavailable(error),
            _ => Self::Database(error),
        }
    }
}

/// How much the database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub parties: u64,
    /// Members across all parties.
    pub peers: u64,
    pub relays: u64,
}

/// The state of one connection pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// `read` or `write` on SQLite, `main` on PostgreSQL.
    pub name: &'static str,
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

impl PoolState {
    pub fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> Self {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(size).min(size);
        Self {
            name,
            idle,
            in_use: size - idle,
            max: pool.options().get_max_connections(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A store's event feed (see [`Store::deliver_events`]).
pub type EventFeed = futures_util::future::BoxFuture<'static, ()>;

/// A party's own row.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyRecord {
    pub party_id: PartyId,
    pub name: Name,
    pub host_id: PeerId,
    pub created_at: Timestamp,
    /// Number of the party's last event.
    pub seq: u64,
    pub settings: PartySettings,
    /// Starts at 1, one more per host change.
    pub host_epoch: u64,
}

/// A party and its members, as read together.
pub type PartyWithMembers = (PartyRecord, Vec<MemberRecord>);

/// A party member: its peer info and the offset of its virtual IP.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub peer: Peer,
    /// Picked by the party rules (`lanrage_rules::free_vip_index`, inside
    /// the transaction that locked the party); the schema's
    /// `UNIQUE (party_id, vip_index)` only guards it.
    pub vip_index: u16,
    /// Whether the member announced the WireGuard key it proved (it is
    /// key-bound, and this is its bound key).
    pub verified: bool,
    /// When it joined the party (a refresh keeps it): the order of
    /// succession.
    pub joined_at: Timestamp,
    /// When an instance last stored that it heard from the member other
    /// than by a heartbeat (`Timestamp::from_micros(0)`: never); with
    /// `peer.last_seen`, what makes it present.
    pub heard_at: Timestamp,
}

/// A join code's row (see the `invites` migration). Its `Debug` hides the
/// secret: a record in a log line must not give the code away.
#[derive(Clone, PartialEq)]
pub struct InviteRecord {
    /// Stored form: `frog`, `frog-lamp`.
    pub nameplate: String,
    pub party_id: PartyId,
    /// The digits.
    pub secret: String,
    pub created_by: PeerId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_uses: u32,
    pub uses: u32,
    /// Wrong secrets so far.
    pub failures: u32,
    /// When it was revoked, used up or its party ended.
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
}

impl std::fmt::Debug for InviteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteRecord")
            .field("nameplate", &self.nameplate)
            .field("party_id", &self.party_id)
            .field("secret", &"***")
            .field("expires_at", &self.expires_at)
            .field("uses", &(self.uses, self.max_uses))
            .field("failures", &self.failures)
            .field("ended_at", &self.ended_at)
            .finish_non_exhaustive()
    }
}

impl InviteRecord {
    /// Whether it can still be redeemed at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && self.expires_at > now && self.uses < self.max_uses
    }
}

/// A relay with its last status (relay choice).
#[derive(Debug, Clone, PartialEq)]
pub struct RelayStatusRecord {
    pub relay: Relay,
    /// Its last registration or status report.
    pub last_seen: Timestamp,
    /// None until the relay sends a status.
    pub sessions: Option<u32>,
    /// 0 to 1; none until the relay sends a status.
    pub load: Option<f64>,
    pub draining: bool,
    pub last_status_at: Option<Timestamp>,
}

/// What a party's path plan is computed from, and its current plans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathInputs {
    pub nats: Vec<(PeerId, lanrage_proto::NatReport)>,
    pub reports: Vec<PathReportRecord>,
    pub stats: Vec<ClassCounts>,
    pub stored: Vec<StoredPath>,
}

/// A party's stored relay recommendation and what its members were told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRelay {
    pub relay_id: Option<RelayId>,
    pub reason: Option<String>,
    /// The relay last announced (`Some(None)`: that there is none); none
    /// when nothing was announced yet.
    pub announced: Option<Option<RelayId>>,
    pub announced_at: Option<Timestamp>,
}

/// One entry of a member's round-trip report: the relay and its round
/// trip in ms (`None`: unreachable).
pub type RttEntry = (RelayId, Option<u32>);

/// A member's latest outcome report about another member.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReportRecord {
    pub from_peer: PeerId,
    pub to_peer: PeerId,
    pub outcome: lanrage_proto::PathOutcome,
    pub rtt_us: Option<u64>,
    pub reported_at: Timestamp,
}

/// A stored plan: the pair (`a < b`) and its plan.
pub type StoredPath = (PeerId, PeerId, lanrage_proto::PathPlanKind);

/// One class pair's outcomes: `(class_a, class_b)` and the counts.
pub type ClassCounts = ((String, String), lanrage_rules::ClassOutcomes);

/// The peer a token belongs to, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub peer_id: PeerId,
    pub expires_at: Timestamp,
}

/// What one cleanup pass removed without going through the party rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub tokens: u64,
    pub relays: u64,
    /// Signals that expired before their target read them.
    pub signals: u64,
    /// Signals delivered over a socket, kept until they would have expired.
    pub delivered_signals: u64,
    pub events: u64,
    /// Key challenges nobody answered in time.
    pub challenges: u64,
    /// Invites whose nameplate rested a day after they ended.
    pub invites: u64,
}

/// A key challenge as stored: the WireGuard key it was issued for and the
/// challenge key's private half.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeRecord {
    pub challenge_id: String,
    pub public_key: String,
    pub secret: [u8; 32],
    pub client: String,
    pub expires_at: Timestamp,
}

/// Whom a proven key gets a token for.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyGrant {
    /// The key's peer (bound now, or earlier): the token was stored.
    Issued(PeerId),
    /// The key's derived peer ID is bound to another key: this one was
    /// rotated away and registers nobody.
    Retired,
    /// The key's peer is banned: no token was stored.
    Banned(PeerId),
}

/// A storage backend.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a write transaction. Transactions on one party are serialized.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;

    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the connections once pending writes are done.
    async fn close(&self);

    /// The state of each connection pool.
    fn pools(&self) -> Vec<PoolState>;

    /// Where write transactions run best, when it is not the caller's
    /// runtime: SQLite's writer thread, whose connection runs their
    /// statements with no hand-off each. The group-commit writer runs
    /// there ([`crate::service::Writer::spawn`]).
    fn write_runtime(&self) -> Option<tokio::runtime::Handle>;

    /// The feed that delivers every committed event into `bus`, from all
    /// server instances sharing the database: a future the caller runs
    /// for as long as it serves (and drops to stop it). `None` when the
    /// caller must publish its own events after each commit.
    async fn deliver_events(&self, bus: EventBus) -> StoreResult<Option<EventFeed>>;

    /// The party and its members, read in one consistent snapshot.
    async fn snapshot(&self, party_id: &PartyId) -> StoreResult<Option<PartyWithMembers>>;
    /// Up to `limit` parties with their members, by party ID, from the
    /// first after `after` (the operator's list, a page at a time).
    async fn party_page(
        &self,
        after: Option<&PartyId>,
        limit: u64,
    ) -> StoreResult<Vec<PartyWithMembers>>;
    /// The party `peer_id` is in, if any, and that party's current `seq`.
    async fn membership(&self, peer_id: &PeerId) -> StoreResult<Option<(PartyId, u64)>>;
    async fn counts(&self) -> StoreResult<Counts>;

    async fn insert_token(
        &self,
        token_hash: &str,
        peer_id: &PeerId,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;
    async fn token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>>;

    /// Stores a key challenge unless `client` already has `max_outstanding`
    /// unexpired ones; false when refused.
    async fn insert_challenge(
        &self,
        challenge: &ChallengeRecord,
        now: Timestamp,
        max_outstanding: u64,
    ) -> StoreResult<bool>;
    /// Deletes the challenge and returns it: whatever the caller does with
    /// it, no one can use it again, on any instance.
    async fn take_challenge(&self, challenge_id: &str) -> StoreResult<Option<ChallengeRecord>>;
    /// For a proven key: the peer it is bound to, or else `derived` (bound
    /// to it now, unless `derived` is bound to another key); then stores a
    /// token for that peer. One transaction.
    async fn grant_key_token(
        &self,
        public_key: &str,
        derived: &PeerId,
        token_hash: &str,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<KeyGrant>;
    /// Whether `peer_id` is bound to a key, and which.
    async fn bound_key(&self, peer_id: &PeerId) -> StoreResult<Option<String>>;
    /// Whether the operator banned `peer_id`, or the key `public_key`.
    async fn banned(&self, peer_id: &PeerId, public_key: Option<&str>) -> StoreResult<bool>;
    /// Lifts the ban on `peer_id`; false when it was not banned.
    async fn unban(&self, peer_id: &PeerId) -> StoreResult<bool>;

    /// Refreshes a member's `last_seen`; false when it is not in that party.
    async fn touch_member(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Refreshes many members' `last_seen` in one transaction (coalesced
    /// heartbeats); members that left meanwhile are skipped.
    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()>;
    /// Raises the `heard_at` of each peer's membership (if it is in a
    /// party) to at least the time given, in one transaction.
    async fn mark_heard(&self, heard: &[(PeerId, Timestamp)]) -> StoreResult<()>;
    /// The invite holding `nameplate` (live or not), read outside any
    /// transaction.
    async fn invite(&self, nameplate: &str) -> StoreResult<Option<InviteRecord>>;
    /// The party's live invites at `now`, oldest first.
    async fn live_invites(
        &self,
        party_id: &PartyId,
        now: Timestamp,
    ) -> StoreResult<Vec<InviteRecord>>;
    /// Every relay with its last status, by region then ID.
    async fn relay_statuses(&self) -> StoreResult<Vec<RelayStatusRecord>>;
    /// Stores a relay's status (fields left out keep their values) and
    /// refreshes it; false when no such relay is registered.
    async fn set_relay_status(
        &self,
        relay_id: &RelayId,
        report: &lanrage_proto::RelayStatusReport,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// The party's stored recommendation.
    async fn party_relay(&self, party_id: &PartyId) -> StoreResult<StoredRelay>;
    /// The party's round-trip reports made since `since`, per member.
    async fn party_rtts(
        &self,
        party_id: &PartyId,
        since: Timestamp,
    ) -> StoreResult<Vec<(PeerId, RttEntry)>>;
    /// Parties whose recommendation may change with the relays or the
    /// clock: those with reports or with a stored choice.
    async fn parties_with_relay_inputs(&self) -> StoreResult<Vec<PartyId>>;
    /// Deletes round-trip reports made before `cutoff`; how many.
    async fn sweep_rtts(&self, cutoff: Timestamp) -> StoreResult<u64>;
    /// The party's path inputs and current plans, read together.
    async fn path_inputs(
        &self,
        party_id: &PartyId,
        reports_since: Timestamp,
        first_day: i64,
    ) -> StoreResult<PathInputs>;
    /// Outcomes per class pair from day `first_day` on (the window).
    async fn class_outcomes(&self, first_day: i64) -> StoreResult<Vec<ClassCounts>>;
    /// Parties with stored plans.
    async fn parties_with_paths(&self) -> StoreResult<Vec<PartyId>>;
    /// The party's stored plans.
    async fn party_paths(&self, party_id: &PartyId) -> StoreResult<Vec<StoredPath>>;
    /// Deletes outcome reports made before `reports_before` and statistics
    /// of days before `first_day`; how many rows.
    async fn sweep_paths(&self, reports_before: Timestamp, first_day: i64) -> StoreResult<u64>;
    /// Parties that hand over from an absent host (`host_policy` migrate)
    /// whose host was neither seen nor heard from since `cutoff` while
    /// another member was: candidates only, like [`Store::stale_members`].
    async fn absent_hosts(&self, cutoff: Timestamp) -> StoreResult<Vec<PartyId>>;

    /// Inserts the relay, or refreshes it when it is already registered
    /// (keeping its `registered_at`); either way it was last seen `seen_at`.
    async fn upsert_relay(&self, relay: &Relay, seen_at: Timestamp) -> StoreResult<()>;
    async fn delete_relay(&self, relay_id: &RelayId) -> StoreResult<bool>;
    /// All relays ordered by region then id, or one region's by id.
    async fn relays(&self, region: Option<&Region>) -> StoreResult<Vec<Relay>>;

    /// Removes and returns, oldest first, at most `limit` of the unexpired
    /// signals queued for `peer_id` in `party_id` that no socket has
    /// delivered. Exactly the rows returned are removed, in one transaction:
    /// the rest stay queued, and two drains at once never return the same
    /// signal. A row that no longer parses (stored under older limits) is
    /// neither returned nor removed: it expires.
    async fn drain_signals(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        now: Timestamp,
        limit: u64,
    ) -> StoreResult<Vec<Signal>>;

    /// Marks a signal delivered over a socket: polls no longer return it.
    async fn mark_signal_delivered(&self, id: i64) -> StoreResult<()>;

    /// The party's logged events after `after_seq`, in order, at most
    /// `limit` of them.
    async fn events_after(
        &self,
        party_id: &PartyId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<ServerMessage>>;

    /// Raises every member's and relay's `last_seen` to at least `now`,
    /// unless some instance ran a cleanup pass after `idle_since` (then the
    /// service was not down, whatever this instance did). Returns whether
    /// it forgave.
    async fn forgive_downtime(&self, now: Timestamp, idle_since: Timestamp) -> StoreResult<bool>;

    /// Claims this interval's cleanup pass; false when another instance
    /// ran one less than `interval_secs` ago.
    async fn claim_cleanup(&self, now: Timestamp, interval_secs: u64) -> StoreResult<bool>;

    /// Members whose `last_seen` is before `cutoff`: `lanrage_rules::is_stale`
    /// as a query. Candidates only: the cleanup asks the rules again for
    /// each one inside the transaction that removes it.
    async fn stale_members(&self, cutoff: Timestamp) -> StoreResult<Vec<(PartyId, PeerId)>>;
    /// Parties with no members or whose host is not a member:
    /// `lanrage_rules::orphan_end` as a query, candidates only, like
    /// [`Store::stale_members`].
    async fn orphaned_parties(&self) -> StoreResult<Vec<PartyId>>;
    /// Deletes expired tokens and signals, relays silent since
    /// `relay_cutoff`, and events older than `events_cutoff` that are beyond
    /// the last `keep_events` of their party or whose party is gone.
    async fn sweep(
        &self,
        now: Timestamp,
        relay_cutoff: Timestamp,
        keep_events: u64,
        events_cutoff: Timestamp,
    ) -> StoreResult<Swept>;
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
///
/// A backend may defer writes until its next read, savepoint release or
/// commit, so a write's failure can surface at one of those instead.
#[async_trait]
pub trait Tx: Send {
    /// The party row, locked for the rest of the transaction.
    async fn party(&mut self, party_id: &PartyId) -> StoreResult<Option<PartyRecord>>;
    async fn members(&mut self, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>>;
    /// The party row, locked as by [`Tx::party`], with its members.
    async fn party_and_members(
        &mut self,
        party_id: &PartyId,
    ) -> StoreResult<Option<PartyWithMembers>>;
    /// For `peer_id` joining `party_id`: that party, and the other party
    /// the peer is in (if any), each locked with its members. Locked in
    /// party id order, so two peers moving opposite ways between the same
    /// parties never deadlock.
    async fn join_parties(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> StoreResult<(Option<PartyWithMembers>, Option<PartyWithMembers>)>;
    /// The party `peer_id` is in, if any.
    async fn membership(&mut self, peer_id: &PeerId) -> StoreResult<Option<PartyId>>;
    /// The key bindings of `peer_id` and of `public_key`: (peer, key).
    async fn key_bindings(
        &mut self,
        peer_id: &PeerId,
        public_key: &str,
    ) -> StoreResult<Vec<(PeerId, String)>>;

    /// The key `peer_id` is bound to, locked for the rest of the
    /// transaction.
    async fn bound_key(&mut self, peer_id: &PeerId) -> StoreResult<Option<String>>;
    /// Binds `peer_id`, bound already, to `public_key` instead (rotation).
    async fn rebind_key(
        &mut self,
        peer_id: &PeerId,
        public_key: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Deletes the tokens of `peer_id` that `tokens` names; returns how
    /// many. A backend that delivers events itself announces the
    /// revocation (when it deleted any) once the transaction commits.
    async fn revoke_tokens(&mut self, peer_id: &PeerId, tokens: &Revoked) -> StoreResult<u64>;
    /// Bans `peer_id` and, when given, the key it is bound to.
    async fn ban(
        &mut self,
        peer_id: &PeerId,
        public_key: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()>;

    /// Starts one operation of several sharing this transaction (group
    /// commit): [`Tx::rollback_to_savepoint`] undoes its writes alone.
    async fn savepoint(&mut self) -> StoreResult<()>;
    /// Ends the operation, keeping its writes. A backend that defers
    /// writes sends them now, so a failing write is reported here at the
    /// latest.
    async fn release_savepoint(&mut self) -> StoreResult<()>;
    /// Ends the operation, undoing its writes.
    async fn rollback_to_savepoint(&mut self) -> StoreResult<()>;

    /// [`Store::insert_token`], inside this transaction.
    async fn insert_token(
        &mut self,
        token_hash: &str,
        peer_id: &PeerId,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;

    async fn insert_party(&mut self, party: &PartyRecord) -> StoreResult<()>;
    /// Stores the party's host, host epoch and settings as `party` has them.
    async fn update_party(&mut self, party: &PartyRecord) -> StoreResult<()>;
    /// Keeps `peer_id` (and, when given, the key it is bound to) out of
    /// the party until it ends.
    async fn ban_from_party(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        public_key: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// The invite holding `nameplate`, locked for the transaction.
    async fn invite(&mut self, nameplate: &str) -> StoreResult<Option<InviteRecord>>;
    /// The party's live invites at `now`, oldest first.
    async fn live_invites(
        &mut self,
        party_id: &PartyId,
        now: Timestamp,
    ) -> StoreResult<Vec<InviteRecord>>;
    /// Nameplates held by an invite that lives, or ended after
    /// `rested_since` (24 hours before `now`), each with whether its invite
    /// is live at `now`.
    async fn held_nameplates(
        &mut self,
        rested_since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<(String, bool)>>;
    /// Stores a new invite under its nameplate, taking over the row of an
    /// invite that ended before `rested_since`; false when the nameplate is
    /// still held (another invite took it meanwhile).
    async fn claim_nameplate(
        &mut self,
        invite: &InviteRecord,
        rested_since: Timestamp,
    ) -> StoreResult<bool>;
    /// Stores an invite's uses, failures and end.
    async fn update_invite(&mut self, invite: &InviteRecord) -> StoreResult<()>;
    /// Ends the party's live invites at `now` (the party ended).
    async fn end_invites(&mut self, party_id: &PartyId, now: Timestamp) -> StoreResult<()>;
    /// [`Store::relay_statuses`], inside the transaction.
    async fn relay_statuses(&mut self) -> StoreResult<Vec<RelayStatusRecord>>;
    /// [`Store::party_rtts`], inside the transaction.
    async fn party_rtts(
        &mut self,
        party_id: &PartyId,
        since: Timestamp,
    ) -> StoreResult<Vec<(PeerId, RttEntry)>>;
    /// Replaces `peer_id`'s round-trip report in the party.
    async fn replace_rtts(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        rtts: &[RttEntry],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The party's stored recommendation (its row is locked already).
    async fn party_relay(&mut self, party_id: &PartyId) -> StoreResult<StoredRelay>;
    /// Stores the party's recommendation.
    async fn set_party_relay(&mut self, party_id: &PartyId, relay: &StoredRelay)
    -> StoreResult<()>;
    /// [`Store::path_inputs`], inside the transaction.
    async fn path_inputs(
        &mut self,
        party_id: &PartyId,
        reports_since: Timestamp,
        first_day: i64,
    ) -> StoreResult<PathInputs>;
    /// [`Store::party_paths`], inside the transaction.
    async fn party_paths(&mut self, party_id: &PartyId) -> StoreResult<Vec<StoredPath>>;
    /// Stores `peer_id`'s NAT behaviour in the party.
    async fn set_peer_nat(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        nat: &lanrage_proto::NatReport,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Stores `report` (replacing the previous one about the same pair,
    /// same direction) and counts its outcome for `classes` on `day`.
    async fn add_path_report(
        &mut self,
        party_id: &PartyId,
        report: &PathReportRecord,
        classes: &(String, String),
        day: i64,
    ) -> StoreResult<()>;
    /// Stores the plans of `pairs`, replacing theirs.
    async fn set_party_paths(
        &mut self,
        party_id: &PartyId,
        pairs: &[StoredPath],
    ) -> StoreResult<()>;
    /// Whether the party's host banned `peer_id` or the key `public_key`.
    async fn banned_from_party(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        public_key: &str,
    ) -> StoreResult<bool>;
    /// Deletes the party with its members and signals (its events stay
    /// until pruned).
    async fn delete_party(&mut self, party_id: &PartyId) -> StoreResult<()>;

    async fn insert_member(&mut self, party_id: &PartyId, member: &MemberRecord)
    -> StoreResult<()>;
    /// Replaces a member's peer info (its virtual IP stays).
    async fn update_member(&mut self, party_id: &PartyId, peer: &Peer) -> StoreResult<()>;
    /// Removes a member and the signals waiting for it.
    async fn delete_member(&mut self, party_id: &PartyId, peer_id: &PeerId) -> StoreResult<()>;

    /// Logs a party event for `recipients` and advances the party's event
    /// counter to `seq` (the locked party's `seq` plus one); a backend that
    /// delivers events itself announces it when the transaction commits.
    /// In the same write, the party's log is trimmed to its newest
    /// `keep_last` events, so a burst never piles up, whatever its age.
    async fn insert_event(
        &mut self,
        party_id: &PartyId,
        seq: u64,
        at: Timestamp,
        event: &ServerMessage,
        recipients: &[PeerId],
        keep_last: u64,
    ) -> StoreResult<()>;

    /// How many undelivered, unexpired signals from `from_peer_id` wait
    /// for `to_peer_id`.
    async fn queued_signals(
        &mut self,
        party_id: &PartyId,
        from_peer_id: &PeerId,
        to_peer_id: &PeerId,
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Queues a signal; returns its id.
    async fn insert_signal(&mut self, signal: &Signal, expires_at: Timestamp) -> StoreResult<i64>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Opens the backend a database URL names: `sqlite:` (its commits synced
/// as `sqlite` says) or `postgres:`.
pub async fn connect(
    url: &str,
    pg: PgSettings,
    sqlite: crate::config::SqliteSync,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        return Ok(std::sync::Arc::new(
            SqliteStore::open_with(url, sqlite).await?,
        ));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Ok(std::sync::Arc::new(PostgresStore::open(url, pg).await?));
    }
    Err(StoreError::UnsupportedUrl(url.to_owned()))
}
