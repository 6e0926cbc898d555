//! The control plane without a server: parties in memory, saved to a state
//! file behind a short write delay, and optionally shared with other local
//! instances through a discovery file guarded by a file lock.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use lanrage_files::{FileLock, read_optional, set_aside, write_atomic};
use lanrage_proto::{
    JoinPartyResponse, Name, Party, PartyExtras, PartyId, PartyResponse, Peer, PeerId, PeerInfo,
    Region, Relay, Signal, SignalData, Timestamp,
};
use lanrage_rules::{
    self as rules, JoinPlan, Member, PARTY_ID_BYTES, Removal, RemovalPlan, Roster, RuleError,
    virtual_ip,
};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    control::{ControlPlane, LeaveOutcome, PeerDetails},
    error::{ClientError, Result},
    heartbeat::HeartbeatSlot,
};

/// Settings of a [`LocalControlPlane`]: [`LocalConfig::new`] or
/// [`LocalConfig::in_dir`], then the fields for what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalConfig {
    /// The peer this plane acts for.
    pub peer_id: PeerId,
    /// Where this instance's parties are saved; none keeps them in memory only.
    pub state_file: Option<PathBuf>,
    /// A file several local instances share to find each other's parties;
    /// none keeps this instance on its own.
    pub discovery_file: Option<PathBuf>,
    /// Changes within this window after the first are saved in one write.
    pub write_delay: Duration,
    /// A member silent this long is removed by the cleanup.
    pub peer_timeout: Duration,
    /// How often the cleanup runs.
    pub cleanup_interval: Duration,
    /// How long a signal waits to be polled.
    pub signal_ttl: Duration,
    /// How often the heartbeat task started by creating or joining a party
    /// keeps this peer alive; never less often than a third of
    /// [`LocalConfig::peer_timeout`], whatever this says.
    pub heartbeat_interval: Duration,
}

impl LocalConfig {
    /// In memory only, with the server's timeouts (peers 300 s, cleanup
    /// every 60 s, signals 60 s), a heartbeat every 30 s and a 200 ms write
    /// window.
    pub fn new(peer_id: PeerId) -> Self {
        Self {
            peer_id,
            state_file: None,
            discovery_file: None,
            write_delay: Duration::from_millis(200),
            peer_timeout: Duration::from_secs(300),
            cleanup_interval: Duration::from_secs(60),
            signal_ttl: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
        }
    }

    /// The heartbeat period actually used: [`LocalConfig::heartbeat_interval`],
    /// but at most a third of the peer timeout so that the cleanup never
    /// takes a live peer for a stale one.
    pub fn effective_heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
            .min(self.peer_timeout / 3)
            .max(Duration::from_millis(1))
    }

    /// Files under `dir`: `local-PEER.json` for this peer's state and
    /// `discovery.json` shared by every instance using the same folder.
    pub fn in_dir(peer_id: PeerId, dir: &Path) -> Self {
        let state = dir.join(format!("local-{peer_id}.json"));
        Self {
            state_file: Some(state),
            discovery_file: Some(dir.join("discovery.json")),
            ..Self::new(peer_id)
        }
    }
}

/// A file that could not be read and was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetAside {
    /// The file as configured.
    pub path: PathBuf,
    /// Where its unreadable content now is.
    pub moved_to: PathBuf,
    /// Why it could not be read.
    pub error: String,
}

/// One party with what the server would also keep about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    party: Party,
    virtual_ips: BTreeMap<PeerId, Ipv4Addr>,
    seq: u64,
}

impl Entry {
    /// The party as the shared rules see it. An address outside the rules'
    /// range (a book written by hand) counts as none.
    fn roster(&self) -> Roster<'_> {
        Roster {
            party_id: &self.party.party_id,
            host_id: &self.party.host_id,
            // The local plane keeps v1's rules: the host leaving ends it.
            host_policy: lanrage_proto::HostPolicy::End,
            members: self
                .party
                .peers
                .iter()
                .map(|(peer_id, peer)| Member {
                    peer_id,
                    vip_index: self
                        .virtual_ips
                        .get(peer_id)
                        .copied()
                        .and_then(rules::vip_index),
                    last_seen: peer.last_seen,
                    // Succession matters only to a migrating party.
                    joined_at: peer.last_seen,
                    present: true,
                })
                .collect(),
        }
    }

    fn view(&self) -> PartyResponse {
        PartyResponse {
            party: self.party.clone(),
            virtual_ips: self.virtual_ips.clone(),
            seq: self.seq,
            // No peer proves its key to the local plane, which has no
            // settings nor host changes either.
            extras: PartyExtras::default(),
        }
    }

    fn joined(&self, peer_id: &PeerId) -> JoinPartyResponse {
        JoinPartyResponse {
            party: self.party.clone(),
            virtual_ip: self
                .virtual_ips
                .get(peer_id)
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            seq: self.seq,
            extras: PartyExtras::default(),
        }
    }
}

