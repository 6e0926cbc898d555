//! The embedded SQLite backend: one file in WAL mode, one writer connection
//! (SQLite serializes writers anyway; one connection makes transactions queue
//! in the pool instead of failing with SQLITE_BUSY) and a pool of readers.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use lanrage_proto::{
    PartyId, Peer, PeerId, Region, Relay, RelayId, ServerMessage, Signal, Timestamp,
};
use sqlx::{
    Arguments, AssertSqlSafe, SqlSafeStr, Sqlite, SqlitePool, Transaction,
    error::BoxDynError,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
        SqliteSynchronous,
    },
};

use super::{
    Counts, EventFeed, MemberRecord, PartyRecord, PartyWithMembers, PoolState, Store, StoreError,
    StoreResult, Swept, TokenRecord, Tx,
    rows::{self, Columns},
};
use crate::events::EventBus;

/// How long a request waits for a connection before it is answered 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const READERS: u32 = 4;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn migrator() -> Migrator {
    let step = |version, description: &'static str, sql: &'static str| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
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
    ])
}

impl SqliteStore {
    /// The single writer connection's pool, for tests that hold it.
    #[cfg(test)]
    pub(crate) fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Opens (creating it and its folder if needed) and migrates the database
    /// at `url`, for example `sqlite:///var/lib/lanrage/control.db`.
    pub async fn open(url: &str) -> StoreResult<Self> {
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
            .synchronous(SqliteSynchronous::Normal)
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
        Ok(Self { writer, reader })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx::new(self.writer.begin().await?)))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
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

    async fn snapshot(&self, party_id: &PartyId) -> StoreResult<Option<PartyWithMembers>> {
        select_snapshot(&self.reader, party_id).await
    }

    async fn membership(&self, peer_id: &PeerId) -> StoreResult<Option<(PartyId, u64)>> {
        let Some(row) = sqlx::query(
            "SELECT m.party_id, p.seq FROM members m JOIN parties p ON p.party_id = m.party_id \
             WHERE m.peer_id = ?",
        )
        .bind(peer_id.as_str())
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            rows::party_id(&row)?,
            rows::unsigned(row.int("seq")?, "seq")?,
        )))
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM parties) AS parties, \
                    (SELECT COUNT(*) FROM members) AS peers, \
                    (SELECT COUNT(*) FROM relays) AS relays",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(Counts {
            parties: rows::unsigned(row.int("parties")?, "count")?,
            peers: rows::unsigned(row.int("peers")?, "count")?,
            relays: rows::unsigned(row.int("relays")?, "count")?,
        })
    }

    async fn insert_token(
        &self,
        token_hash: &str,
        peer_id: &PeerId,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (token_hash, peer_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(peer_id.as_str())
        .bind(created_at.as_micros())
        .bind(expires_at.as_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let Some(row) = sqlx::query("SELECT peer_id, expires_at FROM tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(TokenRecord {
            peer_id: rows::peer_id(&row, "peer_id")?,
            expires_at: Timestamp::from_micros(row.int("expires_at")?),
        }))
    }

    async fn touch_member(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE members SET last_seen = MAX(last_seen, ?) WHERE peer_id = ? AND party_id = ?",
        )
        .bind(at.as_micros())
        .bind(peer_id.as_str())
        .bind(party_id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (party_id, peer_id, at) in beats {
            sqlx::query(
                "UPDATE members SET last_seen = MAX(last_seen, ?) WHERE peer_id = ? AND party_id = ?",
            )
            .bind(at.as_micros())
            .bind(peer_id.as_str())
            .bind(party_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_relay(&self, relay: &Relay, seen_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO relays (relay_id, public_ip, port, region, capacity, registered_at, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (relay_id) DO UPDATE SET public_ip = excluded.public_ip, port = excluded.port, \
             region = excluded.region, capacity = excluded.capacity, last_seen = excluded.last_seen",
        )
        .bind(relay.relay_id.as_str())
        .bind(relay.public_ip.to_string())
        .bind(i64::from(relay.port))
        .bind(relay.region.as_str())
        .bind(i64::from(relay.capacity))
        .bind(relay.registered_at.as_micros())
        .bind(seen_at.as_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn delete_relay(&self, relay_id: &RelayId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM relays WHERE relay_id = ?")
            .bind(relay_id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn relays(&self, region: Option<&Region>) -> StoreResult<Vec<Relay>> {
        let rows = match region {
            Some(region) => {
                sqlx::query(
                    "SELECT relay_id, public_ip, port, region, capacity, registered_at \
                     FROM relays WHERE region = ? ORDER BY relay_id",
                )
                .bind(region.as_str())
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT relay_id, public_ip, port, region, capacity, registered_at \
                     FROM relays ORDER BY region, relay_id",
                )
                .fetch_all(&self.reader)
                .await?
            }
        };
        rows.iter().map(rows::relay_record).collect()
    }

    async fn drain_signals(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        now: Timestamp,
        limit: u64,
    ) -> StoreResult<Vec<Signal>> {
        // The single writer connection serializes drains: two never select
        // the same rows.
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT id, party_id, from_peer_id, to_peer_id, signal_data, sent_at FROM signals \
             WHERE party_id = ? AND to_peer_id = ? AND expires_at > ? AND delivered = FALSE \
             ORDER BY id LIMIT ?",
        )
        .bind(party_id.as_str())
        .bind(peer_id.as_str())
        .bind(now.as_micros())
        .bind(rows::limit_param(limit))
        .fetch_all(&mut *tx)
        .await?;
        let (ids, signals) = rows::drained_signals(&rows)?;
        if !ids.is_empty() {
            // One statement whatever the count: the ids as a JSON array.
            sqlx::query("DELETE FROM signals WHERE id IN (SELECT value FROM json_each(?))")
                .bind(rows::to_json(&ids, "signal ids")?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(signals)
    }

    async fn mark_signal_delivered(&self, id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE signals SET delivered = TRUE WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn events_after(
        &self,
        party_id: &PartyId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<ServerMessage>> {
        let rows = sqlx::query(
            "SELECT payload FROM party_events WHERE party_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(party_id.as_str())
        .bind(rows::seq_param(after_seq)?)
        .bind(rows::limit_param(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::event_payload).collect()
    }

    async fn forgive_downtime(&self, now: Timestamp, idle_since: Timestamp) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let lease = sqlx::query("SELECT ran_at FROM cleanup_lease WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        if lease.int("ran_at")? > idle_since.as_micros() {
            return Ok(false);
        }
        for statement in [
            "UPDATE members SET last_seen = ? WHERE last_seen < ?",
            "UPDATE relays SET last_seen = ? WHERE last_seen < ?",
        ] {
            sqlx::query(statement)
                .bind(now.as_micros())
                .bind(now.as_micros())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_cleanup(&self, now: Timestamp, interval_secs: u64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE cleanup_lease SET ran_at = ? WHERE id = 1 AND ran_at <= ?")
            .bind(now.as_micros())
            .bind(lease_cutoff(now, interval_secs))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stale_members(&self, cutoff: Timestamp) -> StoreResult<Vec<(PartyId, PeerId)>> {
        let rows = sqlx::query("SELECT party_id, peer_id FROM members WHERE last_seen < ?")
            .bind(cutoff.as_micros())
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| Ok((rows::party_id(row)?, rows::peer_id(row, "peer_id")?)))
            .collect()
    }

    async fn orphaned_parties(&self) -> StoreResult<Vec<PartyId>> {
        let rows = sqlx::query(
            "SELECT party_id FROM parties p WHERE NOT EXISTS \
             (SELECT 1 FROM members m WHERE m.party_id = p.party_id AND m.peer_id = p.host_id)",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::party_id).collect()
    }

    async fn sweep(
        &self,
        now: Timestamp,
        relay_cutoff: Timestamp,
        keep_events: u64,
        events_cutoff: Timestamp,
    ) -> StoreResult<Swept> {
        let mut tx = self.writer.begin().await?;
        let mut run = async |statement: &'static str, first: i64, second: Option<i64>| {
            let mut query = sqlx::query(statement).bind(first);
            if let Some(second) = second {
                query = query.bind(second);
            }
            Ok::<_, StoreError>(query.execute(&mut *tx).await?.rows_affected())
        };
        let swept = Swept {
            tokens: run(
                "DELETE FROM tokens WHERE expires_at <= ?",
                now.as_micros(),
                None,
            )
            .await?,
            relays: run(
                "DELETE FROM relays WHERE last_seen < ?",
                relay_cutoff.as_micros(),
                None,
            )
            .await?,
            // Expired unread, apart from those read over a socket.
            signals: run(
                "DELETE FROM signals WHERE expires_at <= ? AND NOT delivered",
                now.as_micros(),
                None,
            )
            .await?,
            delivered_signals: run(
                "DELETE FROM signals WHERE expires_at <= ? AND delivered",
                now.as_micros(),
                None,
            )
            .await?,
            events: run(
                "DELETE FROM party_events WHERE created_at < ? AND seq <= COALESCE( \
                 (SELECT p.seq FROM parties p WHERE p.party_id = party_events.party_id) - ?, \
                 seq)",
                events_cutoff.as_micros(),
                Some(rows::seq_param(keep_events)?),
            )
            .await?,
        };
        tx.commit().await?;
        Ok(swept)
    }
}

/// The lease is free again after 90% of an interval, so a pass that ran a
/// little early still counts for its interval.
pub(super) fn lease_cutoff(now: Timestamp, interval_secs: u64) -> i64 {
    let interval = i64::try_from(interval_secs).unwrap_or(i64::MAX / 1_000_000);
    now.as_micros()
        .saturating_sub(interval.saturating_mul(900_000))
}

async fn select_party<'e, E>(executor: E, party_id: &PartyId) -> StoreResult<Option<PartyRecord>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT party_id, name, host_id, created_at, seq FROM parties WHERE party_id = ?")
        .bind(party_id.as_str())
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(rows::party_record)
        .transpose()
}

/// Parties with their members, as `rows::snapshots_rows` reads them.
macro_rules! parties_with_members {
    () => {
        "SELECT p.party_id, p.name AS party_name, p.host_id, p.created_at, p.seq, m.peer_id, \
         m.name, m.public_key, m.nat_type, m.public_ip, m.public_port, m.local_ip, m.local_port, \
         m.last_seen, m.vip_index FROM parties p LEFT JOIN members m ON m.party_id = p.party_id"
    };
}

/// The party and its members in one statement, so they match the party's
/// seq without a transaction.
async fn select_snapshot<'e, E>(
    executor: E,
    party_id: &PartyId,
) -> StoreResult<Option<PartyWithMembers>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(concat!(
        parties_with_members!(),
        " WHERE p.party_id = ? ORDER BY m.vip_index"
    ))
    .bind(party_id.as_str())
    .fetch_all(executor)
    .await?;
    rows::snapshot_rows(&rows)
}

async fn select_members<'e, E>(executor: E, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT peer_id, name, public_key, nat_type, public_ip, public_port, local_ip, local_port, \
         last_seen, vip_index FROM members WHERE party_id = ? ORDER BY vip_index",
    )
    .bind(party_id.as_str())
    .fetch_all(executor)
    .await?;
    rows.iter().map(rows::member_record).collect()
}

async fn select_membership<'e, E>(executor: E, peer_id: &PeerId) -> StoreResult<Option<PartyId>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT party_id FROM members WHERE peer_id = ?")
        .bind(peer_id.as_str())
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(rows::party_id)
        .transpose()
}

/// A member's info, in the column order of both `members` writes: name,
/// public_key, nat_type, public_ip, public_port, local_ip, local_port,
/// last_seen.
fn bind_peer_info(args: &mut SqliteArguments, peer: &Peer) -> Result<(), BoxDynError> {
    args.add(peer.name.as_str())?;
    args.add(peer.public_key.as_str())?;
    args.add(peer.nat_type.as_str())?;
    args.add(peer.public_ip.to_string())?;
    args.add(i64::from(peer.public_port))?;
    args.add(peer.local_ip.to_string())?;
    args.add(i64::from(peer.local_port))?;
    args.add(peer.last_seen.as_micros())
}

/// A write transaction on the writer connection.
///
/// Each statement is a round trip to sqlx's SQLite worker thread, and with
/// one writer those round trips are what bounds the write rate. So writes
/// are deferred and sent together, as one multi-statement query, before the
/// next read, at [`Tx::release_savepoint`] or at commit. Inside an
/// operation the savepoint is opened by that same query, at the first
/// write: an operation that fails before writing costs no statement to
/// undo.
struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    /// Deferred writes: their statements, each ended by `;`...
    pending_sql: String,
    /// ...and their arguments, in order.
    pending_args: SqliteArguments,
    /// Between [`Tx::savepoint`] and its release or rollback.
    in_op: bool,
    /// Whether the operation's savepoint exists in the database yet.
    savepoint_open: bool,
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

    /// Queues a write; `bind` adds its arguments.
    fn defer(
        &mut self,
        sql: &str,
        bind: impl FnOnce(&mut SqliteArguments) -> Result<(), BoxDynError>,
    ) -> StoreResult<()> {
        bind(&mut self.pending_args).map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
        self.pending_sql.push_str(sql);
        self.pending_sql.push(';');
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

#[async_trait]
impl Tx for SqliteTx {
    async fn party(&mut self, party_id: &PartyId) -> StoreResult<Option<PartyRecord>> {
        // The single writer connection already serializes transactions.
        self.flush(false).await?;
        select_party(&mut *self.tx, party_id).await
    }

    async fn members(&mut self, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>> {
        self.flush(false).await?;
        select_members(&mut *self.tx, party_id).await
    }

    async fn party_and_members(
        &mut self,
        party_id: &PartyId,
    ) -> StoreResult<Option<PartyWithMembers>> {
        self.flush(false).await?;
        select_snapshot(&mut *self.tx, party_id).await
    }

    async fn join_parties(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> StoreResult<(Option<PartyWithMembers>, Option<PartyWithMembers>)> {
        // One statement for both parties: the single writer needs no locks.
        self.flush(false).await?;
        let rows = sqlx::query(concat!(
            parties_with_members!(),
            " WHERE p.party_id IN (?, (SELECT party_id FROM members WHERE peer_id = ?)) \
             ORDER BY p.party_id, m.vip_index"
        ))
        .bind(party_id.as_str())
        .bind(peer_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        let (mut target, mut previous) = (None, None);
        for party in rows::snapshots_rows(&rows)? {
            if party.0.party_id == *party_id {
                target = Some(party);
            } else {
                previous = Some(party);
            }
        }
        Ok((target, previous))
    }

    async fn membership(&mut self, peer_id: &PeerId) -> StoreResult<Option<PartyId>> {
        self.flush(false).await?;
        select_membership(&mut *self.tx, peer_id).await
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

    async fn insert_party(&mut self, party: &PartyRecord) -> StoreResult<()> {
        let seq = rows::seq_param(party.seq)?;
        self.defer(
            "INSERT INTO parties (party_id, name, host_id, created_at, seq) VALUES (?, ?, ?, ?, ?)",
            |args| {
                args.add(party.party_id.as_str())?;
                args.add(party.name.as_str())?;
                args.add(party.host_id.as_str())?;
                args.add(party.created_at.as_micros())?;
                args.add(seq)
            },
        )
    }

    async fn delete_party(&mut self, party_id: &PartyId) -> StoreResult<()> {
        self.defer("DELETE FROM parties WHERE party_id = ?", |args| {
            args.add(party_id.as_str())
        })
    }

    async fn insert_member(
        &mut self,
        party_id: &PartyId,
        member: &MemberRecord,
    ) -> StoreResult<()> {
        let peer = &member.peer;
        self.defer(
            "INSERT INTO members (name, public_key, nat_type, public_ip, public_port, local_ip, \
             local_port, last_seen, peer_id, party_id, joined_at, vip_index) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            |args| {
                bind_peer_info(args, peer)?;
                args.add(peer.peer_id.as_str())?;
                args.add(party_id.as_str())?;
                args.add(peer.last_seen.as_micros())?;
                args.add(i64::from(member.vip_index))
            },
        )
    }

    async fn update_member(&mut self, party_id: &PartyId, peer: &Peer) -> StoreResult<()> {
        self.defer(
            "UPDATE members SET name = ?, public_key = ?, nat_type = ?, public_ip = ?, public_port = ?, \
             local_ip = ?, local_port = ?, last_seen = ? WHERE peer_id = ? AND party_id = ?",
            |args| {
                bind_peer_info(args, peer)?;
                args.add(peer.peer_id.as_str())?;
                args.add(party_id.as_str())
            },
        )
    }

    async fn delete_member(&mut self, party_id: &PartyId, peer_id: &PeerId) -> StoreResult<()> {
        // A trigger drops the signals waiting for the member.
        self.defer(
            "DELETE FROM members WHERE party_id = ? AND peer_id = ?",
            |args| {
                args.add(party_id.as_str())?;
                args.add(peer_id.as_str())
            },
        )
    }

    async fn insert_event(
        &mut self,
        party_id: &PartyId,
        seq: u64,
        at: Timestamp,
        event: &ServerMessage,
        recipients: &[PeerId],
        keep_last: u64,
    ) -> StoreResult<()> {
        let oldest_dropped = seq.saturating_sub(keep_last);
        let seq = rows::seq_param(seq)?;
        let payload = rows::to_json(event, "event payload")?;
        let recipients = rows::to_json(&recipients, "event recipients")?;
        // A trigger advances the party's counter to this seq.
        self.defer(
            "INSERT INTO party_events (party_id, seq, created_at, payload, recipients) \
             VALUES (?, ?, ?, ?, ?)",
            |args| {
                args.add(party_id.as_str())?;
                args.add(seq)?;
                args.add(at.as_micros())?;
                args.add(payload)?;
                args.add(recipients)
            },
        )?;
        if oldest_dropped == 0 {
            // A log this short keeps everything: no statement to send.
            return Ok(());
        }
        let oldest_dropped = rows::seq_param(oldest_dropped)?;
        self.defer(
            "DELETE FROM party_events WHERE party_id = ? AND seq <= ?",
            |args| {
                args.add(party_id.as_str())?;
                args.add(oldest_dropped)
            },
        )
    }

    async fn queued_signals(
        &mut self,
        party_id: &PartyId,
        from_peer_id: &PeerId,
        to_peer_id: &PeerId,
        now: Timestamp,
    ) -> StoreResult<u64> {
        self.flush(false).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM signals WHERE party_id = ? AND to_peer_id = ? \
             AND from_peer_id = ? AND expires_at > ? AND delivered = FALSE",
        )
        .bind(party_id.as_str())
        .bind(to_peer_id.as_str())
        .bind(from_peer_id.as_str())
        .bind(now.as_micros())
        .fetch_one(&mut *self.tx)
        .await?;
        rows::unsigned(row.int("n")?, "count")
    }

    async fn insert_signal(&mut self, signal: &Signal, expires_at: Timestamp) -> StoreResult<i64> {
        // Sent at once, for its id; inside the operation's savepoint.
        self.flush(false).await?;
        if self.in_op && !self.savepoint_open {
            sqlx::raw_sql("SAVEPOINT op").execute(&mut *self.tx).await?;
            self.savepoint_open = true;
        }
        let done = sqlx::query(
            "INSERT INTO signals (party_id, from_peer_id, to_peer_id, signal_data, sent_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(signal.party_id.as_str())
        .bind(signal.from_peer_id.as_str())
        .bind(signal.to_peer_id.as_str())
        .bind(rows::to_json(&signal.signal_data, "signal_data")?)
        .bind(signal.sent_at.as_micros())
        .bind(expires_at.as_micros())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.last_insert_rowid())
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.flush(true).await?;
        self.tx.commit().await?;
        Ok(())
    }
}
