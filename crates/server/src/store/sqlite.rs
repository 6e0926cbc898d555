//! The embedded SQLite backend: one file in WAL mode, one writer connection
//! (SQLite serializes writers anyway; one connection makes transactions queue
//! in the pool instead of failing with SQLITE_BUSY) and a pool of readers.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Arguments, AssertSqlSafe, Sqlite, SqlitePool, Transaction,
    migrate::Migrator,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use super::{
    EventFeed, PoolState, StoreError, StoreResult,
    core::{Announcement, Arg, Backend, BackendTx, Dialect, Query, RenderCache, Storage},
    rows,
};
use crate::{config::SqliteSync, events::EventBus};

/// How long a request waits for a connection before it is answered 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const READERS: u32 = 4;
static RENDERED: RenderCache = RenderCache::new();

/// The SQLite store.
pub type SqliteStore = Storage<SqliteBackend>;

/// The SQLite side of [`Storage`].
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn migrator() -> Migrator {
    use super::core::migration as step;

    Migrator::with_migrations(vec![
        step(
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        step(
            2,
            "events outlive parties",
            include_str!("../../migrations/sqlite/0002_events_outlive_parties.sql"),
        ),
        step(
            3,
            "fewer statements",
            include_str!("../../migrations/sqlite/0003_fewer_statements.sql"),
        ),
        step(
            4,
            "signal queues per sender",
            include_str!("../../migrations/sqlite/0004_signal_queues_per_sender.sql"),
        ),
        step(
            5,
            "rules in the storage core",
            include_str!("../../migrations/sqlite/0005_rules_in_the_storage_core.sql"),
        ),
        step(
            6,
            "key-bound identity",
            include_str!("../../migrations/sqlite/0006_key_bound_identity.sql"),
        ),
    ])
}

impl SqliteStore {
    /// The single writer connection's pool, for tests that hold it.
    #[cfg(test)]
    pub(crate) fn writer_pool(&self) -> &SqlitePool {
        &self.backend.writer
    }

    /// Opens (creating it and its folder if needed) and migrates the database
    /// at `url`, for example `sqlite:///var/lib/lanrage/control.db`, with
    /// the default synchronous mode.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, SqliteSync::default()).await
    }

    /// [`SqliteStore::open`] with commits synced as `sync` says.
    pub async fn open_with(url: &str, sync: SqliteSync) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename();
        // "" opens a private temporary database per connection (the readers
        // would never see what the writer wrote); ":memory:" loses all state
        // on restart.
        let in_memory = path.to_string_lossy().starts_with("file:sqlx-in-memory");
        if path.as_os_str().is_empty() || in_memory {
            return Err(StoreError::BadPath(
                url.to_owned(),
                "give a file path, e.g. sqlite:///var/lib/lanrage/control.db",
            ));
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SqliteSync::Normal => SqliteSynchronous::Normal,
                SqliteSync::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(folder) = options.get_filename().parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        migrator().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Storage {
            backend: SqliteBackend { writer, reader },
        })
    }
}

/// A write transaction on the writer connection.
///
/// Each statement is a round trip to sqlx's SQLite worker thread, and with
/// one writer those round trips are what bounds the write rate. So writes
/// are deferred and sent together, as one multi-statement query, before the
/// next read, at the release of the operation's savepoint or at commit. Inside an
/// operation the savepoint is opened by that same query, at the first
/// write: an operation that fails before writing costs no statement to
/// undo.
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    /// Deferred writes: their statements, each ended by `;`...
    pending_sql: String,
    /// ...and their arguments, in order.
    pending_args: SqliteArguments,
    /// Between `BackendTx::savepoint` and its release or rollback.
    in_op: bool,
    /// Whether the operation's savepoint exists in the database yet.
    savepoint_open: bool,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTx")
            .field("pending_sql", &self.pending_sql)
            .field("in_op", &self.in_op)
            .field("savepoint_open", &self.savepoint_open)
            .finish_non_exhaustive()
    }
}

impl SqliteTx {
    fn new(tx: Transaction<'static, Sqlite>) -> Self {
        Self {
            tx,
            pending_sql: String::new(),
            pending_args: SqliteArguments::default(),
            in_op: false,
            savepoint_open: false,
        }
    }

