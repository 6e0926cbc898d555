//! The PostgreSQL backend, for several server instances sharing one
//! database. Party transactions lock the party row (`FOR UPDATE`), so
//! concurrent changes to one party through different instances serialize;
//! events are announced with `pg_notify` inside the transaction, so every
//! instance hears them once committed, in commit order.

use std::time::Duration;

use async_trait::async_trait;
use lanrage_proto::{PartyId, PeerId, Timestamp};
use sqlx::{
    Arguments, AssertSqlSafe, PgPool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgArguments, PgListener, PgPoolOptions, PgRow},
};

use super::{
    EventFeed, PoolState, StoreError, StoreResult,
    core::{Announcement, Arg, Backend, BackendTx, Dialect, Query, RenderCache, Storage},
};
use crate::{
    events::{Event, EventBus, Revoked},
    telemetry::error_chain,
};

/// The notification channel every instance listens on. Payloads are
/// `p:<party_id>:<seq>`, `s:<signal id>` or a revocation (see
/// [`revocation_payload`]): far below NOTIFY's 8000-byte limit whatever
/// the event; listeners read the rest of a party event or signal from the
/// tables, while a revocation is whole in its payload (its rows are gone).
const CHANNEL: &str = "lanrage_events";
/// How long a request waits for a connection before it is answered 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    /// Connections in the pool.
    pub pool_size: u32,
}

/// The PostgreSQL store.
pub type PostgresStore = Storage<PgBackend>;

/// The PostgreSQL side of [`Storage`].
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
}

fn migrator() -> Migrator {
    use super::core::migration as step;

    Migrator::with_migrations(vec![
        step(
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        step(
            2,
            "signal queues per sender",
            include_str!("../../migrations/postgres/0002_signal_queues_per_sender.sql"),
        ),
        step(
            3,
            "one schema",
            include_str!("../../migrations/postgres/0003_one_schema.sql"),
        ),
        step(
            4,
            "key-bound identity",
            include_str!("../../migrations/postgres/0004_key_bound_identity.sql"),
        ),
        step(
            5,
            "revocation and bans",
            include_str!("../../migrations/postgres/0005_revocation_and_bans.sql"),
        ),
        step(
            6,
            "host authority",
            include_str!("../../migrations/postgres/0006_host_authority.sql"),
        ),
        step(
            7,
            "invites",
            include_str!("../../migrations/postgres/0007_invites.sql"),
        ),
        step(
            8,
            "relay choice",
            include_str!("../../migrations/postgres/0008_relay_choice.sql"),
        ),
        step(
            9,
            "path plan",
            include_str!("../../migrations/postgres/0009_path_plan.sql"),
        ),
    ])
}

impl PostgresStore {
    /// Connects to and migrates the database at `url`. Several instances
    /// may start at once: the migrator takes an advisory lock.
    pub async fn open(url: &str, settings: PgSettings) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        migrator().run(&pool).await?;
        Ok(Storage {
            backend: PgBackend { pool },
        })
    }
}

/// Reads notifications and turns them into events on `bus` until it is
/// dropped (the server stops it). A lost connection is re-established, and since
/// notifications sent meanwhile are gone, `Event::Resync` tells the hub to
/// resend the current state.
async fn listen(mut listener: PgListener, store: PostgresStore, bus: EventBus) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                backoff = Duration::from_millis(100);
                match load_with_retries(&store, notification.payload()).await {
                    Ok(Some(event)) => bus.publish(event),
                    Ok(None) => {}
                    Err(error) => {
                        // The event is lost to this instance: its sockets
                        // get the current state instead.
                        tracing::warn!(error = %error_chain(&error), payload = notification.payload(), "cannot load a notified event; resyncing sockets");
                        bus.publish(Event::Resync);
                    }
                }
                continue;
            }
            Ok(None) => {
                tracing::warn!("lost the notification connection; reconnecting");
                bus.publish(Event::Interrupted);
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "notification connection failed; reconnecting");
                bus.publish(Event::Interrupted);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Re-subscribe (reconnecting if needed) before telling the hub to
        // resync, so nothing committed after the resync is missed.
        while let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %error_chain(&error), "cannot listen for events yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::info!("listening for events again; resyncing sockets");
        bus.publish(Event::Resync);
    }
}

