//! The service layer: the rules of parties, tokens, signals and relays,
//! written once and called by both the HTTP handlers and the WebSocket hub.
//! Every change is committed first and then announced on the [`EventBus`].
//!
//! Every change is a `WriteOp` applied by one function (`write.rs`); how
//! it reaches the database is the [`Service`]'s mode, chosen once by the
//! backend: alone in its own transaction (PostgreSQL), or queued to the
//! group-commit [`Writer`] (SQLite, `group_commit.rs`), a task the server
//! starts and stops.

mod admin;
mod cleanup;
mod group_commit;
mod heartbeats;
mod host;
mod identity;
mod invites;
mod parties;
mod paths;
mod presence;
mod realtime;
mod relay_choice;
mod relays;
mod revocation;
mod signals;
mod snapshots;
mod tokens;
mod write;

use std::{future::Future, sync::Arc, time::Duration};

use lanrage_proto::PartyId;

use crate::{
    config::Config,
    events::{self, EventBus},
    metrics::Metrics,
    store::{Counts, Store, StoreError},
};

pub use cleanup::CleanupReport;
pub use group_commit::Writer;
pub use host::Transferred;
pub use invites::LookupKeys;
/// Where a virtual-IP offset points; the rule lives in `lanrage-rules`.
pub use lanrage_rules::virtual_ip;
pub use parties::{Joined, Left, MIN_EVENT_LOG, PartyView};
pub use presence::SocketPresence;
pub use revocation::PeerRevoked;
pub use signals::MAX_SIGNALS_PER_DRAIN;
pub use tokens::{Grant, token_hash};
pub(crate) use write::{Change, WriteOp};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing, unknown or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid input.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Over a limit that lifts after `retry_after_secs`.
    #[error("{detail}")]
    Throttled {
        detail: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What kind of failure an [`Error`] is, for a transport to answer it
/// (an HTTP status, say) without looking into the store's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthorized,
    Forbidden,
    NotFound,
    /// A refused conflict, or a write that lost a race: try again.
    Conflict,
    Invalid,
    TooManyRequests,
    /// The database is unreachable for now.
    Unavailable,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthorized(_) => ErrorKind::Unauthorized,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) | Self::Store(StoreError::Conflict(_)) => ErrorKind::Conflict,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::TooManyRequests(_) | Self::Throttled { .. } => ErrorKind::TooManyRequests,
            Self::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            Self::Store(_) | Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// How long to wait before asking again, when the error says.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Throttled {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The kind of database error behind this one, for the metrics.
    pub fn database_kind(&self) -> Option<&'static str> {
        match self {
            Self::Store(store) => Some(store.kind()),
            _ => None,
        }
    }

    /// What a client is told, whatever the transport: a refusal's own
    /// words; for storage and internal failures a fixed sentence, never
    /// their internals (those are logged here, once).
    pub fn client_detail(&self) -> std::borrow::Cow<'static, str> {
        use crate::telemetry::error_chain;

        match self {
            Self::Store(StoreError::Unavailable(source)) => {
                tracing::warn!(error = %error_chain(source), "database unavailable");
                "the database is unavailable; try again shortly".into()
            }
            Self::Store(StoreError::Conflict(source)) => {
                tracing::info!(error = %error_chain(source), "write lost a race");
                "a concurrent change conflicted with this one; try again".into()
            }
            Self::Store(_) | Self::Internal(_) => {
                tracing::error!(error = %error_chain(self), "request failed");
                "internal server error".into()
            }
            refusal => refusal.to_string().into(),
        }
    }
}

impl From<lanrage_rules::RuleError> for Error {
    fn from(error: lanrage_rules::RuleError) -> Self {
        use lanrage_rules::Refusal;
        let detail = error.to_string();
        match error.refusal() {
            Refusal::NotFound => Self::NotFound(detail),
            Refusal::Forbidden => Self::Forbidden(detail),
            Refusal::Conflict => Self::Conflict(detail),
            Refusal::Invalid => Self::Invalid(detail),
        }
    }
}

/// A service over a fresh SQLite file, for unit tests: the service (its
/// group-commit writer running until the service is dropped), its store,
/// and the folder holding the file (dropped last).
#[cfg(test)]
pub(crate) async fn scratch_sqlite(
    config: Config,
) -> (Service, Arc<crate::store::SqliteStore>, tempfile::TempDir) {
    let (service, writer, store, dir) = scratch_sqlite_writer(config).await;
    writer.spawn(std::future::pending());
    (service, store, dir)
}

/// [`scratch_sqlite`], with its writer left for the test to run.
#[cfg(test)]
pub(crate) async fn scratch_sqlite_writer(
    config: Config,
) -> (
    Service,
    Writer,
    Arc<crate::store::SqliteStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("control.db").display());
    let store = Arc::new(crate::store::SqliteStore::open(&url).await.unwrap());
    let (service, writer) = Service::new(
        store.clone(),
        Arc::new(config),
        EventBus::default(),
        false,
        Arc::new(Metrics::default()),
    );
    let writer = writer.expect("a store that does not deliver events has a writer");
    (service, writer, store, dir)
}

/// The shared core of the server: storage, settings and the event bus.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    events: EventBus,
    mode: Mode,
    /// Party reads served from memory (see `snapshots.rs`).
    snapshots: Arc<snapshots::SnapshotCache>,
    heartbeats: Arc<heartbeats::Heartbeats>,
    /// Who this instance heard from (see `presence.rs`).
    presence: Arc<presence::Presence>,
    /// Join-code look-ups that led nowhere, per key (see `invites.rs`).
    failed_lookups: Arc<invites::FailedLookups>,
    /// Parties whose relay to recompute (see `relay_choice.rs`).
    relay_dirty: Arc<relay_choice::RelayDirty>,
    /// Parties whose paths to recompute (see `paths.rs`).
    paths_dirty: Arc<paths::PathsDirty>,
    tokens: Arc<tokens::TokenCache>,
    metrics: Arc<Metrics>,
}