    /// Queues a write.
    fn defer(&mut self, query: Query<'_>) -> StoreResult<()> {
        add_args(&mut self.pending_args, query.args)?;
        self.pending_sql
            .push_str(&SqliteBackend::DIALECT.statement(&RENDERED, &[query.template]));
        self.pending_sql.push(';');
        Ok(())
    }

    /// Before a write sent at once: the operation's savepoint must exist.
    async fn open_savepoint(&mut self) -> StoreResult<()> {
        self.flush(false).await?;
        if self.in_op && !self.savepoint_open {
            sqlx::raw_sql("SAVEPOINT op").execute(&mut *self.tx).await?;
            self.savepoint_open = true;
        }
        Ok(())
    }

    /// Sends the deferred writes, opening the operation's savepoint first
    /// if it is not yet, and releasing it after them when `release`.
    async fn flush(&mut self, release: bool) -> StoreResult<()> {
        let release = release && self.in_op;
        if self.pending_sql.is_empty() && !(release && self.savepoint_open) {
            // Nothing written: no savepoint to open or release.
            self.in_op &= !release;
            return Ok(());
        }
        let open = self.in_op && !self.savepoint_open;
        let mut sql = String::with_capacity(self.pending_sql.len() + 24);
        if open {
            sql.push_str("SAVEPOINT op;");
        }
        sql.push_str(&self.pending_sql);
        if release {
            sql.push_str("RELEASE op;");
        }
        self.pending_sql.clear();
        let args = std::mem::take(&mut self.pending_args);
        // Set before sending: if a write fails, the savepoint it opened must
        // be rolled back to.
        self.savepoint_open |= open;
        // The few distinct combinations are each prepared once and cached.
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *self.tx)
            .await?;
        if release {
            self.savepoint_open = false;
            self.in_op = false;
        }
        Ok(())
    }
}

/// Binds a statement's arguments; a list becomes a JSON array, which
/// `json_each` reads back (see [`Dialect::id_list`]).
fn add_args(to: &mut SqliteArguments, args: Vec<Arg<'_>>) -> StoreResult<()> {
    for arg in args {
        match arg {
            Arg::Int(value) => to.add(value),
            Arg::Text(value) => to.add(value),
            Arg::Owned(value) => to.add(value),
            Arg::Ints(values) => to.add(rows::to_json(&values, "list argument")?),
        }
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
    }
    Ok(())
}

fn statement(
    query: Query<'_>,
) -> StoreResult<sqlx::query::Query<'static, Sqlite, SqliteArguments>> {
    let mut args = SqliteArguments::default();
    add_args(&mut args, query.args)?;
    Ok(sqlx::query_with(
        AssertSqlSafe(SqliteBackend::DIALECT.statement(&RENDERED, &[query.template])),
        args,
    ))
}

#[async_trait]
impl Backend for SqliteBackend {
    type Row = SqliteRow;
    type Tx = SqliteTx;
    const DIALECT: Dialect = Dialect {
        numbered_params: false,
        greatest: "MAX",
        // The single writer connection already serializes transactions.
        lock: "",
        skip_locked: "",
        // SQLite compares text bytewise unless told otherwise.
        byte_order: "",
        id_list: "SELECT value FROM json_each(?)",
        serialized_writer: true,
    };

    async fn begin(&self) -> StoreResult<SqliteTx> {
        Ok(SqliteTx::new(self.writer.begin().await?))
    }

    async fn read(&self, query: Query<'_>) -> StoreResult<Vec<SqliteRow>> {
        Ok(statement(query)?.fetch_all(&self.reader).await?)
    }

