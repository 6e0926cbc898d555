//! Every storage operation, once: its SQL and its logic, over a
//! [`Backend`] that only says how to send a statement (see the module
//! doc of `store` for the layering and how to add a table).

use std::{borrow::Cow, collections::HashMap, sync::LazyLock};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use futures_util::{FutureExt, future::BoxFuture};
use lanrage_proto::{
    PartyId, Peer, PeerId, Region, Relay, RelayId, ServerMessage, Signal, Timestamp,
};

use lanrage_rules::invite_code::nameplate_rest_cutoff;

use super::{
    ChallengeRecord, ClassCounts, Counts, EventFeed, InviteRecord, KeyGrant, MemberRecord,
    PartyRecord, PartyWithMembers, PathInputs, PathReportRecord, PoolState, RelayStatusRecord,
    RttEntry, Store, StoreError, StoreResult, StoredPath, StoredRelay, Swept, TokenRecord, Tx,
    rows::{self, Columns},
};
use crate::events::{Event, EventBus, Revoked};

/// One argument of a statement. Lists travel as a JSON array on SQLite and
/// as an array on PostgreSQL; `{id_list}` reads them back as rows.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Owned(String),
    Ints(Vec<i64>),
    /// `NULL` when none.
    NullableInt(Option<i64>),
    /// `NULL` when none.
    NullableText(Option<&'a str>),
}

/// A statement in the common SQL: `?` placeholders, and `{marker}`s that
/// the [`Dialect`] fills in.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub template: &'static str,
    pub args: Vec<Arg<'a>>,
}

/// Starts a statement; arguments follow, in the order of the `?`s.
pub fn sql<'a>(template: &'static str) -> Query<'a> {
    Query {
        template,
        args: Vec::new(),
    }
}

impl<'a> Query<'a> {
    pub fn int(mut self, value: i64) -> Self {
        self.args.push(Arg::Int(value));
        self
    }

    pub fn text(mut self, value: &'a str) -> Self {
        self.args.push(Arg::Text(value));
        self
    }

    pub fn owned(mut self, value: String) -> Self {
        self.args.push(Arg::Owned(value));
        self
    }

    pub fn ints(mut self, value: Vec<i64>) -> Self {
        self.args.push(Arg::Ints(value));
        self
    }

    pub fn nullable_int(mut self, value: Option<i64>) -> Self {
        self.args.push(Arg::NullableInt(value));
        self
    }

    pub fn nullable_text(mut self, value: Option<&'a str>) -> Self {
        self.args.push(Arg::NullableText(value));
        self
    }
}

/// What differs between the two SQL dialects, as fragments for the
/// templates' markers.
#[derive(Debug)]
pub struct Dialect {
    /// `$1, $2, …` instead of `?`.
    pub numbered_params: bool,
    /// `{greatest}`: the larger of two values.
    pub greatest: &'static str,
    /// `{lock}`: ends a `SELECT` that locks its rows for the transaction.
    pub lock: &'static str,
    /// `{skip_locked}`: like `{lock}`, skipping rows another transaction
    /// holds.
    pub skip_locked: &'static str,
    /// `{byte_order}`: after an `ORDER BY` term, compares bytes whatever
    /// the database's locale.
    pub byte_order: &'static str,
    /// `{id_list}`: a subquery yielding the ids of a list argument, one
    /// per row.
    pub id_list: &'static str,
    /// Write transactions already run one at a time (SQLite's single
    /// writer connection): reads in them need no locks, so a join reads
    /// both parties in one statement.
    pub serialized_writer: bool,
}

impl Dialect {
    /// Several statements that do not read each other's writes, as one:
    /// PostgreSQL runs them together as data-modifying common table
    /// expressions, in one round trip, all on the same snapshot.
    pub fn render_chain(&self, templates: &[&str]) -> String {
        let mut out = String::new();
        let mut params = 0;
        if let Some((last, first)) = templates.split_last() {
            for (i, template) in first.iter().enumerate() {
                out.push_str(if i == 0 { "WITH " } else { ", " });
                out.push_str(&format!("w{i} AS ("));
                self.render_into(template, &mut out, &mut params);
                out.push(')');
            }
            if !first.is_empty() {
                out.push(' ');
            }
            self.render_into(last, &mut out, &mut params);
        }
        out
    }

    /// `templates` as one statement (see [`Dialect::render_chain`]),
    /// rendered on first use and then read from `cache`.
    pub fn statement(&self, cache: &RenderCache, templates: &[&'static str]) -> Cow<'static, str> {
        let Some(key) = chain_key(templates) else {
            return Cow::Owned(self.render_chain(templates));
        };
        if let Some(sql) = cache.0.read().get(&key) {
            return Cow::Borrowed(sql);
        }
        let mut cached = cache.0.write();
        let sql = cached
            .entry(key)
            .or_insert_with(|| Box::leak(self.render_chain(templates).into_boxed_str()));
        Cow::Borrowed(sql)
    }

    fn render_into(&self, template: &str, out: &mut String, params: &mut usize) {
        let mut rest = template;
        while let Some(at) = rest.find(['?', '{']) {
            out.push_str(&rest[..at]);
            if rest[at..].starts_with('?') {
                if self.numbered_params {
                    *params += 1;
                    out.push('$');
                    out.push_str(&params.to_string());
                } else {
                    out.push('?');
                }
                rest = &rest[at + 1..];
                continue;
            }
            let Some(end) = rest[at..].find('}') else {
                out.push_str(&rest[at..]);
                return;
            };
            let fragment = match &rest[at + 1..at + end] {
                "greatest" => self.greatest,
                "lock" => self.lock,
                "skip_locked" => self.skip_locked,
                "byte_order" => self.byte_order,
                "id_list" => {
                    // May hold a placeholder of its own.
                    self.render_into(self.id_list, out, params);
                    ""
                }
                _ => &rest[at..=at + end],
            };
            out.push_str(fragment);
            rest = &rest[at + end + 1..];
        }
        out.push_str(rest);
    }
}

/// Up to four templates, by address: a template is a `'static` literal, so
/// its address names it (the same text at two addresses is merely
/// rendered twice).
type ChainKey = [(usize, usize); 4];

fn chain_key(templates: &[&'static str]) -> Option<ChainKey> {
    let mut key = [(0, 0); 4];
    if templates.len() > key.len() {
        return None;
    }
    for (slot, template) in key.iter_mut().zip(templates) {
        *slot = (template.as_ptr() as usize, template.len());
    }
    Some(key)
}

/// A dialect's rendered statements, each rendered once and kept for the
/// life of the process: they come from the core's literals, so there are
/// as many as the core has statements, and a statement costs no
/// allocation to send.
#[derive(Debug)]
pub struct RenderCache(LazyLock<parking_lot::RwLock<HashMap<ChainKey, &'static str>>>);

fn empty_cache() -> parking_lot::RwLock<HashMap<ChainKey, &'static str>> {
    parking_lot::RwLock::new(HashMap::new())
}

impl RenderCache {
    pub const fn new() -> Self {
        Self(LazyLock::new(empty_cache))
    }
}

/// What a committed transaction tells other instances.
#[derive(Debug, Clone)]
pub enum Announcement<'a> {
    Event {
        party_id: &'a PartyId,
        seq: u64,
    },
    Signal {
        id: i64,
    },
    Revoked {
        peer_id: &'a PeerId,
        tokens: &'a Revoked,
    },
}

/// A database connection set-up: how statements reach the database.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    type Row: Columns + Send + Sync + 'static;
    type Tx: BackendTx + 'static;
    const DIALECT: Dialect;

    async fn begin(&self) -> StoreResult<Self::Tx>;
    /// Runs a read outside any transaction.
    async fn read(&self, query: Query<'_>) -> StoreResult<Vec<Self::Row>>;
    /// Runs a write in a transaction of its own; returns the rows it
    /// changed.
    async fn write(&self, query: Query<'_>) -> StoreResult<u64>;
    /// Runs `job`, one of the store's writes, where writes run best: on
    /// SQLite its writer thread, elsewhere in place.
    async fn on_writer<T: Send + 'static>(
        &self,
        job: BoxFuture<'static, StoreResult<T>>,
    ) -> StoreResult<T> {
        job.await
    }
    /// See [`Store::write_runtime`].
    fn write_runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }
    async fn close(&self);
    fn pools(&self) -> Vec<PoolState>;
    /// See [`Store::deliver_events`].
    async fn deliver_events(&self, bus: EventBus) -> StoreResult<Option<EventFeed>>;

    /// See [`Store::touch_members`]: one statement per beat unless the
    /// dialect can join against a list.
    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (party_id, peer_id, at) in beats {
            tx.execute(touch(party_id, peer_id, *at)).await?;
        }
        tx.commit().await
    }
}

