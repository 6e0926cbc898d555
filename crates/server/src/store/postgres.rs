//! The PostgreSQL backend, for several server instances sharing one
//! database. Party transactions lock the party row (`FOR UPDATE`), so
//! concurrent changes to one party through different instances serialize;
//! events are announced with `pg_notify` inside the transaction, so every
//! instance hears them once committed, in commit order.

use std::time::Duration;

use async_trait::async_trait;
use lanrage_proto::{
    PartyId, Peer, PeerId, Region, Relay, RelayId, ServerMessage, Signal, Timestamp,
};
use sqlx::{
    PgPool, Postgres, SqlSafeStr, Transaction,
    migrate::{Migration, MigrationType, Migrator},
    postgres::{PgListener, PgPoolOptions},
};

use super::{
    Counts, EventFeed, MemberRecord, PartyRecord, PartyWithMembers, PoolState, Store, StoreError,
    StoreResult, Swept, TokenRecord, Tx,
    rows::{self, Columns},
    sqlite::lease_cutoff,
};
use crate::{
    events::{Event, EventBus},
    telemetry::error_chain,
};

/// The notification channel every instance listens on. Payloads are
/// `p:<party_id>:<seq>` or `s:<signal id>`: far below NOTIFY's 8000-byte
/// limit whatever the event; listeners read the rest from the tables.
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
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
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
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        step(
            2,
            "signal queues per sender",
            include_str!("../../migrations/postgres/0002_signal_queues_per_sender.sql"),
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
        Ok(Self { pool })
    }
}

