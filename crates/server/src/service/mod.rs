//! The service layer: the rules of parties, tokens, signals and relays,
//! written once and called by both the HTTP handlers and the WebSocket hub.
//! Every change is committed first and then announced on the [`EventBus`].

mod cleanup;
mod parties;
mod relays;
mod signals;
mod tokens;

use std::sync::Arc;

use crate::{
    config::Config,
    events::EventBus,
    store::{Store, StoreError},
};

pub use cleanup::CleanupReport;
pub use parties::{Joined, Left, PartyView, virtual_ip};
pub use tokens::token_hash;

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

/// The shared core of the server: storage, settings and the event bus.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    events: EventBus,
    /// Held from the start of a party-changing transaction until its events
    /// are published, so the bus carries each party's events in `seq`
    /// order. The SQLite store has a single writer anyway, so this costs no
    /// concurrency there.
    sequencer: Arc<tokio::sync::Mutex<()>>,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, events: EventBus) -> Self {
        Self {
            store,
            config,
            events,
            sequencer: Arc::default(),
        }
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

    /// Numbers of parties and relays, for `GET /`.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        Ok(self.store.counts().await?)
    }
}

/// Fills a buffer from the operating system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(Box::new(e)))?;
    Ok(bytes)
}