/// A write transaction of a [`Backend`].
#[async_trait]
pub trait BackendTx: Send {
    type Row: Columns + Send + Sync;

    /// Reads, after any deferred writes.
    async fn fetch(&mut self, query: Query<'_>) -> StoreResult<Vec<Self::Row>>;
    /// Writes at once; returns the rows it changed.
    async fn execute(&mut self, query: Query<'_>) -> StoreResult<u64>;
    /// Writes at once; returns the rows of its `RETURNING` clause.
    async fn execute_returning(&mut self, query: Query<'_>) -> StoreResult<Vec<Self::Row>>;
    /// Writes statements that do not read each other's writes, in one
    /// round trip; the backend may defer them (see [`Tx`]).
    async fn write(&mut self, group: Vec<Query<'_>>) -> StoreResult<()>;
    /// Tells other instances once the transaction commits (a no-op where
    /// the service publishes its own events).
    async fn announce(&mut self, what: Announcement<'_>) -> StoreResult<()>;
    async fn savepoint(&mut self) -> StoreResult<()>;
    async fn release_savepoint(&mut self) -> StoreResult<()>;
    async fn rollback_to_savepoint(&mut self) -> StoreResult<()>;
    async fn commit(self) -> StoreResult<()>;
}

/// The one [`Store`], over either backend.
#[derive(Debug, Clone)]
pub struct Storage<B> {
    pub(super) backend: B,
}

/// A party's own row.
const PARTY: &str = "SELECT party_id, name, host_id, created_at, seq, host_policy, join_policy, \
     max_members, host_epoch FROM parties WHERE party_id = ?{lock}";

/// Relays with their status, as `rows::relay_status` reads them.
const RELAY_STATUSES: &str = "SELECT relay_id, public_ip, port, region, capacity, registered_at, \
     last_seen, sessions, load_ppm, draining, last_status_at FROM relays \
     ORDER BY region{byte_order}, relay_id{byte_order}";

const PARTY_RELAY: &str = "SELECT relay_id, relay_reason, relay_announced, relay_announced_at \
     FROM parties WHERE party_id = ?";

const PARTY_RTTS: &str = "SELECT peer_id, relay_id, rtt_ms FROM relay_rtts \
     WHERE party_id = ? AND reported_at >= ? ORDER BY peer_id, relay_id";

/// The four reads of a party's path inputs (NAT reports, outcome reports,
/// class statistics in the window, stored plans), in that order.
fn path_queries(party_id: &PartyId, since: Timestamp, first_day: i64) -> [Query<'_>; 4] {
    [
        sql("SELECT peer_id, mapping, filtering, port_mapping FROM peer_nat WHERE party_id = ?")
            .text(party_id.as_str()),
        sql(
            "SELECT from_peer, to_peer, outcome, rtt_us, reported_at FROM path_reports \
             WHERE party_id = ? AND reported_at >= ?",
        )
        .text(party_id.as_str())
        .int(since.as_micros()),
        class_outcomes_query(first_day),
        party_paths_query(party_id),
    ]
}

fn party_paths_query(party_id: &PartyId) -> Query<'_> {
    sql("SELECT a, b, plan FROM party_paths WHERE party_id = ?").text(party_id.as_str())
}

fn class_outcomes_query<'a>(first_day: i64) -> Query<'a> {
    sql(
        "SELECT class_a, class_b, CAST(SUM(direct) AS BIGINT) AS direct, \
         CAST(SUM(relayed) AS BIGINT) AS relayed, CAST(SUM(failed) AS BIGINT) AS failed \
         FROM path_stats WHERE day >= ? GROUP BY class_a, class_b \
         ORDER BY class_a{byte_order}, class_b{byte_order}",
    )
    .int(first_day)
}

fn path_inputs_of<R: Columns>(rows: [Vec<R>; 4]) -> StoreResult<PathInputs> {
    let [nats, reports, stats, stored] = rows;
    Ok(PathInputs {
        nats: nats
            .iter()
            .map(rows::peer_nat)
            .collect::<StoreResult<_>>()?,
        reports: reports
            .iter()
            .map(rows::path_report)
            .collect::<StoreResult<_>>()?,
        stats: stats
            .iter()
            .map(rows::class_counts)
            .collect::<StoreResult<_>>()?,
        stored: stored
            .iter()
            .map(rows::stored_path)
            .collect::<StoreResult<_>>()?,
    })
}

/// Invites, with the columns `rows::invite` reads.
macro_rules! select_invites {
    () => {
        "SELECT nameplate, party_id, secret, created_by, created_at, expires_at, max_uses, uses, \
         failures, ended_at, end_reason FROM invites"
    };
}

/// The live invites of a party, oldest first.
const LIVE_INVITES: &str = concat!(
    select_invites!(),
    " WHERE party_id = ? AND ended_at IS NULL AND expires_at > ? AND uses < max_uses \
     ORDER BY created_at, nameplate"
);

fn live_invites_query<'a>(party_id: &'a PartyId, now: Timestamp) -> Query<'a> {
    sql(LIVE_INVITES)
        .text(party_id.as_str())
        .int(now.as_micros())
}

/// Whether member `m` announced the key it is bound to, as an integer on
/// both databases (PostgreSQL's `EXISTS` is a boolean).
macro_rules! member_verified {
    () => {
        "CAST(CASE WHEN EXISTS (SELECT 1 FROM key_bindings kb WHERE kb.peer_id = m.peer_id \
         AND kb.public_key = m.public_key) THEN 1 ELSE 0 END AS BIGINT) AS verified"
    };
}

/// Parties with their members, as `rows::snapshots_rows` reads them.
macro_rules! parties_with_members {
    () => {
        concat!(
            "SELECT p.party_id, p.name AS party_name, p.host_id, p.created_at, p.seq, \
             p.host_policy, p.join_policy, p.max_members, p.host_epoch, m.peer_id, \
             m.name, m.public_key, m.nat_type, m.public_ip, m.public_port, m.local_ip, \
             m.local_port, m.last_seen, m.vip_index, m.joined_at, m.heard_at, ",
            member_verified!(),
            " FROM parties p LEFT JOIN members m ON m.party_id = p.party_id"
        )
    };
}

/// The party and its members in one statement, so they match the party's
/// seq without a transaction.
const SNAPSHOT: &str = concat!(
    parties_with_members!(),
    " WHERE p.party_id = ? ORDER BY m.vip_index"
);

const MEMBERS: &str = concat!(
    "SELECT m.peer_id, m.name, m.public_key, m.nat_type, m.public_ip, m.public_port, \
     m.local_ip, m.local_port, m.last_seen, m.vip_index, m.joined_at, m.heard_at, ",
    member_verified!(),
    " FROM members m WHERE m.party_id = ? ORDER BY m.vip_index"
);

fn touch<'a>(party_id: &'a PartyId, peer_id: &'a PeerId, at: Timestamp) -> Query<'a> {
    sql("UPDATE members SET last_seen = {greatest}(last_seen, ?) WHERE peer_id = ? AND party_id = ?")
        .int(at.as_micros())
        .text(peer_id.as_str())
        .text(party_id.as_str())
}

/// Stores a token unless its peer is banned (no row then): the ban is
/// checked in the same statement, not by a read before it.
fn token_insert<'a>(
    token_hash: &'a str,
    peer_id: &'a PeerId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Query<'a> {
    sql(
        "INSERT INTO tokens (token_hash, peer_id, created_at, expires_at) \
         SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM bans WHERE peer_id = ?)",
    )
    .text(token_hash)
    .text(peer_id.as_str())
    .int(created_at.as_micros())
    .int(expires_at.as_micros())
    .text(peer_id.as_str())
}

/// The lease is free again after 90% of an interval, so a pass that ran a
/// little early still counts for its interval.
fn lease_cutoff(now: Timestamp, interval_secs: u64) -> i64 {
    let interval = i64::try_from(interval_secs).unwrap_or(i64::MAX / 1_000_000);
    now.as_micros()
        .saturating_sub(interval.saturating_mul(900_000))
}

fn one<R>(rows: Vec<R>) -> StoreResult<R> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
}

impl<B: Backend> Storage<B> {
    /// The event a notification names, as other instances deliver it; `None`
    /// when it was pruned meanwhile.
    pub(super) async fn notified_event(
        &self,
        party_id: &str,
        seq: i64,
    ) -> StoreResult<Option<Event>> {
        let rows = self
            .backend
            .read(
                sql("SELECT payload, recipients FROM party_events WHERE party_id = ? AND seq = ?")
                    .text(party_id)
                    .int(seq),
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Event::Party {
            message: rows::event_payload(row)?.into(),
            recipients: rows::event_recipients(row)?.into(),
        }))
    }