    async fn write(&self, query: Query<'_>) -> StoreResult<u64> {
        Ok(statement(query)?
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    fn pools(&self) -> Vec<PoolState> {
        vec![
            PoolState::of("read", &self.reader),
            PoolState::of("write", &self.writer),
        ]
    }

    async fn deliver_events(&self, _bus: EventBus) -> StoreResult<Option<EventFeed>> {
        // One process owns the file: the service publishes after commit.
        Ok(None)
    }
}

#[async_trait]
impl BackendTx for SqliteTx {
    type Row = SqliteRow;

    async fn fetch(&mut self, query: Query<'_>) -> StoreResult<Vec<SqliteRow>> {
        self.flush(false).await?;
        Ok(statement(query)?.fetch_all(&mut *self.tx).await?)
    }

    async fn execute(&mut self, query: Query<'_>) -> StoreResult<u64> {
        self.open_savepoint().await?;
        Ok(statement(query)?
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    async fn execute_returning(&mut self, query: Query<'_>) -> StoreResult<Vec<SqliteRow>> {
        self.open_savepoint().await?;
        Ok(statement(query)?.fetch_all(&mut *self.tx).await?)
    }

    async fn write(&mut self, group: Vec<Query<'_>>) -> StoreResult<()> {
        for query in group {
            self.defer(query)?;
        }
        Ok(())
    }

    async fn announce(&mut self, _what: Announcement<'_>) -> StoreResult<()> {
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        // Writes deferred before the operation belong outside it.
        self.flush(false).await?;
        self.in_op = true;
        self.savepoint_open = false;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.flush(true).await
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.pending_sql.clear();
        self.pending_args = SqliteArguments::default();
        self.in_op = false;
        if std::mem::take(&mut self.savepoint_open) {
            sqlx::raw_sql("ROLLBACK TO op; RELEASE op")
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn commit(mut self) -> StoreResult<()> {
        self.flush(true).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use lanrage_proto::{PartyId, PeerId, ServerMessage, Timestamp};

    use super::*;
    use crate::store::Store;

    /// `--sqlite-synchronous` reaches the connection that commits.
    #[tokio::test]
    async fn the_writer_syncs_as_configured() {
        let folder = tempfile::tempdir().unwrap();
        for (sync, pragma) in [(SqliteSync::Normal, 1), (SqliteSync::Full, 2)] {
            let url = format!(
                "sqlite://{}",
                folder.path().join(format!("{pragma}.db")).display()
            );
            let store = SqliteStore::open_with(&url, sync).await.unwrap();
            let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(store.writer_pool())
                .await
                .unwrap();
            assert_eq!(mode, pragma, "{sync:?}");
            store.close().await;
        }
    }

    /// A database written by a version whose rules lived in triggers opens,
    /// migrates, and the core keeps those rules without them.
    #[tokio::test]
    async fn a_database_from_before_the_core_migrates_and_keeps_its_rules() {
        let folder = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", folder.path().join("old.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let old = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let before_core = migrator().iter().take(4).cloned().collect();
        Migrator::with_migrations(before_core)
            .run(&old)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO parties (party_id, name, host_id, created_at, seq) \
             VALUES ('p1', 'old party', 'host', 1, 3); \
             INSERT INTO members (peer_id, party_id, name, public_key, nat_type, public_ip, \
             public_port, local_ip, local_port, last_seen, joined_at, vip_index) VALUES \
             ('host', 'p1', 'h', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'unknown', 'unknown', 0, 'unknown', 0, 1, 1, 1), \
             ('guest', 'p1', 'g', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'unknown', 'unknown', 0, 'unknown', 0, 1, 1, 2); \
             INSERT INTO signals (party_id, from_peer_id, to_peer_id, signal_data, sent_at, \
             expires_at) VALUES ('p1', 'host', 'guest', '{}', 1, 9000000000000000);",
        )
        .execute(&old)
        .await
        .unwrap();
        old.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let triggers: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'")
                .fetch_one(store.writer_pool())
                .await
                .unwrap();
        assert_eq!(triggers, 0);

        let party = PartyId::parse("p1").unwrap();
        let guest = PeerId::parse("guest").unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.delete_member(&party, &guest).await.unwrap();
        let left = ServerMessage::PartyEnded {
            party_id: party.clone(),
            reason: "test".into(),
            seq: 4,
        };
        tx.insert_event(
            &party,
            4,
            Timestamp::from_micros(2),
            &left,
            std::slice::from_ref(&guest),
            10,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let (record, members) = store.snapshot(&party).await.unwrap().unwrap();
        assert_eq!(record.seq, 4, "logging an event advances the party's seq");
        assert_eq!(members.len(), 1);
        let signals: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signals")
            .fetch_one(store.writer_pool())
            .await
            .unwrap();
        assert_eq!(signals, 0, "a leaving member's signals go with it");
        assert_eq!(store.events_after(&party, 0, 10).await.unwrap(), vec![left]);
        store.close().await;
    }
}
