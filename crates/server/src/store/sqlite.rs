//! The embedded SQLite backend: one file in WAL mode, one writer connection
//! on a thread of its own (`sqlite_writer.rs`: SQLite serializes writers
//! anyway, and one connection makes transactions queue instead of failing
//! with SQLITE_BUSY) and sqlx's pool of readers.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use rusqlite::{Connection, OpenFlags};
use sqlx::{
    Arguments, AssertSqlSafe, Sqlite, SqlitePool,
    migrate::Migrator,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use tokio::sync::OwnedMutexGuard;

use super::{
    EventFeed, PoolState, StoreError, StoreResult,
    core::{Announcement, Arg, Backend, BackendTx, Dialect, Query, RenderCache, Storage},
    rows,
    sqlite_checkpoint::{Checkpointer, WRITER_CHECKPOINT_PAGES},
    sqlite_writer::{self, WriterRow, WriterThread},
};
use crate::{config::SqliteSync, events::EventBus};

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const READERS: u32 = 4;
static RENDERED: RenderCache = RenderCache::new();

/// The SQLite store.
pub type SqliteStore = Storage<SqliteBackend>;

/// The SQLite side of [`Storage`].
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    writer: std::sync::Arc<WriterThread>,
    checkpointer: std::sync::Arc<Checkpointer>,
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
        step(
            7,
            "revocation and bans",
            include_str!("../../migrations/sqlite/0007_revocation_and_bans.sql"),
        ),
        step(
            8,
            "host authority",
            include_str!("../../migrations/sqlite/0008_host_authority.sql"),
        ),
        step(
            9,
            "invites",
            include_str!("../../migrations/sqlite/0009_invites.sql"),
        ),
        step(
            10,
            "relay choice",
            include_str!("../../migrations/sqlite/0010_relay_choice.sql"),
        ),
        step(
            11,
            "path plan",
            include_str!("../../migrations/sqlite/0011_path_plan.sql"),
        ),
    ])
}

impl SqliteStore {
    /// The writer connection, held: for tests that look at it, or keep
    /// every write waiting.
    #[cfg(test)]
    pub(crate) async fn writer_connection(&self) -> OwnedMutexGuard<Connection> {
        self.backend.writer.connection().await.unwrap()
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
        let path = options.get_filename().to_owned();
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
        let (synchronous, pragma) = match sync {
            SqliteSync::Normal => (SqliteSynchronous::Normal, "NORMAL"),
            SqliteSync::Full => (SqliteSynchronous::Full, "FULL"),
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(folder) = path.parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        // sqlx migrates (its history table and checksums), on a connection
        // of its own that is closed again; the file is then in WAL mode.
        let migrating = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(sqlite_writer::ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let migrated = migrator().run(&migrating).await;
        migrating.close().await;
        migrated?;
        let writer = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // temp_store: each op of a group commit runs in a savepoint, and
        // SQLite keeps a savepoint's page copies (the statement journal)
        // in a temporary file by default: a pwrite per page, about a tenth
        // of the writer's time under churn. In memory they cost a copy;
        // nothing durable lives there. wal_autocheckpoint: checkpoints run
        // on a thread of their own (`sqlite_checkpoint.rs`); the writer's
        // is only the bound.
        writer.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {pragma}; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
        ))?;
        let writer = std::sync::Arc::new(WriterThread::start(writer)?);
        let checkpointer = std::sync::Arc::new(Checkpointer::start(&path, pragma)?);
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(sqlite_writer::ACQUIRE_TIMEOUT)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Storage {
            backend: SqliteBackend {
                writer,
                checkpointer,
                reader,
            },
        })
    }
}

/// A write transaction on the writer connection, run on the calling
/// thread (the writer thread, for every write of the server: see
/// `sqlite_writer.rs`), each statement prepared once and kept.
///
/// Inside an operation the savepoint is opened at its first write: an
/// operation that fails before writing costs no statement to undo.
pub struct SqliteTx {
    connection: OwnedMutexGuard<Connection>,
    /// Until committed; dropped before that, it rolls back.
    open: bool,
    /// Between `BackendTx::savepoint` and its release or rollback.
    in_op: bool,
    /// Whether the operation's savepoint exists in the database yet.
    savepoint_open: bool,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTx")
            .field("open", &self.open)
            .field("in_op", &self.in_op)
            .field("savepoint_open", &self.savepoint_open)
            .finish_non_exhaustive()
    }
}