/// The state file: versioned so the format can change.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum StateFile {
    #[serde(rename = "1")]
    V1 {
        peer_id: PeerId,
        parties: Vec<Entry>,
    },
}

/// The discovery file shared by local instances.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum DiscoveryFile {
    #[serde(rename = "1")]
    V1 {
        parties: BTreeMap<PartyId, Entry>,
        signals: Vec<Signal>,
    },
}

/// Parties and queued signals. The party rules are those of the server
/// (`lanrage-rules`): this book asks them and carries out their decisions,
/// on the in-memory book and on the shared discovery file alike.
#[derive(Debug, Default, Clone)]
struct Book {
    parties: BTreeMap<PartyId, Entry>,
    signals: Vec<Signal>,
}

/// A refusal of the rules, with the status the server answers it with.
fn refused(error: RuleError) -> ClientError {
    let status = match error.refusal() {
        rules::Refusal::NotFound => StatusCode::NOT_FOUND,
        rules::Refusal::Forbidden => StatusCode::FORBIDDEN,
        rules::Refusal::Conflict => StatusCode::CONFLICT,
        rules::Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ClientError::refused(status, error.to_string())
}

fn party_id_randomness() -> Result<[u8; PARTY_ID_BYTES]> {
    let mut bytes = [0u8; PARTY_ID_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| ClientError::Config(format!("no randomness for a party id: {e}")))?;
    Ok(bytes)
}

impl Book {
    fn entry(&self, party_id: &PartyId) -> Result<&Entry> {
        self.parties
            .get(party_id)
            .ok_or_else(|| refused(RuleError::PartyNotFound(party_id.clone())))
    }

    fn roster(&self, party_id: &PartyId) -> Option<Roster<'_>> {
        self.parties.get(party_id).map(Entry::roster)
    }

    fn member(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<&Peer> {
        self.entry(party_id)?
            .party
            .peers
            .get(peer_id)
            .ok_or_else(|| {
                refused(RuleError::NotAMember {
                    party_id: party_id.clone(),
                    peer_id: peer_id.clone(),
                })
            })
    }

    /// The party `peer_id` is in, if any.
    fn party_of(&self, peer_id: &PeerId) -> Option<PartyId> {
        self.parties
            .iter()
            .find(|(_, e)| e.party.peers.contains_key(peer_id))
            .map(|(id, _)| id.clone())
    }

    /// Creates a party whose ID is made of `random`.
    fn create(
        &mut self,
        name: Name,
        host: PeerInfo,
        now: Timestamp,
        random: [u8; PARTY_ID_BYTES],
    ) -> JoinPartyResponse {
        let host_id = host.peer_id.clone();
        let plan = rules::plan_create(random, self.party_of(&host_id).as_ref());
        if let Some(old) = &plan.leave_first {
            self.remove(old, &host_id, Removal::Moved);
        }
        let entry = Entry {
            party: Party {
                party_id: plan.party_id.clone(),
                name,
                host_id: host_id.clone(),
                created_at: now,
                peers: BTreeMap::from([(host_id.clone(), host.into_peer(now))]),
            },
            virtual_ips: BTreeMap::from([(host_id.clone(), virtual_ip(plan.host_vip_index))]),
            seq: 1,
        };
        let joined = entry.joined(&host_id);
        self.parties.insert(plan.party_id, entry);
        joined
    }

    fn join(
        &mut self,
        party_id: &PartyId,
        peer: PeerInfo,
        now: Timestamp,
    ) -> Result<JoinPartyResponse> {
        let peer_id = peer.peer_id.clone();
        // Decided before anything changes: a full party refuses the peer
        // without taking it out of the party it is in.
        let plan = rules::plan_join(
            party_id,
            self.roster(party_id).as_ref(),
            &peer_id,
            self.party_of(&peer_id).as_ref(),
        )
        .map_err(refused)?;
        if let JoinPlan::Admit {
            leave_first: Some(old),
            ..
        } = &plan
        {
            self.remove(old, &peer_id, Removal::Moved);
        }
        let entry = self
            .parties
            .get_mut(party_id)
            .ok_or_else(|| refused(RuleError::PartyNotFound(party_id.clone())))?;
        entry
            .virtual_ips
            .insert(peer_id.clone(), virtual_ip(plan.vip_index()));
        entry
            .party
            .peers
            .insert(peer_id.clone(), peer.into_peer(now));
        entry.seq += 1;
        Ok(entry.joined(&peer_id))
    }

    fn leave(&mut self, party_id: &PartyId, peer_id: &PeerId) -> Result<LeaveOutcome> {
        let plan = rules::plan_leave(party_id, self.roster(party_id).as_ref(), peer_id)
            .map_err(refused)?;
        Ok(self.carry_out(party_id, peer_id, plan))
    }

    /// Removes a member as the rules decide for `why`; none when they
    /// remove nobody (not a member, or no longer silent).
    fn remove(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        why: Removal,
    ) -> Option<LeaveOutcome> {
        let plan = rules::plan_removal(&self.roster(party_id)?, peer_id, why)?;
        Some(self.carry_out(party_id, peer_id, plan))
    }

    /// Carries out a removal the rules decided. As on the server, the
    /// signals waiting for whoever goes go with them.
    fn carry_out(
        &mut self,
        party_id: &PartyId,
        peer_id: &PeerId,
        plan: RemovalPlan,
    ) -> LeaveOutcome {
        match plan {
            RemovalPlan::EndParty(_) => {
                self.parties.remove(party_id);
                self.signals.retain(|s| s.party_id != *party_id);
                LeaveOutcome::PartyDeleted
            }
            RemovalPlan::RemoveMember | RemovalPlan::HandOver { .. } => {
                if let Some(entry) = self.parties.get_mut(party_id) {
                    entry.party.peers.remove(peer_id);
                    entry.virtual_ips.remove(peer_id);
                    entry.seq += 1;
                    if let RemovalPlan::HandOver { new_host } = plan {
                        entry.party.host_id = new_host;
                        entry.seq += 2;
                    }
                }
                self.signals
                    .retain(|s| !(s.party_id == *party_id && s.to_peer_id == *peer_id));
                LeaveOutcome::Left
            }
        }
    }

    fn heartbeat(&mut self, party_id: &PartyId, peer_id: &PeerId, now: Timestamp) -> Result<()> {
        rules::check_member(party_id, self.roster(party_id).as_ref(), peer_id).map_err(refused)?;
        if let Some(peer) = self
            .parties
            .get_mut(party_id)
            .and_then(|entry| entry.party.peers.get_mut(peer_id))
        {
            peer.last_seen = now;
        }
        Ok(())
    }

    fn send_signal(&mut self, signal: Signal) -> Result<()> {
        self.member(&signal.party_id, &signal.from_peer_id)?;
        self.member(&signal.party_id, &signal.to_peer_id)?;
        self.signals.push(signal);
        Ok(())
    }

    fn take_signals(&mut self, party_id: &PartyId, to: &PeerId) -> Result<Vec<Signal>> {
        self.member(party_id, to)?;
        let (mine, rest) = std::mem::take(&mut self.signals)
            .into_iter()
            .partition(|s| s.party_id == *party_id && s.to_peer_id == *to);
        self.signals = rest;
        Ok(mine)
    }

    /// Removes members silent since before `peer_cutoff` (ending the
    /// parties of hosts among them), then parties left without their host,
    /// as the server's cleanup pass does; and signals older than
    /// `signal_cutoff`. Returns how many members were removed.
    fn cleanup(&mut self, peer_cutoff: Timestamp, signal_cutoff: Timestamp) -> usize {
        let rosters: Vec<Roster<'_>> = self.parties.values().map(Entry::roster).collect();
        let stale = rules::stale_members(&rosters, peer_cutoff);
        let why = Removal::TimedOut {
            silent_since: peer_cutoff,
        };
        let mut removed = 0;
        for (party_id, peer_id) in stale {
            // The party may be gone already: its host was stale too.
            if self.remove(&party_id, &peer_id, why).is_some() {
                removed += 1;
            }
        }
        let orphans: Vec<PartyId> = self
            .parties
            .values()
            .filter(|entry| rules::orphan_end(&entry.roster()).is_some())
            .map(|entry| entry.party.party_id.clone())
            .collect();
        for party_id in orphans {
            self.parties.remove(&party_id);
            self.signals.retain(|s| s.party_id != party_id);
        }
        self.signals.retain(|s| s.sent_at >= signal_cutoff);
        removed
    }

    /// The parties `peer_id` is in (what this instance keeps of a shared book).
    fn parties_of(&self, peer_id: &PeerId) -> BTreeMap<PartyId, Entry> {
        self.parties
            .iter()
            .filter(|(_, e)| e.party.peers.contains_key(peer_id))
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect()
    }
}

/// Reads the discovery file, moving a corrupt one aside.
fn read_discovery(path: &Path) -> Result<(Book, Option<SetAside>)> {
    let Some(bytes) = read_optional(path).map_err(ClientError::file("read", path))? else {
        return Ok((Book::default(), None));
    };
    match serde_json::from_slice::<DiscoveryFile>(&bytes) {
        Ok(DiscoveryFile::V1 { parties, signals }) => Ok((Book { parties, signals }, None)),
        Err(error) => {
            let moved_to = set_aside(path).map_err(ClientError::file("move aside", path))?;
            tracing::warn!(path = %path.display(), moved_to = %moved_to.display(), %error,
                "discovery file unreadable: moved aside, starting an empty one");
            Ok((
                Book::default(),
                Some(SetAside {
                    path: path.to_path_buf(),
                    moved_to,
                    error: error.to_string(),
                }),
            ))
        }
    }
}

/// Runs `op` on the discovery file's book under the file lock, and writes
/// the book back if `write` and `op` succeeded.
fn with_discovery<R>(
    path: &Path,
    write: bool,
    op: impl FnOnce(&mut Book) -> Result<R>,
) -> Result<(R, Book, Option<SetAside>)> {
    let _lock = FileLock::exclusive(path).map_err(ClientError::file("lock", path))?;
    let (mut book, set_aside) = read_discovery(path)?;
    let result = op(&mut book)?;
    if write {
        let file = DiscoveryFile::V1 {
            parties: book.parties.clone(),
            signals: book.signals.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| ClientError::Config(format!("cannot encode the discovery file: {e}")))?;
        write_atomic(path, &bytes, true).map_err(ClientError::file("write", path))?;
    }
    Ok((result, book, set_aside))
}

/// The control plane of a machine with no server: same interface, same
/// rules, no network.
///
/// Parties live in memory and are saved to [`LocalConfig::state_file`] by a
/// background writer: the first change arms a [`LocalConfig::write_delay`]
/// timer and every change until it fires goes into the same write. Writes
/// are atomic (temporary file, fsync, rename); at start the file is loaded,
/// and a file that cannot be read is moved aside and reported
/// ([`LocalControlPlane::set_aside_files`]) instead of failing the start.
///
/// With a [`LocalConfig::discovery_file`], parties and signals live in that
/// file instead, read and written under an exclusive file lock, so several
/// instances on one machine (or a shared folder) find and join each other's
/// parties.
///
/// ```no_run
/// use lanrage_client::{ControlPlane, LocalConfig, LocalControlPlane};
/// use lanrage_proto::PeerId;
///
/// # async fn example() -> Result<(), lanrage_client::ClientError> {
/// let dir = std::path::Path::new("/tmp/lanrage");
/// let me = PeerId::parse("alice").expect("valid id");
/// let plane = LocalControlPlane::open(LocalConfig::in_dir(me, dir)).await?;
/// for party in plane.discover_parties().await? {
///     println!("{} hosted by {}", party.party.name, party.party.host_id);
/// }
/// plane.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LocalControlPlane {
    inner: Arc<LocalInner>,
}