/// Loads a notified event, trying a few times while the database is busy.
async fn load_with_retries(store: &PostgresStore, payload: &str) -> StoreResult<Option<Event>> {
    let mut attempt = 0;
    loop {
        match load_event(store, payload).await {
            Err(StoreError::Unavailable(_)) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn load_event(store: &PostgresStore, payload: &str) -> StoreResult<Option<Event>> {
    let bad = || StoreError::Corrupt(format!("unexpected notification {payload:?}"));
    match payload.split_once(':') {
        Some(("p", rest)) => {
            let (party, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
            let seq: i64 = seq.parse().map_err(|_| bad())?;
            store.notified_event(party, seq).await
        }
        Some(("s", id)) => {
            let id: i64 = id.parse().map_err(|_| bad())?;
            store.notified_signal(id).await
        }
        Some(("r", rest)) => parse_revocation(rest).map(Some).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A revocation's payload: `r:1:<token hash>:<peer_id>` for one token,
/// `r:*:<kept token hash>:<peer_id>` for all of the peer's but one,
/// `r:*:-:<peer_id>` for all of them. The peer ID comes last, so whatever
/// characters it holds it is the rest of the payload.
fn revocation_payload(peer_id: &PeerId, tokens: &Revoked) -> String {
    match tokens {
        Revoked::One(hash) => format!("r:1:{hash}:{peer_id}"),
        Revoked::AllBut(Some(kept)) => format!("r:*:{kept}:{peer_id}"),
        Revoked::AllBut(None) => format!("r:*:-:{peer_id}"),
    }
}

/// The event of a revocation payload after its `r:`.
fn parse_revocation(rest: &str) -> Option<Event> {
    let (kind, rest) = rest.split_once(':')?;
    let (hash, peer_id) = rest.split_once(':')?;
    let peer_id = PeerId::parse(peer_id).ok()?;
    let tokens = match (kind, hash) {
        ("1", hash) => Revoked::One(hash.to_owned()),
        ("*", "-") => Revoked::AllBut(None),
        ("*", kept) => Revoked::AllBut(Some(kept.to_owned())),
        _ => return None,
    };
    Some(Event::Revoked { peer_id, tokens })
}

/// Binds a statement's arguments.
fn add_args(to: &mut PgArguments, args: Vec<Arg<'_>>) -> StoreResult<()> {
    for arg in args {
        match arg {
            Arg::Int(value) => to.add(value),
            Arg::Text(value) => to.add(value),
            Arg::Owned(value) => to.add(value),
            Arg::NullableInt(value) => to.add(value),
            Arg::NullableText(value) => to.add(value),
            Arg::Ints(values) => to.add(values),
        }
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
    }
    Ok(())
}

static RENDERED: RenderCache = RenderCache::new();

/// Statements that do not read each other's writes, as one (see
/// `Dialect::render_chain`).
fn statement<'a>(
    templates: &[&'static str],
    queries: impl IntoIterator<Item = Query<'a>>,
) -> StoreResult<sqlx::query::Query<'static, Postgres, PgArguments>> {
    let sql = PgBackend::DIALECT.statement(&RENDERED, templates);
    let mut args = PgArguments::default();
    for query in queries {
        add_args(&mut args, query.args)?;
    }
    Ok(sqlx::query_with(AssertSqlSafe(sql), args))
}

fn single(query: Query<'_>) -> StoreResult<sqlx::query::Query<'static, Postgres, PgArguments>> {
    statement(&[query.template], [query])
}

#[async_trait]
impl Backend for PgBackend {
    type Row = PgRow;
    type Tx = PgTx;
    const DIALECT: Dialect = Dialect {
        numbered_params: true,
        greatest: "GREATEST",
        lock: " FOR UPDATE",
        skip_locked: " FOR UPDATE SKIP LOCKED",
        // The same byte order as SQLite, whatever the database's locale.
        byte_order: " COLLATE \"C\"",
        id_list: "SELECT UNNEST(?::bigint[])",
        serialized_writer: false,
    };

    async fn begin(&self) -> StoreResult<PgTx> {
        Ok(PgTx {
            tx: self.pool.begin().await?,
        })
    }

    async fn read(&self, query: Query<'_>) -> StoreResult<Vec<PgRow>> {
        Ok(single(query)?.fetch_all(&self.pool).await?)
    }

    async fn write(&self, query: Query<'_>) -> StoreResult<u64> {
        Ok(single(query)?.execute(&self.pool).await?.rows_affected())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pools(&self) -> Vec<PoolState> {
        vec![PoolState::of("main", &self.pool)]
    }

    async fn deliver_events(&self, bus: EventBus) -> StoreResult<Option<EventFeed>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let store = Storage {
            backend: self.clone(),
        };
        Ok(Some(Box::pin(listen(listener, store, bus))))
    }

    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()> {
        // One statement for the whole batch.
        let parties: Vec<&str> = beats.iter().map(|(party, _, _)| party.as_str()).collect();
        let peers: Vec<&str> = beats.iter().map(|(_, peer, _)| peer.as_str()).collect();
        let times: Vec<i64> = beats.iter().map(|(_, _, at)| at.as_micros()).collect();
        sqlx::query(
            "UPDATE members m SET last_seen = GREATEST(m.last_seen, b.at) \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS b(party_id, peer_id, at) \
             WHERE m.party_id = b.party_id AND m.peer_id = b.peer_id",
        )
        .bind(&parties)
        .bind(&peers)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A write transaction on a pooled connection. Each write is sent at once:
/// PostgreSQL takes one statement per round trip with arguments, so a
/// group of writes goes as one statement of chained common table
/// expressions instead.
pub struct PgTx {
    tx: Transaction<'static, Postgres>,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx").finish_non_exhaustive()
    }
}

#[async_trait]
impl BackendTx for PgTx {
    type Row = PgRow;

    async fn fetch(&mut self, query: Query<'_>) -> StoreResult<Vec<PgRow>> {
        Ok(single(query)?.fetch_all(&mut *self.tx).await?)
    }

    async fn execute(&mut self, query: Query<'_>) -> StoreResult<u64> {
        Ok(single(query)?.execute(&mut *self.tx).await?.rows_affected())
    }

    async fn execute_returning(&mut self, query: Query<'_>) -> StoreResult<Vec<PgRow>> {
        Ok(single(query)?.fetch_all(&mut *self.tx).await?)
    }

    async fn write(&mut self, group: Vec<Query<'_>>) -> StoreResult<()> {
        let templates: Vec<&'static str> = group.iter().map(|query| query.template).collect();
        statement(&templates, group)?.execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn announce(&mut self, what: Announcement<'_>) -> StoreResult<()> {
        // Delivered by PostgreSQL at commit, in commit order.
        let payload = match what {
            Announcement::Event { party_id, seq } => format!("p:{party_id}:{seq}"),
            Announcement::Signal { id } => format!("s:{id}"),
            Announcement::Revoked { peer_id, tokens } => revocation_payload(peer_id, tokens),
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        sqlx::raw_sql("SAVEPOINT op").execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        sqlx::raw_sql("RELEASE SAVEPOINT op")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        sqlx::raw_sql("ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