/// How changes reach the database and their events the bus: decided once,
/// by the backend.
#[derive(Debug, Clone)]
enum Mode {
    /// Other instances may share the database (PostgreSQL). Each write runs
    /// alone in its own transaction on the caller's task; the store
    /// announces committed events to every instance, and the snapshot
    /// cache follows them on the bus.
    SharedDatabase,
    /// This process is the database's only writer (SQLite). Writes queue
    /// for the group-commit [`Writer`], which commits them in batches,
    /// drops their parties' snapshots and publishes their events in commit
    /// order.
    SingleWriter { queue: group_commit::WriteQueue },
}

/// How many times a transaction that lost a race is tried in all.
const ATTEMPTS: u32 = 6;

impl Service {
    /// `store_delivers_events` is what [`Store::deliver_events`] answered.
    ///
    /// When the store does not deliver events (SQLite), writes go through
    /// one writer, returned here: the caller runs it
    /// ([`Writer::run`], as [`crate::Server::run`] does) for as long as it
    /// uses the service. Until then writes wait; once it has stopped they
    /// are refused.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        events: EventBus,
        store_delivers_events: bool,
        metrics: Arc<Metrics>,
    ) -> (Self, Option<Writer>) {
        let heartbeats = Arc::<heartbeats::Heartbeats>::default();
        let snapshots = Arc::new(snapshots::SnapshotCache::new(config.heartbeat_flush()));
        let tokens = Arc::<tokens::TokenCache>::default();
        // The one observer: the token cache follows revocations (and the
        // feed) on every backend, the snapshot cache only where other
        // instances' changes arrive by the bus.
        let observer: events::Observer = {
            let (snapshots, tokens) = (snapshots.clone(), tokens.clone());
            if store_delivers_events {
                Box::new(move |event| {
                    snapshots.observe(event);
                    tokens.observe(event);
                })
            } else {
                Box::new(move |event| tokens.observe(event))
            }
        };
        if !events.observe(observer) {
            // A second service on one bus (only tests make one) reads
            // from the database instead of trusting caches no event
            // reaches (the single writer's snapshots it drops itself).
            if store_delivers_events {
                snapshots.disable();
            }
            tokens.disable();
        }
        let (mode, writer) = if store_delivers_events {
            (Mode::SharedDatabase, None)
        } else {
            let announce = group_commit::Announce {
                events: events.clone(),
                heartbeats: heartbeats.clone(),
                snapshots: snapshots.clone(),
            };
            let (queue, writer) = group_commit::channel(store.clone(), config.clone(), announce);
            (Mode::SingleWriter { queue }, Some(writer))
        };
        let service = Self {
            store,
            config,
            events,
            mode,
            snapshots,
            heartbeats,
            presence: Arc::default(),
            failed_lookups: Arc::default(),
            relay_dirty: Arc::default(),
            paths_dirty: Arc::default(),
            tokens,
            metrics,
        };
        (service, writer)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Numbers of parties, members and relays, for `GET /` and metrics.
    pub async fn counts(&self) -> Result<Counts> {
        Ok(self.store.counts().await?)
    }

    /// The party and its members, from memory when possible.
    pub(crate) async fn snapshot(&self, party_id: &PartyId) -> Result<Option<snapshots::Snapshot>> {
        if let Some(snapshot) = self.snapshots.get(party_id) {
            return Ok(Some(snapshot));
        }
        self.stored_snapshot(party_id).await
    }

    /// Whether a snapshot from memory may lag behind a change committed a
    /// moment ago through another instance (its announcement on the way).
    pub(crate) fn snapshots_may_lag(&self) -> bool {
        matches!(self.mode, Mode::SharedDatabase)
    }

    /// The party and its members as stored now, cached for later reads.
    pub(crate) async fn stored_snapshot(
        &self,
        party_id: &PartyId,
    ) -> Result<Option<snapshots::Snapshot>> {
        let cache = &self.snapshots;
        let since = cache.generation();
        let Some(snapshot) = self.store.snapshot(party_id).await? else {
            return Ok(None);
        };
        let snapshot = Arc::new(snapshots::PartySnapshot::new(snapshot));
        cache.put(party_id.clone(), snapshot.clone(), since);
        Ok(Some(snapshot))
    }

    /// Counts the database error behind a failure that is only logged (a
    /// background step), so metrics see it as they see failed requests.
    pub(crate) fn count_failure(&self, error: &Error) {
        if let Error::Store(store) = error {
            self.metrics.count_db_error(store);
        }
    }

    /// Runs `attempt` again (after a short, jittered pause) while its
    /// transaction loses races: unique violations, deadlocks.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(Error::Store(conflict @ StoreError::Conflict(_))) if tries < ATTEMPTS => {
                    self.metrics.count_db_error(&conflict);
                    tracing::debug!(error = %crate::telemetry::error_chain(&conflict), tries, "transaction lost a race; retrying");
                    let jitter = random_bytes::<1>().map_or(0, |[b]| u64::from(b));
                    tokio::time::sleep(Duration::from_millis(u64::from(tries) * 5 + jitter % 10))
                        .await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

/// Fills a buffer from the operating system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(Box::new(e)))?;
    Ok(bytes)
}