#[derive(Debug)]
struct LocalInner {
    config: LocalConfig,
    book: Mutex<Book>,
    /// Bumped on every change; `saved` is the value last written.
    changes: AtomicU64,
    saved: AtomicU64,
    writes: AtomicU64,
    dirty: Arc<Notify>,
    write_lock: tokio::sync::Mutex<()>,
    set_aside: Mutex<Vec<SetAside>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    heartbeat: HeartbeatSlot,
    heartbeats_sent: AtomicU64,
}

impl Drop for LocalInner {
    /// Dropped without [`ControlPlane::close`]: a best effort to save what
    /// the writer had not saved yet. Inside a Tokio runtime the write (and
    /// its fsync) runs on the blocking pool, so it never stalls an async
    /// worker, and it may finish after the drop returns; outside one it
    /// runs here. Call `close` to know the state is on disk.
    fn drop(&mut self) {
        for task in self.tasks.get_mut().iter() {
            task.abort();
        }
        self.heartbeat.stop(None);
        if self.changes.load(Ordering::SeqCst) == self.saved.load(Ordering::SeqCst) {
            return;
        }
        let (Some(path), Some(bytes)) = (self.config.state_file.clone(), self.encode_state())
        else {
            return;
        };
        let write = move || {
            if let Err(error) = write_atomic(&path, &bytes, true) {
                tracing::warn!(path = %path.display(), %error, "cannot save the local state");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

impl LocalInner {
    fn encode_state(&self) -> Option<Vec<u8>> {
        let parties = self.book.lock().parties.values().cloned().collect();
        let file = StateFile::V1 {
            peer_id: self.config.peer_id.clone(),
            parties,
        };
        serde_json::to_vec_pretty(&file).ok()
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.dirty.notify_one();
    }

    fn record(&self, set_aside: Option<SetAside>) {
        if let Some(found) = set_aside {
            self.set_aside.lock().push(found);
        }
    }

    /// Writes the state file now if anything changed since the last write.
    async fn save(&self) -> Result<()> {
        let Some(path) = self.config.state_file.clone() else {
            return Ok(());
        };
        let _writing = self.write_lock.lock().await;
        let changes = self.changes.load(Ordering::SeqCst);
        if changes == self.saved.load(Ordering::SeqCst) {
            return Ok(());
        }
        let bytes = self
            .encode_state()
            .ok_or_else(|| ClientError::Config("cannot encode the local state".into()))?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&target, &bytes, true))
            .await
            .map_err(|_| ClientError::Closed)?
            .map_err(ClientError::file("write", &path))?;
        self.saved.store(changes, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl LocalControlPlane {
    /// Loads the state file (if any), syncs with the discovery file (if
    /// any), and starts the writer and the stale-peer cleanup.
    pub async fn open(config: LocalConfig) -> Result<Self> {
        let mut set_aside_files = Vec::new();
        let mut book = Book::default();
        if let Some(path) = config.state_file.clone() {
            let (parties, found) = tokio::task::spawn_blocking(move || load_state(&path))
                .await
                .map_err(|_| ClientError::Closed)??;
            book.parties = parties;
            set_aside_files.extend(found);
        }
        let plane = Self {
            inner: Arc::new(LocalInner {
                book: Mutex::new(book),
                changes: AtomicU64::new(0),
                saved: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                dirty: Arc::new(Notify::new()),
                write_lock: tokio::sync::Mutex::new(()),
                set_aside: Mutex::new(set_aside_files),
                tasks: Mutex::new(Vec::new()),
                heartbeat: HeartbeatSlot::default(),
                heartbeats_sent: AtomicU64::new(0),
                config,
            }),
        };
        if plane.inner.config.discovery_file.is_some() {
            // What we saved may be out of date: the shared file says who
            // is still in which party.
            plane.read(|_| Ok(())).await?;
        }
        let mut tasks = Vec::new();
        if plane.inner.config.state_file.is_some() {
            tasks.push(tokio::spawn(write_behind(
                Arc::downgrade(&plane.inner),
                plane.inner.dirty.clone(),
                plane.inner.config.write_delay,
            )));
        }
        tasks.push(tokio::spawn(cleanup_loop(Arc::downgrade(&plane.inner))));
        *plane.inner.tasks.lock() = tasks;
        Ok(plane)
    }

    /// The settings this plane runs with.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Files found unreadable (at start or since) and moved aside.
    pub fn set_aside_files(&self) -> Vec<SetAside> {
        self.inner.set_aside.lock().clone()
    }

    /// How many times the state file was written.
    pub fn state_writes(&self) -> u64 {
        self.inner.writes.load(Ordering::SeqCst)
    }

    /// Writes pending changes to the state file now.
    pub async fn flush(&self) -> Result<()> {
        self.inner.save().await
    }

    /// Every party this instance can see: with a discovery file, those of
    /// every instance sharing it.
    pub async fn discover_parties(&self) -> Result<Vec<PartyResponse>> {
        self.read(|book| Ok(book.parties.values().map(Entry::view).collect()))
            .await
    }

    /// Takes in a party known from elsewhere (the remote plane's last view
    /// when it falls back), unless a newer copy of it is already here.
    ///
    /// Its members count as seen now: their `last_seen` is the server's
    /// word, and the local cleanup must give them a full
    /// [`LocalConfig::peer_timeout`] from the switch, not remove at once
    /// everyone quiet for longer than that on the server. If this plane's
    /// peer is a member, its heartbeat task starts.
    pub async fn adopt_party(&self, view: PartyResponse) -> Result<()> {
        let party_id = view.party.party_id.clone();
        let member = view.party.peers.contains_key(&self.inner.config.peer_id);
        self.mutate(move |book, now| {
            let newer = book
                .parties
                .get(&view.party.party_id)
                .is_none_or(|known| known.seq < view.seq);
            if newer {
                let mut party = view.party;
                for peer in party.peers.values_mut() {
                    peer.last_seen = now;
                }
                book.parties.insert(
                    party.party_id.clone(),
                    Entry {
                        party,
                        virtual_ips: view.virtual_ips,
                        seq: view.seq,
                    },
                );
            }
            Ok(())
        })
        .await?;
        if member {
            self.start_heartbeat(party_id);
        }
        Ok(())
    }

    /// The party whose heartbeat task is running, if any.
    pub fn heartbeat_party(&self) -> Option<PartyId> {
        self.inner.heartbeat.party()
    }

    /// How many heartbeats the heartbeat task made.
    pub fn heartbeats_sent(&self) -> u64 {
        self.inner.heartbeats_sent.load(Ordering::Relaxed)
    }

    /// Starts (or moves) the heartbeat task to `party_id`: it keeps this
    /// plane's peer alive against the plane's own cleanup, and against the
    /// cleanup of other instances sharing the discovery file.
    fn start_heartbeat(&self, party_id: PartyId) {
        // Weak: a plane dropped without close() stops beating.
        let weak = Arc::downgrade(&self.inner);
        self.inner.heartbeat.start(
            party_id,
            self.inner.config.effective_heartbeat_interval(),
            move || weak.upgrade().map(|inner| LocalControlPlane { inner }),
            |plane| {
                plane.inner.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            },
        );
    }

    /// Stops the heartbeat task (of `party_id` only, when given).
    fn stop_heartbeat(&self, party_id: Option<&PartyId>) {
        self.inner.heartbeat.stop(party_id);
    }

    /// Removes stale members now, as the periodic cleanup does; returns how
    /// many were removed.
    pub async fn cleanup_now(&self) -> Result<usize> {
        self.cleanup_at(Timestamp::now()).await
    }

    /// Runs the cleanup as if it were `now` (the server's
    /// `Service::cleanup_once` takes its time the same way): members silent
    /// for longer than [`LocalConfig::peer_timeout`] before `now` are
    /// removed. Returns how many were.
    pub async fn cleanup_at(&self, now: Timestamp) -> Result<usize> {
        let peer_cutoff = rules::stale_cutoff(now, self.inner.config.peer_timeout);
        let signal_cutoff = now.plus_secs(-secs(self.inner.config.signal_ttl));
        self.mutate(move |book, _| Ok(book.cleanup(peer_cutoff, signal_cutoff)))
            .await
    }

    /// Applies a change to the parties: in memory, or in the discovery file
    /// under its lock (keeping in memory the parties this peer is in).
    async fn mutate<R: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Book, Timestamp) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let now = Timestamp::now();
        let result = match self.inner.config.discovery_file.clone() {
            None => op(&mut self.inner.book.lock(), now)?,
            Some(path) => {
                let (result, shared, found) = tokio::task::spawn_blocking(move || {
                    with_discovery(&path, true, |b| op(b, now))
                })
                .await
                .map_err(|_| ClientError::Closed)??;
                self.inner.record(found);
                self.keep(&shared);
                result
            }
        };
        self.inner.changed();
        Ok(result)
    }

    /// Reads the parties: from memory, or from the discovery file.
    async fn read<R>(&self, op: impl FnOnce(&Book) -> Result<R>) -> Result<R> {
        match self.inner.config.discovery_file.clone() {
            None => op(&self.inner.book.lock()),
            Some(path) => {
                let ((), shared, found) =
                    tokio::task::spawn_blocking(move || with_discovery(&path, false, |_| Ok(())))
                        .await
                        .map_err(|_| ClientError::Closed)??;
                self.inner.record(found);
                if self.keep(&shared) {
                    self.inner.changed();
                }
                op(&shared)
            }
        }
    }

    /// Keeps in memory (and so in the state file) the parties of the shared
    /// book this peer is in; true if that changed anything.
    fn keep(&self, shared: &Book) -> bool {
        let mine = shared.parties_of(&self.inner.config.peer_id);
        let mut book = self.inner.book.lock();
        if book.parties == mine {
            return false;
        }
        book.parties = mine;
        true
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Reads the state file; a corrupt one is moved aside and reported.
fn load_state(path: &Path) -> Result<(BTreeMap<PartyId, Entry>, Option<SetAside>)> {
    let Some(bytes) = read_optional(path).map_err(ClientError::file("read", path))? else {
        return Ok((BTreeMap::new(), None));
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(StateFile::V1 { parties, .. }) => Ok((
            parties
                .into_iter()
                .map(|e| (e.party.party_id.clone(), e))
                .collect(),
            None,
        )),
        Err(error) => {
            let moved_to = set_aside(path).map_err(ClientError::file("move aside", path))?;
            tracing::warn!(path = %path.display(), moved_to = %moved_to.display(), %error,
                "state file unreadable: moved aside, starting empty");
            Ok((
                BTreeMap::new(),
                Some(SetAside {
                    path: path.to_path_buf(),
                    moved_to,
                    error: error.to_string(),
                }),
            ))
        }
    }
}

/// Saves the state a short while after the first of a burst of changes.
/// It holds the plane weakly, so a plane dropped without `close` goes away.
async fn write_behind(inner: Weak<LocalInner>, dirty: Arc<Notify>, delay: Duration) {
    loop {
        dirty.notified().await;
        tokio::time::sleep(delay).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Err(error) = strong.save().await {
            tracing::warn!(error = %crate::error_chain(&error), "cannot save the local state");
        }
    }
}

/// Removes stale peers every `cleanup_interval`.
async fn cleanup_loop(inner: Weak<LocalInner>) {
    let Some(every) = inner.upgrade().map(|i| i.config.cleanup_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let plane = LocalControlPlane { inner: strong };
        match plane.cleanup_now().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "stale peers removed"),
            Err(error) => tracing::warn!(error = %crate::error_chain(&error), "cleanup failed"),
        }
    }
}

#[async_trait]
impl ControlPlane for LocalControlPlane {
    fn peer_id(&self) -> &PeerId {
        &self.inner.config.peer_id
    }

    async fn register_party(&self, name: Name, me: PeerDetails) -> Result<JoinPartyResponse> {
        let host = me.into_info(self.inner.config.peer_id.clone());
        let random = party_id_randomness()?;
        let joined = self
            .mutate(move |book, now| Ok(book.create(name, host, now, random)))
            .await?;
        self.start_heartbeat(joined.party.party_id.clone());
        Ok(joined)
    }

    async fn join_party(&self, party_id: &PartyId, me: PeerDetails) -> Result<JoinPartyResponse> {
        let peer = me.into_info(self.inner.config.peer_id.clone());
        let party_id = party_id.clone();
        let joined = self
            .mutate(move |book, now| book.join(&party_id, peer, now))
            .await?;
        self.start_heartbeat(joined.party.party_id.clone());
        Ok(joined)
    }

    async fn leave_party(&self, party_id: &PartyId) -> Result<LeaveOutcome> {
        self.stop_heartbeat(Some(party_id));
        let (party_id, peer_id) = (party_id.clone(), self.inner.config.peer_id.clone());
        self.mutate(move |book, _| book.leave(&party_id, &peer_id))
            .await
    }

    async fn get_party(&self, party_id: &PartyId) -> Result<PartyResponse> {
        self.read(|book| book.entry(party_id).map(Entry::view))
            .await
    }

    async fn get_peers(&self, party_id: &PartyId) -> Result<BTreeMap<PeerId, Peer>> {
        self.read(|book| book.entry(party_id).map(|e| e.party.peers.clone()))
            .await
    }

    async fn discover_peer(&self, party_id: &PartyId, peer_id: &PeerId) -> Result<Peer> {
        self.read(|book| book.member(party_id, peer_id).cloned())
            .await
    }

    async fn heartbeat(&self, party_id: &PartyId) -> Result<()> {
        let (party_id, peer_id) = (party_id.clone(), self.inner.config.peer_id.clone());
        self.mutate(move |book, now| book.heartbeat(&party_id, &peer_id, now))
            .await
    }

    async fn send_signal(
        &self,
        party_id: &PartyId,
        to_peer_id: &PeerId,
        signal_data: SignalData,
    ) -> Result<()> {
        let signal = Signal {
            party_id: party_id.clone(),
            from_peer_id: self.inner.config.peer_id.clone(),
            to_peer_id: to_peer_id.clone(),
            signal_data,
            sent_at: Timestamp::now(),
        };
        self.mutate(move |book, _| book.send_signal(signal)).await
    }

    async fn poll_signals(&self, party_id: &PartyId) -> Result<Vec<Signal>> {
        let (party_id, me) = (party_id.clone(), self.inner.config.peer_id.clone());
        self.mutate(move |book, _| book.take_signals(&party_id, &me))
            .await
    }

    /// A machine without a server knows no relays.
    async fn list_relays(&self) -> Result<Vec<Relay>> {
        Ok(Vec::new())
    }

    async fn relays_by_region(&self, _region: &Region) -> Result<Vec<Relay>> {
        Ok(Vec::new())
    }

    async fn close(&self) -> Result<()> {
        for task in self.inner.tasks.lock().iter() {
            task.abort();
        }
        self.stop_heartbeat(None);
        self.inner.save().await
    }
}

#[cfg(test)]
mod tests {
    use lanrage_proto::{IpOrUnknown, PublicKey};

    use super::*;

    /// Runs `hold` on another thread and panics while the guard it returned
    /// is held: a poisoning lock would refuse every later use of the data.
    fn panic_holding<G>(hold: impl FnOnce() -> G + Send) {
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _guard = hold();
                    panic!("a deliberate panic while holding a lock");
                })
                .join()
        });
        assert!(outcome.is_err(), "the holding thread panicked");
    }

    #[tokio::test]
    async fn a_panic_while_the_plane_is_locked_fails_no_later_change_and_close_stops_its_tasks() {
        let me = PeerId::parse("alice").unwrap();
        let plane = LocalControlPlane::open(LocalConfig::new(me.clone()))
            .await
            .unwrap();
        panic_holding(|| plane.inner.book.lock());
        panic_holding(|| plane.inner.tasks.lock());

        let host = PeerDetails::new(
            Name::parse("Alice").unwrap(),
            PublicKey::from_bytes(&[1; 32]),
        )
        .with_local_endpoint(IpOrUnknown::Unknown, 51820);
        let joined = plane
            .register_party(Name::parse("Friday LAN").unwrap(), host)
            .await
            .expect("the change is applied");
        let party = plane.get_party(&joined.party.party_id).await.unwrap();
        assert_eq!(party.party.host_id, me);

        plane.close().await.unwrap();
        let tasks = std::mem::take(&mut *plane.inner.tasks.lock());
        assert!(!tasks.is_empty());
        for task in tasks {
            let ended = task.await.expect_err("close aborts the background tasks");
            assert!(ended.is_cancelled());
        }
    }
}