    /// The signal a notification names; `None` once drained or expired.
    pub(super) async fn notified_signal(&self, id: i64) -> StoreResult<Option<Event>> {
        let rows = self
            .backend
            .read(
                sql(
                    "SELECT party_id, from_peer_id, to_peer_id, signal_data, sent_at \
                     FROM signals WHERE id = ?",
                )
                .int(id),
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Event::Signal {
            signal: rows::signal_record(row)?.into(),
            id,
        }))
    }
}

impl<B: Backend + Clone> Storage<B> {
    /// Runs one of the store's writes where the backend runs writes
    /// ([`Backend::on_writer`]); `job` gets a handle of its own on the
    /// store, so it owns everything it uses.
    async fn writing<T, Fut>(&self, job: impl FnOnce(Self) -> Fut) -> StoreResult<T>
    where
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.backend.on_writer(job(self.clone()).boxed()).await
    }
}

#[async_trait]
impl<B: Backend + Clone> Store for Storage<B> {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(StorageTx::<B> {
            tx: self.backend.begin().await?,
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.backend.read(sql("SELECT 1")).await?;
        Ok(())
    }

    async fn close(&self) {
        self.backend.close().await;
    }

    fn pools(&self) -> Vec<PoolState> {
        self.backend.pools()
    }

    fn write_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.backend.write_runtime()
    }

    async fn deliver_events(&self, bus: EventBus) -> StoreResult<Option<EventFeed>> {
        self.backend.deliver_events(bus).await
    }

    async fn snapshot(&self, party_id: &PartyId) -> StoreResult<Option<PartyWithMembers>> {
        let rows = self
            .backend
            .read(sql(SNAPSHOT).text(party_id.as_str()))
            .await?;
        rows::snapshot_rows(&rows)
    }

    async fn party_page(
        &self,
        after: Option<&PartyId>,
        limit: u64,
    ) -> StoreResult<Vec<PartyWithMembers>> {
        let rows = self
            .backend
            .read(
                sql(concat!(
                    parties_with_members!(),
                    " WHERE p.party_id IN (SELECT party_id FROM parties \
                     WHERE party_id{byte_order} > ? ORDER BY party_id{byte_order} LIMIT ?) \
                     ORDER BY p.party_id{byte_order}, m.vip_index"
                ))
                .text(after.map_or("", PartyId::as_str))
                .int(rows::limit_param(limit)),
            )
            .await?;
        rows::snapshots_rows(&rows)
    }

    async fn membership(&self, peer_id: &PeerId) -> StoreResult<Option<(PartyId, u64)>> {
        let rows = self
            .backend
            .read(
                sql("SELECT m.party_id, p.seq FROM members m \
                     JOIN parties p ON p.party_id = m.party_id WHERE m.peer_id = ?")
                .text(peer_id.as_str()),
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some((
            rows::party_id(row)?,
            rows::unsigned(row.int("seq")?, "seq")?,
        )))
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let rows = self
            .backend
            .read(sql("SELECT (SELECT COUNT(*) FROM parties) AS parties, \
                        (SELECT COUNT(*) FROM members) AS peers, \
                        (SELECT COUNT(*) FROM relays) AS relays"))
            .await?;
        let row = one(rows)?;
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
    ) -> StoreResult<bool> {
        let (token_hash, peer_id) = (token_hash.to_owned(), peer_id.clone());
        self.writing(|store| async move {
            let insert = token_insert(&token_hash, &peer_id, created_at, expires_at);
            Ok(store.backend.write(insert).await? == 1)
        })
        .await
    }

