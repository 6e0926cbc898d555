//! The service layer: the rules of parties, tokens, signals and relays,
//! written once and called by both the HTTP handlers and the WebSocket hub.
//! Every change is committed first and then announced on the [`EventBus`].

mod cleanup;
mod group_commit;
mod heartbeats;
mod parties;
mod realtime;
mod relays;
mod signals;
mod snapshots;
mod tokens;

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use lanrage_proto::{PartyId, PeerId, ServerMessage};
use tokio::sync::{Mutex, MutexGuard};

use crate::{
    config::Config,
    events::{Event, EventBus},
    metrics::Metrics,
    store::{Counts, Store, StoreError, Tx},
};

pub use cleanup::CleanupReport;
/// Where a virtual-IP offset points; the rule lives in `lanrage-rules`.
pub use lanrage_rules::virtual_ip;
pub use parties::{Joined, Left, MIN_EVENT_LOG, PartyView};
pub use signals::MAX_SIGNALS_PER_DRAIN;
pub use tokens::{Grant, token_hash};

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
            Self::TooManyRequests(_) => ErrorKind::TooManyRequests,
            Self::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            Self::Store(_) | Self::Internal(_) => ErrorKind::Internal,
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
        use lanrage_rules::RuleError;
        match error {
            RuleError::PartyNotFound(_) | RuleError::NotAMember { .. } => {
                Self::NotFound(error.to_string())
            }
            RuleError::PartyFull(_) => Self::Conflict(error.to_string()),
        }
    }
}

/// A service over a fresh SQLite file, for unit tests: the service, its
/// store, and the folder holding the file (dropped last).
#[cfg(test)]
pub(crate) async fn scratch_sqlite(
    config: Config,
) -> (Service, Arc<crate::store::SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("control.db").display());
    let store = Arc::new(crate::store::SqliteStore::open(&url).await.unwrap());
    let service = Service::new(
        store.clone(),
        Arc::new(config),
        EventBus::default(),
        false,
        Arc::new(Metrics::default()),
    );
    (service, store, dir)
}

/// The shared core of the server: storage, settings and the event bus.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    events: EventBus,
    /// For a store that does not deliver events itself (SQLite): held from
    /// the start of a party-changing transaction until its events are
    /// published, so the bus carries each party's events in `seq` order.
    /// On SQLite only the group-commit writer task takes it, once per
    /// batch, so it costs nothing.
    sequencer: Option<Arc<Mutex<()>>>,
    heartbeats: Arc<heartbeats::Heartbeats>,
    tokens: Arc<tokens::TokenCache>,
    /// Only when every change goes through this process (SQLite).
    snapshots: Option<Arc<snapshots::SnapshotCache>>,
    /// Only with a single writer (SQLite), where it is the only writer of
    /// changes.
    group_commit: Option<Arc<group_commit::GroupCommit>>,
    metrics: Arc<Metrics>,
}

/// How many times a transaction that lost a race is tried in all.
const ATTEMPTS: u32 = 6;

impl Service {
    /// `store_delivers_events` is what [`Store::deliver_events`] answered.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        events: EventBus,
        store_delivers_events: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        let snapshots = (!store_delivers_events).then(|| {
            let fresh_for = config.heartbeat_flush();
            Arc::new(snapshots::SnapshotCache::new(fresh_for))
        });
        let mut service = Self {
            store,
            config,
            events,
            sequencer: (!store_delivers_events).then(Arc::default),
            heartbeats: Arc::default(),
            tokens: Arc::default(),
            snapshots,
            group_commit: None,
            metrics,
        };
        if !store_delivers_events {
            // The writer task's own copy has no group commit: it runs the
            // changes it is handed directly.
            let writer = group_commit::GroupCommit::start(service.clone());
            service.group_commit = Some(Arc::new(writer));
        }
        service
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
        let Some(cache) = &self.snapshots else {
            return Ok(self
                .store
                .snapshot(party_id)
                .await?
                .map(|parts| Arc::new(snapshots::PartySnapshot::new(parts))));
        };
        if let Some(snapshot) = cache.get(party_id) {
            return Ok(Some(snapshot));
        }
        let since = cache.generation();
        let Some(snapshot) = self.store.snapshot(party_id).await? else {
            return Ok(None);
        };
        let snapshot = Arc::new(snapshots::PartySnapshot::new(snapshot));
        cache.put(party_id.clone(), snapshot.clone(), since);
        Ok(Some(snapshot))
    }

    /// Runs `op` over `state` as one change, committed (its events
    /// published) before this returns. With a single writer it is queued
    /// and committed with the changes queued meanwhile; `op` may then run
    /// more than once (again alone when the shared transaction fails), so
    /// it takes its inputs by reference.
    pub(crate) async fn write<S, T, F>(&self, state: S, op: F) -> Result<T>
    where
        S: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c, 's> Fn(&'c S, &'c mut Change<'s>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        if let Some(group_commit) = &self.group_commit {
            return group_commit.submit(state, op).await;
        }
        let mut change = self.change().await?;
        let value = op(&state, &mut change).await?;
        change.commit().await?;
        Ok(value)
    }

    /// Starts a change: a write transaction whose events are published when
    /// it commits.
    async fn change(&self) -> Result<Change<'_>> {
        let order = match &self.sequencer {
            Some(sequencer) => Some(sequencer.lock().await),
            None => None,
        };
        Ok(Change {
            tx: self.store.begin().await?,
            events: Vec::new(),
            service: self,
            _order: order,
        })
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

/// A write transaction and the events it will publish once committed.
pub(crate) struct Change<'s> {
    pub(crate) tx: Box<dyn Tx>,
    events: Vec<Event>,
    service: &'s Service,
    _order: Option<MutexGuard<'s, ()>>,
}

impl std::fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("events", &self.events.len())
            .finish()
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

    /// Commits, then publishes the events, unless the store delivers them
    /// itself (it announced them inside the transaction).
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        for event in &self.events {
            if let Event::Party { message, .. } = event {
                self.service.heartbeats.forget(message);
                if let (Some(cache), Some((party_id, _))) =
                    (&self.service.snapshots, message.party_seq())
                {
                    cache.invalidate(party_id);
                }
            }
        }
        if self.service.sequencer.is_some() {
            for event in self.events {
                self.service.events.publish(event);
            }
        }
        Ok(())
    }
}

/// Fills a buffer from the operating system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(Box::new(e)))?;
    Ok(bytes)
}