/// Reads notifications and turns them into events on `bus` until it is
/// dropped (the server stops it). A lost connection is re-established, and since
/// notifications sent meanwhile are gone, `Event::Resync` tells the hub to
/// resend the current state.
async fn listen(mut listener: PgListener, pool: PgPool, bus: EventBus) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                backoff = Duration::from_millis(100);
                match load_with_retries(&pool, notification.payload()).await {
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
            Ok(None) => tracing::warn!("lost the notification connection; reconnecting"),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "notification connection failed; reconnecting");
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
async fn load_with_retries(pool: &PgPool, payload: &str) -> StoreResult<Option<Event>> {
    let mut attempt = 0;
    loop {
        match load_event(pool, payload).await {
            Err(StoreError::Unavailable(_)) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn load_event(pool: &PgPool, payload: &str) -> StoreResult<Option<Event>> {
    let bad = || StoreError::Corrupt(format!("unexpected notification {payload:?}"));
    match payload.split_once(':') {
        Some(("p", rest)) => {
            let (party, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
            let seq: i64 = seq.parse().map_err(|_| bad())?;
            let Some(row) = sqlx::query(
                "SELECT payload, recipients FROM party_events WHERE party_id = $1 AND seq = $2",
            )
            .bind(party)
            .bind(seq)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Event::Party {
                message: rows::event_payload(&row)?.into(),
                recipients: rows::event_recipients(&row)?.into(),
            }))
        }
        Some(("s", id)) => {
            let id: i64 = id.parse().map_err(|_| bad())?;
            let Some(row) = sqlx::query(
                "SELECT party_id, from_peer_id, to_peer_id, signal_data, sent_at FROM signals WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Event::Signal {
                signal: rows::signal_record(&row)?.into(),
                id,
            }))
        }
        _ => Err(bad()),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(PgTx {
            tx: self.pool.begin().await?,
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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
        Ok(Some(Box::pin(listen(listener, self.pool.clone(), bus))))
    }

    async fn snapshot(&self, party_id: &PartyId) -> StoreResult<Option<PartyWithMembers>> {
        // One statement: the members match the party's seq.
        let rows = sqlx::query(
            "SELECT p.party_id, p.name AS party_name, p.host_id, p.created_at, p.seq, m.peer_id, \
             m.name, m.public_key, m.nat_type, m.public_ip, m.public_port, m.local_ip, m.local_port, \
             m.last_seen, m.vip_index FROM parties p LEFT JOIN members m ON m.party_id = p.party_id \
             WHERE p.party_id = $1 ORDER BY m.vip_index",
        )
        .bind(party_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows::snapshot_rows(&rows)
    }

    async fn membership(&self, peer_id: &PeerId) -> StoreResult<Option<(PartyId, u64)>> {
        let Some(row) = sqlx::query(
            "SELECT m.party_id, p.seq FROM members m JOIN parties p ON p.party_id = m.party_id \
             WHERE m.peer_id = $1",
        )
        .bind(peer_id.as_str())
        .fetch_optional(&self.pool)
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
        .fetch_one(&self.pool)
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
            "INSERT INTO tokens (token_hash, peer_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(peer_id.as_str())
        .bind(created_at.as_micros())
        .bind(expires_at.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let Some(row) = sqlx::query("SELECT peer_id, expires_at FROM tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
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
            "UPDATE members SET last_seen = GREATEST(last_seen, $1) WHERE peer_id = $2 AND party_id = $3",
        )
        .bind(at.as_micros())
        .bind(peer_id.as_str())
        .bind(party_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()> {
        if beats.is_empty() {
            return Ok(());
        }
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

    async fn upsert_relay(&self, relay: &Relay, seen_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO relays (relay_id, public_ip, port, region, capacity, registered_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_relay(&self, relay_id: &RelayId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM relays WHERE relay_id = $1")
            .bind(relay_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn relays(&self, region: Option<&Region>) -> StoreResult<Vec<Relay>> {
        // COLLATE "C": the same byte order as SQLite, whatever the locale.
        let rows = match region {
            Some(region) => {
                sqlx::query(
                    "SELECT relay_id, public_ip, port, region, capacity, registered_at \
                     FROM relays WHERE region = $1 ORDER BY relay_id COLLATE \"C\"",
                )
                .bind(region.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT relay_id, public_ip, port, region, capacity, registered_at \
                     FROM relays ORDER BY region COLLATE \"C\", relay_id COLLATE \"C\"",
                )
                .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // Locked and skipped by any other drain running at the same time
        // (another poll, on this instance or another): each signal goes to
        // one answer.
        let rows = sqlx::query(
            "SELECT id, party_id, from_peer_id, to_peer_id, signal_data, sent_at FROM signals \
             WHERE party_id = $1 AND to_peer_id = $2 AND expires_at > $3 AND NOT delivered \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED",
        )
        .bind(party_id.as_str())
        .bind(peer_id.as_str())
        .bind(now.as_micros())
        .bind(rows::limit_param(limit))
        .fetch_all(&mut *tx)
        .await?;
        let (ids, signals) = rows::drained_signals(&rows)?;
        if !ids.is_empty() {
            sqlx::query("DELETE FROM signals WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(signals)
    }

    async fn mark_signal_delivered(&self, id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE signals SET delivered = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
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
            "SELECT payload FROM party_events WHERE party_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(party_id.as_str())
        .bind(rows::seq_param(after_seq)?)
        .bind(rows::limit_param(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::event_payload).collect()
    }

    async fn forgive_downtime(&self, now: Timestamp, idle_since: Timestamp) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // Locked: instances starting together decide one after the other.
        let lease = sqlx::query("SELECT ran_at FROM cleanup_lease WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        if lease.int("ran_at")? > idle_since.as_micros() {
            return Ok(false);
        }
        for statement in [
            "UPDATE members SET last_seen = $1 WHERE last_seen < $1",
            "UPDATE relays SET last_seen = $1 WHERE last_seen < $1",
        ] {
            sqlx::query(statement)
                .bind(now.as_micros())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_cleanup(&self, now: Timestamp, interval_secs: u64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE cleanup_lease SET ran_at = $1 WHERE id = 1 AND ran_at <= $2")
                .bind(now.as_micros())
                .bind(lease_cutoff(now, interval_secs))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stale_members(&self, cutoff: Timestamp) -> StoreResult<Vec<(PartyId, PeerId)>> {
        let rows = sqlx::query("SELECT party_id, peer_id FROM members WHERE last_seen < $1")
            .bind(cutoff.as_micros())
            .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let mut run = async |statement: &'static str, first: i64, second: Option<i64>| {
            let mut query = sqlx::query(statement).bind(first);
            if let Some(second) = second {
                query = query.bind(second);
            }
            Ok::<_, StoreError>(query.execute(&mut *tx).await?.rows_affected())
        };
        let swept = Swept {
            tokens: run(
                "DELETE FROM tokens WHERE expires_at <= $1",
                now.as_micros(),
                None,
            )
            .await?,
            relays: run(
                "DELETE FROM relays WHERE last_seen < $1",
                relay_cutoff.as_micros(),
                None,
            )
            .await?,
            // Expired unread, apart from those read over a socket.
            signals: run(
                "DELETE FROM signals WHERE expires_at <= $1 AND NOT delivered",
                now.as_micros(),
                None,
            )
            .await?,
            delivered_signals: run(
                "DELETE FROM signals WHERE expires_at <= $1 AND delivered",
                now.as_micros(),
                None,
            )
            .await?,
            events: run(
                "DELETE FROM party_events e WHERE e.created_at < $1 AND e.seq <= COALESCE( \
                 (SELECT p.seq FROM parties p WHERE p.party_id = e.party_id) - $2, e.seq)",
                events_cutoff.as_micros(),
                Some(rows::seq_param(keep_events)?),
            )
            .await?,
        };
        tx.commit().await?;
        Ok(swept)
    }
}

async fn select_party<'e, E>(
    executor: E,
    party_id: &PartyId,
    lock: bool,
) -> StoreResult<Option<PartyRecord>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let query = if lock {
        "SELECT party_id, name, host_id, created_at, seq FROM parties WHERE party_id = $1 FOR UPDATE"
    } else {
        "SELECT party_id, name, host_id, created_at, seq FROM parties WHERE party_id = $1"
    };
    sqlx::query(query)
        .bind(party_id.as_str())
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(rows::party_record)
        .transpose()
}

async fn select_members<'e, E>(executor: E, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(
        "SELECT peer_id, name, public_key, nat_type, public_ip, public_port, local_ip, local_port, \
         last_seen, vip_index FROM members WHERE party_id = $1 ORDER BY vip_index",
    )
    .bind(party_id.as_str())
    .fetch_all(executor)
    .await?;
    rows.iter().map(rows::member_record).collect()
}

async fn select_membership<'e, E>(executor: E, peer_id: &PeerId) -> StoreResult<Option<PartyId>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query("SELECT party_id FROM members WHERE peer_id = $1")
        .bind(peer_id.as_str())
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(rows::party_id)
        .transpose()
}

/// A write transaction on a pooled connection.
struct PgTx {
    tx: Transaction<'static, Postgres>,
}

impl PgTx {
    async fn notify(&mut self, payload: String) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn party(&mut self, party_id: &PartyId) -> StoreResult<Option<PartyRecord>> {
        select_party(&mut *self.tx, party_id, true).await
    }

    async fn members(&mut self, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>> {
        select_members(&mut *self.tx, party_id).await
    }

    async fn membership(&mut self, peer_id: &PeerId) -> StoreResult<Option<PartyId>> {
        select_membership(&mut *self.tx, peer_id).await
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

    async fn insert_party(&mut self, party: &PartyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO parties (party_id, name, host_id, created_at, seq) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(party.party_id.as_str())
        .bind(party.name.as_str())
        .bind(party.host_id.as_str())
        .bind(party.created_at.as_micros())
        .bind(rows::seq_param(party.seq)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_party(&mut self, party_id: &PartyId) -> StoreResult<()> {
        sqlx::query("DELETE FROM parties WHERE party_id = $1")
            .bind(party_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_member(
        &mut self,
        party_id: &PartyId,
        member: &MemberRecord,
    ) -> StoreResult<()> {
        let peer = &member.peer;
        sqlx::query(
            "INSERT INTO members (peer_id, party_id, name, public_key, nat_type, public_ip, public_port, \
             local_ip, local_port, last_seen, joined_at, vip_index) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
        )
        .bind(peer.peer_id.as_str())
        .bind(party_id.as_str())
        .bind(peer.name.as_str())
        .bind(peer.public_key.as_str())
        .bind(peer.nat_type.as_str())
        .bind(peer.public_ip.to_string())
        .bind(i64::from(peer.public_port))
        .bind(peer.local_ip.to_string())
        .bind(i64::from(peer.local_port))
        .bind(peer.last_seen.as_micros())
        .bind(i64::from(member.vip_index))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn update_member(&mut self, party_id: &PartyId, peer: &Peer) -> StoreResult<()> {
        sqlx::query(
            "UPDATE members SET name = $1, public_key = $2, nat_type = $3, public_ip = $4, public_port = $5, \
             local_ip = $6, local_port = $7, last_seen = $8 WHERE peer_id = $9 AND party_id = $10",
        )
        .bind(peer.name.as_str())
        .bind(peer.public_key.as_str())
        .bind(peer.nat_type.as_str())
        .bind(peer.public_ip.to_string())
        .bind(i64::from(peer.public_port))
        .bind(peer.local_ip.to_string())
        .bind(i64::from(peer.local_port))
        .bind(peer.last_seen.as_micros())
        .bind(peer.peer_id.as_str())
        .bind(party_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_member(&mut self, party_id: &PartyId, peer_id: &PeerId) -> StoreResult<()> {
        sqlx::query(
            "WITH gone AS (DELETE FROM members WHERE party_id = $1 AND peer_id = $2) \
             DELETE FROM signals WHERE party_id = $1 AND to_peer_id = $2",
        )
        .bind(party_id.as_str())
        .bind(peer_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
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
        // One statement: the event, its party's counter, and the trim of
        // the party's log to its newest `keep_last` events.
        sqlx::query(
            "WITH advanced AS (UPDATE parties SET seq = $2 WHERE party_id = $1 AND seq < $2), \
             trimmed AS (DELETE FROM party_events WHERE party_id = $1 AND seq <= $6) \
             INSERT INTO party_events (party_id, seq, created_at, payload, recipients) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(party_id.as_str())
        .bind(rows::seq_param(seq)?)
        .bind(at.as_micros())
        .bind(rows::to_json(event, "event payload")?)
        .bind(rows::to_json(&recipients, "event recipients")?)
        .bind(rows::seq_param(seq.saturating_sub(keep_last))?)
        .execute(&mut *self.tx)
        .await?;
        self.notify(format!("p:{party_id}:{seq}")).await
    }

    async fn queued_signals(
        &mut self,
        party_id: &PartyId,
        from_peer_id: &PeerId,
        to_peer_id: &PeerId,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM signals WHERE party_id = $1 AND to_peer_id = $2 \
             AND from_peer_id = $4 AND expires_at > $3 AND delivered = FALSE",
        )
        .bind(party_id.as_str())
        .bind(to_peer_id.as_str())
        .bind(now.as_micros())
        .bind(from_peer_id.as_str())
        .fetch_one(&mut *self.tx)
        .await?;
        rows::unsigned(row.int("n")?, "count")
    }

    async fn insert_signal(&mut self, signal: &Signal, expires_at: Timestamp) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO signals (party_id, from_peer_id, to_peer_id, signal_data, sent_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(signal.party_id.as_str())
        .bind(signal.from_peer_id.as_str())
        .bind(signal.to_peer_id.as_str())
        .bind(rows::to_json(&signal.signal_data, "signal_data")?)
        .bind(signal.sent_at.as_micros())
        .bind(expires_at.as_micros())
        .fetch_one(&mut *self.tx)
        .await?;
        let id = row.int("id")?;
        self.notify(format!("s:{id}")).await?;
        Ok(id)
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