    async fn insert_challenge(
        &self,
        challenge: &ChallengeRecord,
        now: Timestamp,
        max_outstanding: u64,
    ) -> StoreResult<bool> {
        let challenge = challenge.clone();
        self.writing(move |store| async move {
            let inserted = store
                .backend
                .write(
                    sql(
                        "INSERT INTO key_challenges (challenge_id, public_key, secret, client, \
                         expires_at) SELECT ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM \
                         key_challenges WHERE client = ? AND expires_at > ?) < ?",
                    )
                    .text(&challenge.challenge_id)
                    .text(&challenge.public_key)
                    .owned(STANDARD.encode(challenge.secret))
                    .text(&challenge.client)
                    .int(challenge.expires_at.as_micros())
                    .text(&challenge.client)
                    .int(now.as_micros())
                    .int(rows::limit_param(max_outstanding)),
                )
                .await?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn take_challenge(&self, challenge_id: &str) -> StoreResult<Option<ChallengeRecord>> {
        let challenge_id = challenge_id.to_owned();
        self.writing(move |store| async move {
            let mut tx = store.backend.begin().await?;
            let rows = tx
                .execute_returning(
                    sql("DELETE FROM key_challenges WHERE challenge_id = ? \
                         RETURNING challenge_id, public_key, secret, client, expires_at")
                    .text(&challenge_id),
                )
                .await?;
            tx.commit().await?;
            rows.first().map(rows::challenge).transpose()
        })
        .await
    }

    async fn grant_key_token(
        &self,
        public_key: &str,
        derived: &PeerId,
        token_hash: &str,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<KeyGrant> {
        let (public_key, derived, token_hash) = (
            public_key.to_owned(),
            derived.clone(),
            token_hash.to_owned(),
        );
        self.writing(move |store| async move {
            let mut tx = store.backend.begin().await?;
            let bindings = tx
                .fetch(
                    sql("SELECT peer_id, public_key FROM key_bindings \
                         WHERE public_key = ? OR peer_id = ?{lock}")
                    .text(&public_key)
                    .text(derived.as_str()),
                )
                .await?;
            let mut bound = None;
            for row in &bindings {
                if row.text("public_key")? == public_key {
                    bound = Some(rows::peer_id(row, "peer_id")?);
                }
            }
            let peer_id = match bound {
                Some(peer_id) => peer_id,
                // The derived ID is taken by the key it was rotated to.
                None if !bindings.is_empty() => return Ok(KeyGrant::Retired),
                None => {
                    tx.execute(
                        sql("INSERT INTO key_bindings (peer_id, public_key, bound_at) \
                             VALUES (?, ?, ?)")
                        .text(derived.as_str())
                        .text(&public_key)
                        .int(created_at.as_micros()),
                    )
                    .await?;
                    derived.clone()
                }
            };
            if tx
                .execute(token_insert(&token_hash, &peer_id, created_at, expires_at))
                .await?
                == 0
            {
                return Ok(KeyGrant::Banned(peer_id));
            }
            tx.commit().await?;
            Ok(KeyGrant::Issued(peer_id))
        })
        .await
    }

    async fn bound_key(&self, peer_id: &PeerId) -> StoreResult<Option<String>> {
        let rows = self
            .backend
            .read(
                sql("SELECT public_key FROM key_bindings WHERE peer_id = ?").text(peer_id.as_str()),
            )
            .await?;
        rows.first().map(|row| row.text("public_key")).transpose()
    }

    async fn banned(&self, peer_id: &PeerId, public_key: Option<&str>) -> StoreResult<bool> {
        let rows = self
            .backend
            .read(
                sql("SELECT peer_id FROM bans WHERE peer_id = ? OR public_key = ?")
                    .text(peer_id.as_str())
                    .text(public_key.unwrap_or_default()),
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn unban(&self, peer_id: &PeerId) -> StoreResult<bool> {
        let peer_id = peer_id.clone();
        self.writing(move |store| async move {
            let deleted = store
                .backend
                .write(sql("DELETE FROM bans WHERE peer_id = ?").text(peer_id.as_str()))
                .await?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let rows = self
            .backend
            .read(
                sql("SELECT peer_id, expires_at FROM tokens WHERE token_hash = ?").text(token_hash),
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(TokenRecord {
            peer_id: rows::peer_id(row, "peer_id")?,
            expires_at: Timestamp::from_micros(row.int("expires_at")?),
        }))
    }

    async fn touch_member(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let (party_id, peer_id) = (party_id.clone(), peer_id.clone());
        self.writing(|store| async move {
            Ok(store.backend.write(touch(&party_id, &peer_id, at)).await? == 1)
        })
        .await
    }

    async fn touch_members(&self, beats: &[(PartyId, PeerId, Timestamp)]) -> StoreResult<()> {
        if beats.is_empty() {
            return Ok(());
        }
        let beats = beats.to_vec();
        self.writing(|store| async move { store.backend.touch_members(&beats).await })
            .await
    }

    async fn mark_heard(&self, heard: &[(PeerId, Timestamp)]) -> StoreResult<()> {
        if heard.is_empty() {
            return Ok(());
        }
        let mut heard = heard.to_vec();
        // One order on every instance: concurrent batches never deadlock.
        heard.sort_by(|a, b| a.0.cmp(&b.0));
        self.writing(|store| async move {
            let mut tx = store.backend.begin().await?;
            for (peer_id, at) in &heard {
                tx.execute(
                    sql("UPDATE members SET heard_at = {greatest}(heard_at, ?) WHERE peer_id = ?")
                        .int(at.as_micros())
                        .text(peer_id.as_str()),
                )
                .await?;
            }
            tx.commit().await
        })
        .await
    }

    async fn invite(&self, nameplate: &str) -> StoreResult<Option<InviteRecord>> {
        let rows = self
            .backend
            .read(sql(concat!(select_invites!(), " WHERE nameplate = ?")).text(nameplate))
            .await?;
        rows.first().map(rows::invite).transpose()
    }

    async fn live_invites(
        &self,
        party_id: &PartyId,
        now: Timestamp,
    ) -> StoreResult<Vec<InviteRecord>> {
        let rows = self.backend.read(live_invites_query(party_id, now)).await?;
        rows.iter().map(rows::invite).collect()
    }

    async fn relay_statuses(&self) -> StoreResult<Vec<RelayStatusRecord>> {
        let rows = self.backend.read(sql(RELAY_STATUSES)).await?;
        rows.iter().map(rows::relay_status).collect()
    }

    async fn set_relay_status(
        &self,
        relay_id: &RelayId,
        report: &lanrage_proto::RelayStatusReport,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (relay_id, report) = (relay_id.clone(), *report);
        self.writing(|store| async move {
            #[allow(clippy::cast_possible_truncation)]
            let load_ppm = report.load.map(|load| (load * 1e6).round() as i64);
            let changed = store
                .backend
                .write(
                    sql("UPDATE relays SET sessions = COALESCE(?, sessions), \
                         load_ppm = COALESCE(?, load_ppm), draining = COALESCE(?, draining), \
                         last_status_at = ?, last_seen = ? WHERE relay_id = ?")
                    .nullable_int(report.sessions.map(i64::from))
                    .nullable_int(load_ppm)
                    .nullable_int(report.draining.map(i64::from))
                    .int(now.as_micros())
                    .int(now.as_micros())
                    .text(relay_id.as_str()),
                )
                .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn party_relay(&self, party_id: &PartyId) -> StoreResult<StoredRelay> {
        let rows = self
            .backend
            .read(sql(PARTY_RELAY).text(party_id.as_str()))
            .await?;
        rows.first()
            .map(rows::stored_relay)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn party_rtts(
        &self,
        party_id: &PartyId,
        since: Timestamp,
    ) -> StoreResult<Vec<(PeerId, RttEntry)>> {
        let rows = self
            .backend
            .read(
                sql(PARTY_RTTS)
                    .text(party_id.as_str())
                    .int(since.as_micros()),
            )
            .await?;
        rows.iter().map(rows::rtt_entry).collect()
    }

    async fn parties_with_relay_inputs(&self) -> StoreResult<Vec<PartyId>> {
        let rows = self
            .backend
            .read(sql(
                "SELECT party_id FROM parties WHERE relay_id IS NOT NULL \
                 OR relay_reason IS NOT NULL UNION SELECT party_id FROM relay_rtts",
            ))
            .await?;
        rows.iter().map(rows::party_id).collect()
    }

    async fn sweep_rtts(&self, cutoff: Timestamp) -> StoreResult<u64> {
        self.writing(|store| async move {
            store
                .backend
                .write(sql("DELETE FROM relay_rtts WHERE reported_at < ?").int(cutoff.as_micros()))
                .await
        })
        .await
    }

    async fn path_inputs(
        &self,
        party_id: &PartyId,
        reports_since: Timestamp,
        first_day: i64,
    ) -> StoreResult<PathInputs> {
        let mut rows = Vec::with_capacity(4);
        for query in path_queries(party_id, reports_since, first_day) {
            rows.push(self.backend.read(query).await?);
        }
        let rows: [Vec<B::Row>; 4] = rows
            .try_into()
            .map_err(|_| StoreError::Corrupt("path inputs: four reads expected".into()))?;
        path_inputs_of(rows)
    }

    async fn class_outcomes(&self, first_day: i64) -> StoreResult<Vec<ClassCounts>> {
        let rows = self.backend.read(class_outcomes_query(first_day)).await?;
        rows.iter().map(rows::class_counts).collect()
    }

    async fn parties_with_paths(&self) -> StoreResult<Vec<PartyId>> {
        let rows = self
            .backend
            .read(sql("SELECT DISTINCT party_id FROM party_paths"))
            .await?;
        rows.iter().map(rows::party_id).collect()
    }

    async fn party_paths(&self, party_id: &PartyId) -> StoreResult<Vec<StoredPath>> {
        let rows = self.backend.read(party_paths_query(party_id)).await?;
        rows.iter().map(rows::stored_path).collect()
    }

    async fn sweep_paths(&self, reports_before: Timestamp, first_day: i64) -> StoreResult<u64> {
        self.writing(|store| async move {
            let reports = store
                .backend
                .write(
                    sql("DELETE FROM path_reports WHERE reported_at < ?")
                        .int(reports_before.as_micros()),
                )
                .await?;
            let stats = store
                .backend
                .write(sql("DELETE FROM path_stats WHERE day < ?").int(first_day))
                .await?;
            Ok(reports + stats)
        })
        .await
    }

    async fn absent_hosts(&self, cutoff: Timestamp) -> StoreResult<Vec<PartyId>> {
        let rows = self
            .backend
            .read(
                sql(
                    "SELECT p.party_id FROM parties p JOIN members m ON m.peer_id = p.host_id \
                     AND m.party_id = p.party_id WHERE p.host_policy = 'migrate' \
                     AND m.last_seen < ? AND m.heard_at < ? AND EXISTS (SELECT 1 FROM members o \
                     WHERE o.party_id = p.party_id AND o.peer_id <> p.host_id \
                     AND (o.last_seen >= ? OR o.heard_at >= ?))",
                )
                .int(cutoff.as_micros())
                .int(cutoff.as_micros())
                .int(cutoff.as_micros())
                .int(cutoff.as_micros()),
            )
            .await?;
        rows.iter().map(rows::party_id).collect()
    }

    async fn upsert_relay(&self, relay: &Relay, seen_at: Timestamp) -> StoreResult<()> {
        let relay = relay.clone();
        self.writing(|store| async move {
            store
                .backend
                .write(
                    sql(
                        "INSERT INTO relays (relay_id, public_ip, port, region, capacity, \
                         registered_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (relay_id) DO UPDATE SET public_ip = excluded.public_ip, \
                         port = excluded.port, region = excluded.region, \
                         capacity = excluded.capacity, last_seen = excluded.last_seen",
                    )
                    .text(relay.relay_id.as_str())
                    .owned(relay.public_ip.to_string())
                    .int(i64::from(relay.port))
                    .text(relay.region.as_str())
                    .int(i64::from(relay.capacity))
                    .int(relay.registered_at.as_micros())
                    .int(seen_at.as_micros()),
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn delete_relay(&self, relay_id: &RelayId) -> StoreResult<bool> {
        let relay_id = relay_id.clone();
        self.writing(|store| async move {
            let deleted = store
                .backend
                .write(sql("DELETE FROM relays WHERE relay_id = ?").text(relay_id.as_str()))
                .await?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn relays(&self, region: Option<&Region>) -> StoreResult<Vec<Relay>> {
        let query = match region {
            Some(region) => sql("SELECT relay_id, public_ip, port, region, capacity, \
                 registered_at FROM relays WHERE region = ? ORDER BY relay_id{byte_order}")
            .text(region.as_str()),
            None => sql(
                "SELECT relay_id, public_ip, port, region, capacity, registered_at \
                 FROM relays ORDER BY region{byte_order}, relay_id{byte_order}",
            ),
        };
        let rows = self.backend.read(query).await?;
        rows.iter().map(rows::relay_record).collect()
    }

    async fn drain_signals(
        &self,
        party_id: &PartyId,
        peer_id: &PeerId,
        now: Timestamp,
        limit: u64,
    ) -> StoreResult<Vec<Signal>> {
        let (party_id, peer_id) = (party_id.clone(), peer_id.clone());
        self.writing(|store| async move {
            let mut tx = store.backend.begin().await?;
            // Each signal goes to one answer: the rows are locked and
            // skipped by any other drain running at the same time, on this
            // instance or another (where writers are serialized, that is
            // already so).
            let rows = tx
                .fetch(
                    sql(
                        "SELECT id, party_id, from_peer_id, to_peer_id, signal_data, sent_at \
                         FROM signals WHERE party_id = ? AND to_peer_id = ? AND expires_at > ? \
                         AND NOT delivered ORDER BY id LIMIT ?{skip_locked}",
                    )
                    .text(party_id.as_str())
                    .text(peer_id.as_str())
                    .int(now.as_micros())
                    .int(rows::limit_param(limit)),
                )
                .await?;
            let (ids, signals) = rows::drained_signals(&rows)?;
            if !ids.is_empty() {
                // One statement whatever the count.
                tx.execute(sql("DELETE FROM signals WHERE id IN ({id_list})").ints(ids))
                    .await?;
            }
            tx.commit().await?;
            Ok(signals)
        })
        .await
    }

    async fn mark_signal_delivered(&self, id: i64) -> StoreResult<()> {
        self.writing(|store| async move {
            store
                .backend
                .write(sql("UPDATE signals SET delivered = TRUE WHERE id = ?").int(id))
                .await?;
            Ok(())
        })
        .await
    }

    async fn events_after(
        &self,
        party_id: &PartyId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<ServerMessage>> {
        let rows = self
            .backend
            .read(
                sql(
                    "SELECT payload FROM party_events WHERE party_id = ? AND seq > ? \
                     ORDER BY seq LIMIT ?",
                )
                .text(party_id.as_str())
                .int(rows::seq_param(after_seq)?)
                .int(rows::limit_param(limit)),
            )
            .await?;
        rows.iter().map(rows::event_payload).collect()
    }

    async fn forgive_downtime(&self, now: Timestamp, idle_since: Timestamp) -> StoreResult<bool> {
        self.writing(|store| async move {
            let mut tx = store.backend.begin().await?;
            // Locked: instances starting together decide one after the other.
            let lease = tx
                .fetch(sql("SELECT ran_at FROM cleanup_lease WHERE id = 1{lock}"))
                .await?;
            if one(lease)?.int("ran_at")? > idle_since.as_micros() {
                return Ok(false);
            }
            let now = now.as_micros();
            tx.write(vec![
                sql("UPDATE members SET last_seen = ? WHERE last_seen < ?")
                    .int(now)
                    .int(now),
                sql("UPDATE relays SET last_seen = ? WHERE last_seen < ?")
                    .int(now)
                    .int(now),
            ])
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn claim_cleanup(&self, now: Timestamp, interval_secs: u64) -> StoreResult<bool> {
        self.writing(|store| async move {
            let claimed = store
                .backend
                .write(
                    sql("UPDATE cleanup_lease SET ran_at = ? WHERE id = 1 AND ran_at <= ?")
                        .int(now.as_micros())
                        .int(lease_cutoff(now, interval_secs)),
                )
                .await?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn stale_members(&self, cutoff: Timestamp) -> StoreResult<Vec<(PartyId, PeerId)>> {
        let rows = self
            .backend
            .read(
                sql("SELECT party_id, peer_id FROM members WHERE last_seen < ?")
                    .int(cutoff.as_micros()),
            )
            .await?;
        rows.iter()
            .map(|row| Ok((rows::party_id(row)?, rows::peer_id(row, "peer_id")?)))
            .collect()
    }

    async fn orphaned_parties(&self) -> StoreResult<Vec<PartyId>> {
        let rows = self
            .backend
            .read(sql("SELECT party_id FROM parties p WHERE NOT EXISTS \
                 (SELECT 1 FROM members m WHERE m.party_id = p.party_id AND m.peer_id = p.host_id)"))
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
        self.writing(|store| store.sweep_now(now, relay_cutoff, keep_events, events_cutoff))
            .await
    }
}

impl<B: Backend + Clone> Storage<B> {
    /// [`Store::sweep`], on the writer.
    async fn sweep_now(
        self,
        now: Timestamp,
        relay_cutoff: Timestamp,
        keep_events: u64,
        events_cutoff: Timestamp,
    ) -> StoreResult<Swept> {
        let mut tx = self.backend.begin().await?;
        let now = now.as_micros();
        let swept = Swept {
            tokens: tx
                .execute(sql("DELETE FROM tokens WHERE expires_at <= ?").int(now))
                .await?,
            relays: tx
                .execute(
                    sql("DELETE FROM relays WHERE last_seen < ?").int(relay_cutoff.as_micros()),
                )
                .await?,
            // Expired unread, apart from those read over a socket.
            signals: tx
                .execute(
                    sql("DELETE FROM signals WHERE expires_at <= ? AND NOT delivered").int(now),
                )
                .await?,
            delivered_signals: tx
                .execute(sql("DELETE FROM signals WHERE expires_at <= ? AND delivered").int(now))
                .await?,
            events: tx
                .execute(
                    sql(
                        "DELETE FROM party_events WHERE created_at < ? AND seq <= COALESCE( \
                         (SELECT p.seq FROM parties p WHERE p.party_id = party_events.party_id) \
                         - ?, seq)",
                    )
                    .int(events_cutoff.as_micros())
                    .int(rows::seq_param(keep_events)?),
                )
                .await?,
            challenges: tx
                .execute(sql("DELETE FROM key_challenges WHERE expires_at <= ?").int(now))
                .await?,
            // Nameplates rested for a day are free again.
            invites: tx
                .execute(
                    sql("DELETE FROM invites WHERE COALESCE(ended_at, expires_at) <= ?")
                        .int(nameplate_rest_cutoff(Timestamp::from_micros(now)).as_micros()),
                )
                .await?,
        };
        tx.commit().await?;
        Ok(swept)
    }
}

/// A member's info, in the column order of both `members` writes: name,
/// public_key, nat_type, public_ip, public_port, local_ip, local_port,
/// last_seen.
fn peer_info<'a>(query: Query<'a>, peer: &'a Peer) -> Query<'a> {
    query
        .text(peer.name.as_str())
        .text(peer.public_key.as_str())
        .text(peer.nat_type.as_str())
        .owned(peer.public_ip.to_string())
        .int(i64::from(peer.public_port))
        .owned(peer.local_ip.to_string())
        .int(i64::from(peer.local_port))
        .int(peer.last_seen.as_micros())
}

/// The one [`Tx`], over either backend.
struct StorageTx<B: Backend> {
    tx: B::Tx,
}

#[async_trait]
impl<B: Backend> Tx for StorageTx<B> {
    async fn party(&mut self, party_id: &PartyId) -> StoreResult<Option<PartyRecord>> {
        let rows = self.tx.fetch(sql(PARTY).text(party_id.as_str())).await?;
        rows.first().map(rows::party_record).transpose()
    }

    async fn members(&mut self, party_id: &PartyId) -> StoreResult<Vec<MemberRecord>> {
        let rows = self.tx.fetch(sql(MEMBERS).text(party_id.as_str())).await?;
        rows.iter().map(rows::member_record).collect()
    }

    async fn party_and_members(
        &mut self,
        party_id: &PartyId,
    ) -> StoreResult<Option<PartyWithMembers>> {
        if B::DIALECT.serialized_writer {
            let rows = self.tx.fetch(sql(SNAPSHOT).text(party_id.as_str())).await?;
            return rows::snapshot_rows(&rows);
        }
        // Lock first, then read the members in a statement of their own: a
        // join that locks would read them from the snapshot taken before
        // the lock was granted.
        let Some(party) = self.party(party_id).await? else {
            return Ok(None);
        };
        let members = self.members(party_id).await?;
        Ok(Some((party, members)))
    }

    async fn join_parties(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
    ) -> StoreResult<(Option<PartyWithMembers>, Option<PartyWithMembers>)> {
        if !B::DIALECT.serialized_writer {
            // Locks each party in id order, so two peers moving opposite
            // ways between the same parties never deadlock.
            let current = self.membership(peer_id).await?;
            let mut parties: Vec<&PartyId> =
                std::iter::once(party_id).chain(current.as_ref()).collect();
            parties.sort();
            parties.dedup();
            let (mut target, mut previous) = (None, None);
            for id in parties {
                let read = self.party_and_members(id).await?;
                if id == party_id {
                    target = read;
                } else {
                    previous = read;
                }
            }
            return Ok((target, previous));
        }
        // One statement for both parties: the single writer needs no locks.
        let rows = self
            .tx
            .fetch(
                sql(concat!(
                    parties_with_members!(),
                    " WHERE p.party_id IN (?, (SELECT party_id FROM members WHERE peer_id = ?)) \
                     ORDER BY p.party_id, m.vip_index"
                ))
                .text(party_id.as_str())
                .text(peer_id.as_str()),
            )
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
        let rows = self
            .tx
            .fetch(sql("SELECT party_id FROM members WHERE peer_id = ?").text(peer_id.as_str()))
            .await?;
        rows.first().map(rows::party_id).transpose()
    }

    async fn key_bindings(
        &mut self,
        peer_id: &PeerId,
        public_key: &str,
    ) -> StoreResult<Vec<(PeerId, String)>> {
        let rows = self
            .tx
            .fetch(
                sql("SELECT peer_id, public_key FROM key_bindings WHERE peer_id = ? OR public_key = ?")
                    .text(peer_id.as_str())
                    .text(public_key),
            )
            .await?;
        rows.iter()
            .map(|row| Ok((rows::peer_id(row, "peer_id")?, row.text("public_key")?)))
            .collect()
    }

    async fn bound_key(&mut self, peer_id: &PeerId) -> StoreResult<Option<String>> {
        let rows = self
            .tx
            .fetch(
                sql("SELECT public_key FROM key_bindings WHERE peer_id = ?{lock}")
                    .text(peer_id.as_str()),
            )
            .await?;
        rows.first().map(|row| row.text("public_key")).transpose()
    }

    async fn rebind_key(
        &mut self,
        peer_id: &PeerId,
        public_key: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                sql("UPDATE key_bindings SET public_key = ?, bound_at = ? WHERE peer_id = ?")
                    .text(public_key)
                    .int(at.as_micros())
                    .text(peer_id.as_str()),
            )
            .await?;
        Ok(())
    }

    async fn revoke_tokens(&mut self, peer_id: &PeerId, tokens: &Revoked) -> StoreResult<u64> {
        let query = match tokens {
            Revoked::One(hash) => {
                sql("DELETE FROM tokens WHERE token_hash = ? AND peer_id = ?").text(hash)
            }
            Revoked::AllBut(Some(kept)) => {
                sql("DELETE FROM tokens WHERE token_hash <> ? AND peer_id = ?").text(kept)
            }
            Revoked::AllBut(None) => sql("DELETE FROM tokens WHERE peer_id = ?"),
        };
        let deleted = self.tx.execute(query.text(peer_id.as_str())).await?;
        if deleted > 0 {
            self.tx
                .announce(Announcement::Revoked { peer_id, tokens })
                .await?;
        }
        Ok(deleted)
    }

    async fn ban(
        &mut self,
        peer_id: &PeerId,
        public_key: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()> {
        // Without a key the column is NULL: spelt in the statement, as no
        // argument kind stands for it.
        let query = match public_key {
            Some(key) => sql(
                "INSERT INTO bans (peer_id, public_key, banned_at) VALUES (?, ?, ?) \
                 ON CONFLICT (peer_id) DO UPDATE SET public_key = excluded.public_key, \
                 banned_at = excluded.banned_at",
            )
            .text(peer_id.as_str())
            .text(key),
            None => sql(
                "INSERT INTO bans (peer_id, public_key, banned_at) VALUES (?, NULL, ?) \
                 ON CONFLICT (peer_id) DO UPDATE SET public_key = excluded.public_key, \
                 banned_at = excluded.banned_at",
            )
            .text(peer_id.as_str()),
        };
        self.tx.execute(query.int(at.as_micros())).await?;
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        self.tx.savepoint().await
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.tx.release_savepoint().await
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.tx.rollback_to_savepoint().await
    }

    async fn insert_token(
        &mut self,
        token_hash: &str,
        peer_id: &PeerId,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let insert = token_insert(token_hash, peer_id, created_at, expires_at);
        Ok(self.tx.execute(insert).await? == 1)
    }

    async fn insert_party(&mut self, party: &PartyRecord) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "INSERT INTO parties (party_id, name, host_id, created_at, seq, host_policy, \
                     join_policy, max_members, host_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .text(party.party_id.as_str())
                .text(party.name.as_str())
                .text(party.host_id.as_str())
                .int(party.created_at.as_micros())
                .int(rows::seq_param(party.seq)?)
                .text(party.settings.host_policy.as_str())
                .text(party.settings.join_policy.as_str())
                .nullable_int(party.settings.max_members.map(i64::from))
                .int(rows::seq_param(party.host_epoch)?),
            ])
            .await
    }

    async fn update_party(&mut self, party: &PartyRecord) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "UPDATE parties SET host_id = ?, host_epoch = ?, host_policy = ?, \
                     join_policy = ?, max_members = ? WHERE party_id = ?",
                )
                .text(party.host_id.as_str())
                .int(rows::seq_param(party.host_epoch)?)
                .text(party.settings.host_policy.as_str())
                .text(party.settings.join_policy.as_str())
                .nullable_int(party.settings.max_members.map(i64::from))
                .text(party.party_id.as_str()),
            ])
            .await
    }

    async fn ban_from_party(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        public_key: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "INSERT INTO party_bans (party_id, peer_id, public_key, banned_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (party_id, peer_id) DO UPDATE SET \
                     public_key = excluded.public_key, banned_at = excluded.banned_at",
                )
                .text(party_id.as_str())
                .text(peer_id.as_str())
                .nullable_text(public_key)
                .int(at.as_micros()),
            ])
            .await
    }

    async fn invite(&mut self, nameplate: &str) -> StoreResult<Option<InviteRecord>> {
        let rows = self
            .tx
            .fetch(sql(concat!(select_invites!(), " WHERE nameplate = ?{lock}")).text(nameplate))
            .await?;
        rows.first().map(rows::invite).transpose()
    }

    async fn live_invites(
        &mut self,
        party_id: &PartyId,
        now: Timestamp,
    ) -> StoreResult<Vec<InviteRecord>> {
        let rows = self.tx.fetch(live_invites_query(party_id, now)).await?;
        rows.iter().map(rows::invite).collect()
    }

    async fn held_nameplates(
        &mut self,
        rested_since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<(String, bool)>> {
        let rows = self
            .tx
            .fetch(
                sql(
                    "SELECT nameplate, CAST(CASE WHEN ended_at IS NULL AND expires_at > ? \
                     AND uses < max_uses THEN 1 ELSE 0 END AS BIGINT) AS live FROM invites \
                     WHERE COALESCE(ended_at, expires_at) > ?",
                )
                .int(now.as_micros())
                .int(rested_since.as_micros()),
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.text("nameplate")?, row.int("live")? != 0)))
            .collect()
    }

    async fn claim_nameplate(
        &mut self,
        invite: &InviteRecord,
        rested_since: Timestamp,
    ) -> StoreResult<bool> {
        let claimed = self
            .tx
            .execute(
                sql(
                    "INSERT INTO invites (nameplate, party_id, secret, created_by, created_at, \
                     expires_at, max_uses, uses, failures, ended_at, end_reason) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL) \
                     ON CONFLICT (nameplate) DO UPDATE SET party_id = excluded.party_id, \
                     secret = excluded.secret, created_by = excluded.created_by, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at, \
                     max_uses = excluded.max_uses, uses = excluded.uses, \
                     failures = excluded.failures, ended_at = NULL, end_reason = NULL \
                     WHERE COALESCE(invites.ended_at, invites.expires_at) <= ?",
                )
                .text(&invite.nameplate)
                .text(invite.party_id.as_str())
                .text(&invite.secret)
                .text(invite.created_by.as_str())
                .int(invite.created_at.as_micros())
                .int(invite.expires_at.as_micros())
                .int(i64::from(invite.max_uses))
                .int(i64::from(invite.uses))
                .int(i64::from(invite.failures))
                .int(rested_since.as_micros()),
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn update_invite(&mut self, invite: &InviteRecord) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "UPDATE invites SET uses = ?, failures = ?, ended_at = ?, end_reason = ? \
                     WHERE nameplate = ?",
                )
                .int(i64::from(invite.uses))
                .int(i64::from(invite.failures))
                .nullable_int(invite.ended_at.map(Timestamp::as_micros))
                .nullable_text(invite.end_reason.as_deref())
                .text(&invite.nameplate),
            ])
            .await
    }

    async fn end_invites(&mut self, party_id: &PartyId, now: Timestamp) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "UPDATE invites SET ended_at = ?, end_reason = 'party_ended' \
                     WHERE party_id = ? AND ended_at IS NULL AND expires_at > ?",
                )
                .int(now.as_micros())
                .text(party_id.as_str())
                .int(now.as_micros()),
            ])
            .await
    }

    async fn relay_statuses(&mut self) -> StoreResult<Vec<RelayStatusRecord>> {
        let rows = self.tx.fetch(sql(RELAY_STATUSES)).await?;
        rows.iter().map(rows::relay_status).collect()
    }

    async fn party_rtts(
        &mut self,
        party_id: &PartyId,
        since: Timestamp,
    ) -> StoreResult<Vec<(PeerId, RttEntry)>> {
        let rows = self
            .tx
            .fetch(
                sql(PARTY_RTTS)
                    .text(party_id.as_str())
                    .int(since.as_micros()),
            )
            .await?;
        rows.iter().map(rows::rtt_entry).collect()
    }

    async fn replace_rtts(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        rtts: &[RttEntry],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                sql("DELETE FROM relay_rtts WHERE party_id = ? AND peer_id = ?")
                    .text(party_id.as_str())
                    .text(peer_id.as_str()),
            )
            .await?;
        for (relay_id, rtt) in rtts {
            self.tx
                .execute(
                    sql(
                        "INSERT INTO relay_rtts (party_id, peer_id, relay_id, rtt_ms, reported_at) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .text(party_id.as_str())
                    .text(peer_id.as_str())
                    .text(relay_id.as_str())
                    .nullable_int(rtt.map(i64::from))
                    .int(now.as_micros()),
                )
                .await?;
        }
        Ok(())
    }

    async fn party_relay(&mut self, party_id: &PartyId) -> StoreResult<StoredRelay> {
        let rows = self
            .tx
            .fetch(sql(PARTY_RELAY).text(party_id.as_str()))
            .await?;
        rows.first()
            .map(rows::stored_relay)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn set_party_relay(
        &mut self,
        party_id: &PartyId,
        relay: &StoredRelay,
    ) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "UPDATE parties SET relay_id = ?, relay_reason = ?, relay_announced = ?, \
                     relay_announced_at = ? WHERE party_id = ?",
                )
                .nullable_text(relay.relay_id.as_ref().map(RelayId::as_str))
                .nullable_text(relay.reason.as_deref())
                .nullable_text(
                    relay
                        .announced
                        .as_ref()
                        .map(|id| id.as_ref().map_or("", RelayId::as_str)),
                )
                .nullable_int(relay.announced_at.map(Timestamp::as_micros))
                .text(party_id.as_str()),
            ])
            .await
    }

    async fn path_inputs(
        &mut self,
        party_id: &PartyId,
        reports_since: Timestamp,
        first_day: i64,
    ) -> StoreResult<PathInputs> {
        let mut rows = Vec::with_capacity(4);
        for query in path_queries(party_id, reports_since, first_day) {
            rows.push(self.tx.fetch(query).await?);
        }
        let rows: [Vec<<B::Tx as BackendTx>::Row>; 4] = rows
            .try_into()
            .map_err(|_| StoreError::Corrupt("path inputs: four reads expected".into()))?;
        path_inputs_of(rows)
    }

    async fn party_paths(&mut self, party_id: &PartyId) -> StoreResult<Vec<StoredPath>> {
        let rows = self.tx.fetch(party_paths_query(party_id)).await?;
        rows.iter().map(rows::stored_path).collect()
    }

    async fn set_peer_nat(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        nat: &lanrage_proto::NatReport,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.tx
            .write(vec![
                sql(
                    "INSERT INTO peer_nat (party_id, peer_id, mapping, filtering, port_mapping, \
                     reported_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (party_id, peer_id) \
                     DO UPDATE SET mapping = excluded.mapping, filtering = excluded.filtering, \
                     port_mapping = excluded.port_mapping, reported_at = excluded.reported_at",
                )
                .text(party_id.as_str())
                .text(peer_id.as_str())
                .text(nat.mapping.as_str())
                .text(nat.filtering.as_str())
                .int(i64::from(nat.port_mapping))
                .int(now.as_micros()),
            ])
            .await
    }

    async fn add_path_report(
        &mut self,
        party_id: &PartyId,
        report: &PathReportRecord,
        classes: &(String, String),
        day: i64,
    ) -> StoreResult<()> {
        let count = |outcome: lanrage_proto::PathOutcome| i64::from(report.outcome == outcome);
        use lanrage_proto::PathOutcome::{Direct, Failed, Relayed};
        self.tx
            .write(vec![
                sql(
                    "INSERT INTO path_reports (party_id, from_peer, to_peer, outcome, rtt_us, \
                     reported_at) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (party_id, from_peer, to_peer) DO UPDATE SET \
                     outcome = excluded.outcome, rtt_us = excluded.rtt_us, \
                     reported_at = excluded.reported_at",
                )
                .text(party_id.as_str())
                .text(report.from_peer.as_str())
                .text(report.to_peer.as_str())
                .text(report.outcome.as_str())
                .nullable_int(report.rtt_us.and_then(|us| i64::try_from(us).ok()))
                .int(report.reported_at.as_micros()),
                sql(
                    "INSERT INTO path_stats (class_a, class_b, day, direct, relayed, failed) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (class_a, class_b, day) DO UPDATE SET \
                     direct = path_stats.direct + excluded.direct, \
                     relayed = path_stats.relayed + excluded.relayed, \
                     failed = path_stats.failed + excluded.failed",
                )
                .text(&classes.0)
                .text(&classes.1)
                .int(day)
                .int(count(Direct))
                .int(count(Relayed))
                .int(count(Failed)),
            ])
            .await
    }

    async fn set_party_paths(
        &mut self,
        party_id: &PartyId,
        pairs: &[StoredPath],
    ) -> StoreResult<()> {
        for (a, b, plan) in pairs {
            self.tx
                .execute(
                    sql(
                        "INSERT INTO party_paths (party_id, a, b, plan) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (party_id, a, b) DO UPDATE SET plan = excluded.plan",
                    )
                    .text(party_id.as_str())
                    .text(a.as_str())
                    .text(b.as_str())
                    .text(plan.as_str()),
                )
                .await?;
        }
        Ok(())
    }

    async fn banned_from_party(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        public_key: &str,
    ) -> StoreResult<bool> {
        let rows = self
            .tx
            .fetch(
                sql("SELECT COUNT(*) AS n FROM party_bans WHERE party_id = ? \
                     AND (peer_id = ? OR public_key = ?)")
                .text(party_id.as_str())
                .text(peer_id.as_str())
                .text(public_key),
            )
            .await?;
        Ok(one(rows)?.int("n")? > 0)
    }

    async fn delete_party(&mut self, party_id: &PartyId) -> StoreResult<()> {
        // Members and signals go with it: `ON DELETE CASCADE` in the schema.
        self.tx
            .write(vec![
                sql("DELETE FROM parties WHERE party_id = ?").text(party_id.as_str()),
            ])
            .await
    }

    async fn insert_member(
        &mut self,
        party_id: &PartyId,
        member: &MemberRecord,
    ) -> StoreResult<()> {
        let peer = &member.peer;
        let insert = sql(
            "INSERT INTO members (name, public_key, nat_type, public_ip, \
             public_port, local_ip, local_port, last_seen, peer_id, party_id, joined_at, \
             vip_index, heard_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        self.tx
            .write(vec![
                peer_info(insert, peer)
                    .text(peer.peer_id.as_str())
                    .text(party_id.as_str())
                    .int(member.joined_at.as_micros())
                    .int(i64::from(member.vip_index))
                    .int(member.heard_at.as_micros()),
            ])
            .await
    }

    async fn update_member(&mut self, party_id: &PartyId, peer: &Peer) -> StoreResult<()> {
        let update = sql(
            "UPDATE members SET name = ?, public_key = ?, nat_type = ?, \
             public_ip = ?, public_port = ?, local_ip = ?, local_port = ?, last_seen = ? \
             WHERE peer_id = ? AND party_id = ?",
        );
        self.tx
            .write(vec![
                peer_info(update, peer)
                    .text(peer.peer_id.as_str())
                    .text(party_id.as_str()),
            ])
            .await
    }

    async fn delete_member(&mut self, party_id: &PartyId, peer_id: &PeerId) -> StoreResult<()> {
        // The signals waiting for the member go with it, in the same round
        // trip.
        self.tx
            .write(vec![
                sql("DELETE FROM members WHERE party_id = ? AND peer_id = ?")
                    .text(party_id.as_str())
                    .text(peer_id.as_str()),
                sql("DELETE FROM signals WHERE party_id = ? AND to_peer_id = ?")
                    .text(party_id.as_str())
                    .text(peer_id.as_str()),
                sql("DELETE FROM relay_rtts WHERE party_id = ? AND peer_id = ?")
                    .text(party_id.as_str())
                    .text(peer_id.as_str()),
                sql("DELETE FROM peer_nat WHERE party_id = ? AND peer_id = ?")
                    .text(party_id.as_str())
                    .text(peer_id.as_str()),
                sql("DELETE FROM path_reports WHERE party_id = ? AND (from_peer = ? OR to_peer = ?)")
                    .text(party_id.as_str())
                    .text(peer_id.as_str())
                    .text(peer_id.as_str()),
                sql("DELETE FROM party_paths WHERE party_id = ? AND (a = ? OR b = ?)")
                    .text(party_id.as_str())
                    .text(peer_id.as_str())
                    .text(peer_id.as_str()),
            ])
            .await
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
        let seq_value = rows::seq_param(seq)?;
        // In one round trip: the party's counter, the trim of its log to the
        // newest `keep_last` events, and the event.
        let mut group = vec![
            sql("UPDATE parties SET seq = ? WHERE party_id = ? AND seq < ?")
                .int(seq_value)
                .text(party_id.as_str())
                .int(seq_value),
        ];
        if oldest_dropped > 0 {
            // A log this short keeps everything: no statement to send.
            group.push(
                sql("DELETE FROM party_events WHERE party_id = ? AND seq <= ?")
                    .text(party_id.as_str())
                    .int(rows::seq_param(oldest_dropped)?),
            );
        }
        group.push(
            sql(
                "INSERT INTO party_events (party_id, seq, created_at, payload, recipients) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .text(party_id.as_str())
            .int(seq_value)
            .int(at.as_micros())
            .owned(rows::to_json(event, "event payload")?)
            .owned(rows::to_json(&recipients, "event recipients")?),
        );
        self.tx.write(group).await?;
        self.tx
            .announce(Announcement::Event { party_id, seq })
            .await
    }

    async fn queued_signals(
        &mut self,
        party_id: &PartyId,
        from_peer_id: &PeerId,
        to_peer_id: &PeerId,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let rows = self
            .tx
            .fetch(
                sql(
                    "SELECT COUNT(*) AS n FROM signals WHERE party_id = ? AND to_peer_id = ? \
                     AND from_peer_id = ? AND expires_at > ? AND NOT delivered",
                )
                .text(party_id.as_str())
                .text(to_peer_id.as_str())
                .text(from_peer_id.as_str())
                .int(now.as_micros()),
            )
            .await?;
        rows::unsigned(one(rows)?.int("n")?, "count")
    }

    async fn insert_signal(&mut self, signal: &Signal, expires_at: Timestamp) -> StoreResult<i64> {
        // Sent at once, for its id.
        let rows = self
            .tx
            .execute_returning(
                sql(
                    "INSERT INTO signals (party_id, from_peer_id, to_peer_id, signal_data, \
                     sent_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .text(signal.party_id.as_str())
                .text(signal.from_peer_id.as_str())
                .text(signal.to_peer_id.as_str())
                .owned(rows::to_json(&signal.signal_data, "signal_data")?)
                .int(signal.sent_at.as_micros())
                .int(expires_at.as_micros()),
            )
            .await?;
        let id = one(rows)?.int("id")?;
        self.tx.announce(Announcement::Signal { id }).await?;
        Ok(id)
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await
    }
}

/// One step of a backend's migration history.
pub(super) fn migration(
    version: i64,
    description: &'static str,
    sql: &'static str,
) -> sqlx::migrate::Migration {
    use sqlx::SqlSafeStr;

    sqlx::migrate::Migration::new(
        version,
        description.into(),
        sqlx::migrate::MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dialect with numbered placeholders: PostgreSQL's.
    const NUMBERED: Dialect = <super::super::postgres::PgBackend as Backend>::DIALECT;

    #[test]
    fn placeholders_are_numbered_across_a_chain() {
        assert_eq!(
            NUMBERED.render_chain(&[
                "UPDATE t SET a = {greatest}(a, ?) WHERE b = ?",
                "DELETE FROM u WHERE id IN ({id_list})",
                "INSERT INTO v VALUES (?)",
            ]),
            "WITH w0 AS (UPDATE t SET a = GREATEST(a, $1) WHERE b = $2), \
             w1 AS (DELETE FROM u WHERE id IN (SELECT UNNEST($3::bigint[]))) \
             INSERT INTO v VALUES ($4)"
        );
    }

    #[test]
    fn statements_are_rendered_once_per_chain() {
        static CACHE: RenderCache = RenderCache::new();
        static FIRST: &str = "SELECT ?";
        static SECOND: &str = "DELETE FROM t WHERE a = ?";
        let once = NUMBERED.statement(&CACHE, &[FIRST, SECOND]);
        let again = NUMBERED.statement(&CACHE, &[FIRST, SECOND]);
        assert!(
            matches!((&once, &again), (Cow::Borrowed(a), Cow::Borrowed(b)) if std::ptr::eq(*a, *b))
        );
        assert_eq!(once, "WITH w0 AS (SELECT $1) DELETE FROM t WHERE a = $2");
        assert_eq!(
            NUMBERED.statement(&CACHE, &[SECOND]),
            "DELETE FROM t WHERE a = $1"
        );
    }

    #[test]
    fn a_single_statement_is_not_wrapped_and_unknown_braces_stay() {
        assert_eq!(
            NUMBERED.render_chain(&["SELECT '{x}', ?{lock}"]),
            "SELECT '{x}', $1 FOR UPDATE"
        );
    }
}