/// A statement in SQLite's spelling.
fn render(template: &'static str) -> std::borrow::Cow<'static, str> {
    SqliteBackend::DIALECT.statement(&RENDERED, &[template])
}

impl SqliteTx {
    fn begin(connection: OwnedMutexGuard<Connection>) -> StoreResult<Self> {
        // IMMEDIATE: the write lock at once, so another process cannot make
        // the transaction fail half-way by writing first.
        sqlite_writer::execute(&connection, "BEGIN IMMEDIATE", &[])?;
        Ok(Self {
            connection,
            open: true,
            in_op: false,
            savepoint_open: false,
        })
    }

    fn control(&self, sql: &str) -> StoreResult<()> {
        sqlite_writer::execute(&self.connection, sql, &[])?;
        Ok(())
    }

    /// Before a write: the operation's savepoint must exist.
    fn open_savepoint(&mut self) -> StoreResult<()> {
        if self.in_op && !self.savepoint_open {
            self.control("SAVEPOINT op")?;
            self.savepoint_open = true;
        }
        Ok(())
    }

    fn execute_now(&mut self, query: Query<'_>) -> StoreResult<u64> {
        self.open_savepoint()?;
        sqlite_writer::execute(&self.connection, &render(query.template), &query.args)
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open
            && let Err(error) = self.control("ROLLBACK")
        {
            tracing::warn!(%error, "rolling back a SQLite write transaction failed");
        }
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
            Arg::NullableInt(value) => to.add(value),
            Arg::NullableText(value) => to.add(value),
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
        AssertSqlSafe(render(query.template)),
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
        SqliteTx::begin(self.writer.connection().await?)
    }

    async fn read(&self, query: Query<'_>) -> StoreResult<Vec<SqliteRow>> {
        Ok(statement(query)?.fetch_all(&self.reader).await?)
    }

    async fn write(&self, query: Query<'_>) -> StoreResult<u64> {
        let connection = self.writer.connection().await?;
        sqlite_writer::execute(&connection, &render(query.template), &query.args)
    }

    async fn on_writer<T: Send + 'static>(
        &self,
        job: BoxFuture<'static, StoreResult<T>>,
    ) -> StoreResult<T> {
        self.writer.run(job).await
    }

    fn write_runtime(&self) -> Option<tokio::runtime::Handle> {
        Some(self.writer.runtime().clone())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.checkpointer.close().await;
        self.writer.close().await;
    }

    fn pools(&self) -> Vec<PoolState> {
        let in_use = u32::from(self.writer.busy());
        vec![
            PoolState::of("read", &self.reader),
            PoolState {
                name: "write",
                idle: 1 - in_use,
                in_use,
                max: 1,
            },
        ]
    }

    async fn deliver_events(&self, _bus: EventBus) -> StoreResult<Option<EventFeed>> {
        // One process owns the file: the service publishes after commit.
        Ok(None)
    }
}

#[async_trait]
impl BackendTx for SqliteTx {
    type Row = WriterRow;

    async fn fetch(&mut self, query: Query<'_>) -> StoreResult<Vec<WriterRow>> {
        sqlite_writer::fetch(&self.connection, &render(query.template), &query.args)
    }

    async fn execute(&mut self, query: Query<'_>) -> StoreResult<u64> {
        self.execute_now(query)
    }

    async fn execute_returning(&mut self, query: Query<'_>) -> StoreResult<Vec<WriterRow>> {
        self.open_savepoint()?;
        sqlite_writer::fetch(&self.connection, &render(query.template), &query.args)
    }

    async fn write(&mut self, group: Vec<Query<'_>>) -> StoreResult<()> {
        for query in group {
            self.execute_now(query)?;
        }
        Ok(())
    }

    async fn announce(&mut self, _what: Announcement<'_>) -> StoreResult<()> {
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        self.in_op = true;
        self.savepoint_open = false;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.in_op = false;
        if std::mem::take(&mut self.savepoint_open) {
            self.control("RELEASE op")?;
        }
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.in_op = false;
        if std::mem::take(&mut self.savepoint_open) {
            self.control("ROLLBACK TO op")?;
            self.control("RELEASE op")?;
        }
        Ok(())
    }

    async fn commit(mut self) -> StoreResult<()> {
        // Savepoints still open are committed with it.
        self.control("COMMIT")?;
        self.open = false;
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
            let mode: i64 = store
                .writer_connection()
                .await
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
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
                .fetch_one(&store.backend.reader)
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
            .fetch_one(&store.backend.reader)
            .await
            .unwrap();
        assert_eq!(signals, 0, "a leaving member's signals go with it");
        assert_eq!(store.events_after(&party, 0, 10).await.unwrap(), vec![left]);
        store.close().await;
    }
}
