//! Group commit for a store with a single writer (SQLite): one task, the
//! [`Writer`], owns the writes. It takes every op queued meanwhile, applies
//! them in one transaction (each in its own savepoint, so one op's failure
//! undoes only that op), commits once, announces the events in commit
//! order, then answers each caller. `seq` stays gap-free: each op reads its
//! party's counter inside the shared transaction, after the ops before it,
//! and an op undone takes its event (and so its `seq`) with it.
//!
//! With one writer, changes run one after another whatever we do; what a
//! change costs is its round trips to the database. Sharing BEGIN and
//! COMMIT, and the hand-offs between the request tasks, across a batch
//! removes most of them.
//!
//! The writer is a task the server owns: [`crate::Server::run`] starts it
//! ([`Writer::spawn`]: on SQLite's writer thread, where the statements of
//! a batch run with no hand-off each) and, once its connections have
//! drained, stops it. Ops queued by then are still committed; later ones
//! are refused at once.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{
    Error, Result,
    heartbeats::Heartbeats,
    snapshots::SnapshotCache,
    write::{Change, Outcome, WriteOp},
};
use crate::{
    config::Config,
    events::{Event, EventBus},
    store::{Store, StoreError},
    telemetry::error_chain,
};

/// Most ops in one transaction: bounds how long the first of them waits
/// for its answer.
const MAX_BATCH: usize = 64;
/// Ops waiting for the writer; beyond it callers wait to queue.
const QUEUE: usize = 1024;
/// An op that waited this long is refused as the database being
/// unavailable, as a request that cannot get a pooled connection would be.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// One queued op and where its answer goes.
#[derive(Debug)]
struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Outcome>>,
    queued_at: Instant,
}

impl Job {
    fn answer(self, outcome: Result<Outcome>) {
        // A caller that went away (its request was cancelled) needs no
        // answer; the change stands, as if its response were lost.
        let _ = self.reply.send(outcome);
    }
}

/// Where the service queues ops for the writer.
#[derive(Debug, Clone)]
pub(super) struct WriteQueue {
    jobs: mpsc::Sender<Job>,
}

/// What the writer does with a batch's events once it committed.
#[derive(Debug)]
pub(super) struct Announce {
    pub(super) events: EventBus,
    pub(super) heartbeats: Arc<Heartbeats>,
    pub(super) snapshots: Arc<SnapshotCache>,
}

impl Announce {
    fn committed(&self, events: Vec<Event>) {
        // Memory first, so a caller answered next reads its own write;
        // then every subscriber hears of it, in commit order.
        for event in &events {
            if let Event::Party { message, .. } = event {
                self.heartbeats.forget(message);
                if let Some((party_id, _)) = message.party_seq() {
                    self.snapshots.invalidate(party_id);
                }
            }
        }
        for event in events {
            self.events.publish(event);
        }
    }
}

/// The group-commit writer: the one task that writes to a single-writer
/// store. [`super::Service::new`] makes it; whoever uses the service runs
/// it ([`Writer::run`]).
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    announce: Announce,
}

/// The queue into a writer over `store`, and the writer.
pub(super) fn channel(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    announce: Announce,
) -> (WriteQueue, Writer) {
    let (jobs, queue) = mpsc::channel(QUEUE);
    let writer = Writer {
        queue,
        store,
        config,
        announce,
    };
    (WriteQueue { jobs }, writer)
}

/// An op that could not be run in time.
fn timed_out() -> Error {
    Error::Store(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
}

/// The writer has stopped (the server is stopping), or dropped the op
/// unanswered (an op in its batch panicked).
fn writer_gone() -> Error {
    Error::Store(StoreError::Unavailable(sqlx::Error::PoolClosed))
}

impl WriteQueue {
    /// Queues `op` and waits until it is committed (or failed).
    pub(super) async fn submit(&self, op: WriteOp) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            reply,
            queued_at: Instant::now(),
        };
        // A full queue means the writer is far behind: refuse as a request
        // that cannot get a pooled connection is refused.
        match tokio::time::timeout(QUEUE_TIMEOUT, self.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(writer_gone()),
            Err(_) => return Err(timed_out()),
        }
        answer.await.map_err(|_| writer_gone())?
    }
}

/// A transaction that failed as a whole, and its ops, unanswered.
type Failed = (Error, Vec<Job>);

impl Writer {
    /// Runs the writer ([`Writer::run`]) where its store runs writes best
    /// ([`Store::write_runtime`]: SQLite's writer thread), else as a task
    /// on the caller's runtime.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        match self.store.write_runtime() {
            Some(runtime) => runtime.spawn(self.run(shutdown)),
            None => tokio::spawn(self.run(shutdown)),
        }
    }

    /// Commits queued ops until `shutdown` completes or the service (every
    /// clone of it) is gone. Then refuses new ops at once, commits those
    /// already queued, and returns: no caller is left waiting.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut taken = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                queued = self.queue.recv_many(&mut taken, MAX_BATCH) => {
                    if queued == 0 {
                        return;
                    }
                }
            }
            self.commit(std::mem::take(&mut taken)).await;
        }
        self.queue.close();
        while self.queue.recv_many(&mut taken, MAX_BATCH).await > 0 {
            self.commit(std::mem::take(&mut taken)).await;
        }
    }

    /// Commits `batch` in one transaction; when that fails as a whole,
    /// runs its ops again one by one so each caller gets its own outcome.
    async fn commit(&self, batch: Vec<Job>) {
        let Err((error, batch)) = self.commit_guarded(batch).await else {
            return;
        };
        if batch.len() == 1 {
            fail(batch, error);
            return;
        }
        // The transaction failed after its ops ran (a savepoint, a
        // statement that left it in doubt, or the commit): nothing of it
        // was committed.
        tracing::debug!(error = %error_chain(&error), "group commit failed; running its changes one by one");
        for job in batch {
            if let Err((error, alone)) = self.commit_guarded(vec![job]).await {
                fail(alone, error);
            }
        }
    }

    /// [`Writer::commit_batch`], but a panicking op (a bug) only costs its
    /// batch: the transaction rolls back, the batch's callers get 503, and
    /// the writer goes on serving the rest.
    async fn commit_guarded(&self, jobs: Vec<Job>) -> std::result::Result<(), Failed> {
        match AssertUnwindSafe(self.commit_batch(jobs))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!("a change panicked; its batch was rolled back");
                Ok(())
            }
        }
    }

    /// Applies `jobs` in one transaction, each in a savepoint, and answers
    /// them once it commits; gives back, unanswered, those not yet answered
    /// when the transaction as a whole fails.
    async fn commit_batch(&self, jobs: Vec<Job>) -> std::result::Result<(), Failed> {
        let mut change = match Change::begin(&*self.store, &self.config).await {
            Ok(change) => change,
            Err(error) => {
                // No op ran, and running them one by one would wait for the
                // writer connection once per op: all are refused at once.
                tracing::warn!(error = %error_chain(&error), changes = jobs.len(), "cannot start a write transaction");
                for job in jobs {
                    job.answer(Err(timed_out()));
                }
                return Ok(());
            }
        };
        let mut ran: Vec<(Job, Result<Outcome>)> = Vec::with_capacity(jobs.len());
        let mut queued = jobs.into_iter();
        while let Some(job) = queued.next() {
            // Checked before each op, not once per batch: behind a database
            // that stalls every write (a lock held elsewhere), waiting
            // callers are still answered within seconds.
            if job.queued_at.elapsed() > QUEUE_TIMEOUT {
                job.answer(Err(timed_out()));
                continue;
            }
            let outcome = match change.apply_in_savepoint(&job.op).await {
                Ok(outcome) => outcome,
                Err(error) => return Err((error.into(), unanswered(ran, job, queued))),
            };
            if in_doubt(&outcome) {
                if ran.is_empty() && queued.len() == 0 {
                    // Alone: its own error is its answer; the transaction
                    // is dropped, rolled back, not committed.
                    job.answer(outcome);
                    return Ok(());
                }
                let in_doubt = sqlx::Error::Protocol(
                    "a statement failed on the database; the batch's transaction is in doubt"
                        .into(),
                );
                let error = Error::Store(StoreError::Unavailable(in_doubt));
                return Err((error, unanswered(ran, job, queued)));
            }
            ran.push((job, outcome));
        }
        match change.commit().await {
            Ok(events) => self.announce.committed(events),
            Err(error) => return Err((error, ran.into_iter().map(|(job, _)| job).collect())),
        }
        for (job, outcome) in ran {
            job.answer(outcome);
        }
        Ok(())
    }
}

/// Whether an op failed on the database itself (not on a party rule):
/// SQLite may then have rolled back the whole transaction, so what ran
/// before it in the batch is in doubt.
fn in_doubt(outcome: &Result<Outcome>) -> bool {
    matches!(
        outcome,
        Err(Error::Store(
            StoreError::Unavailable(_) | StoreError::Database(_)
        ))
    )
}

/// The ops of a batch whose transaction failed at `failed`, in their
/// order, their outcomes so far dropped: nothing of it was committed.
fn unanswered(
    ran: Vec<(Job, Result<Outcome>)>,
    failed: Job,
    queued: impl Iterator<Item = Job>,
) -> Vec<Job> {
    ran.into_iter()
        .map(|(job, _)| job)
        .chain(std::iter::once(failed))
        .chain(queued)
        .collect()
}

/// Answers the one op of a failed transaction with its failure.
fn fail(alone: Vec<Job>, error: Error) {
    if let Some(job) = alone.into_iter().next() {
        job.answer(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lanrage_proto::{PartyId, ServerMessage};
    use tokio::sync::{Semaphore, broadcast};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        config::Config,
        service::{Mode, Service, write::TestOp},
        store::SqliteStore,
        testing::{info, peer},
    };

    async fn sqlite_service() -> (Service, tempfile::TempDir) {
        let (service, _, dir) = sqlite_service_and_store().await;
        (service, dir)
    }

    async fn sqlite_service_and_store() -> (Service, Arc<SqliteStore>, tempfile::TempDir) {
        super::super::scratch_sqlite(Config::defaults()).await
    }

    #[tokio::test]
    async fn changes_behind_a_busy_writer_connection_are_refused_together() {
        let (service, store, _dir) = sqlite_service_and_store().await;
        let party = create_party(&service, "host").await;
        // Something else holds the one writer connection for long.
        let held = store.writer_connection().await;

        let started = Instant::now();
        let joins = (0..6).map(|i| {
            let service = service.clone();
            let party = party.clone();
            tokio::spawn(async move {
                let id = format!("p{i}");
                service.join_party(&peer(&id), &party, info(&id)).await
            })
        });
        for joined in futures_util::future::join_all(joins).await {
            let error = joined.unwrap().unwrap_err();
            assert!(
                matches!(error, Error::Store(StoreError::Unavailable(_))),
                "{error:?}"
            );
        }
        // One wait for the connection, not one per change.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");

        drop(held);
        service
            .join_party(&peer("late"), &party, info("late"))
            .await
            .unwrap();
    }

    async fn create_party(service: &Service, host: &str) -> PartyId {
        let name = lanrage_proto::Name::parse("party").unwrap();
        let created = service
            .create_party(&peer(host), name, info(host), None)
            .await;
        created.unwrap().party.party_id
    }

    /// Holds the writer inside a change until the returned permit is
    /// given, so whatever is queued meanwhile commits as one batch.
    async fn hold_writer(service: &Service) -> (Arc<Semaphore>, tokio::task::JoinHandle<()>) {
        let (started, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let holder = {
            let service = service.clone();
            let op = WriteOp::Test(TestOp::Hold {
                started: started.clone(),
                release: release.clone(),
            });
            tokio::spawn(async move {
                service.write(op).await.unwrap();
            })
        };
        let _running = started.acquire().await.unwrap();
        (release, holder)
    }

    /// Waits until `n` changes wait in the writer's queue.
    async fn queued(service: &Service, n: usize) {
        let Mode::SingleWriter { queue, .. } = &service.mode else {
            panic!("a SQLite service has a writer");
        };
        let jobs = &queue.jobs;
        while jobs.max_capacity() - jobs.capacity() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Every party event published so far, as (party, seq).
    fn published(events: &mut broadcast::Receiver<Event>) -> Vec<(PartyId, u64)> {
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let Event::Party { message, .. } = event
                && let Some((party_id, seq)) = message.party_seq()
            {
                seen.push((party_id.clone(), seq));
            }
        }
        seen
    }

    #[tokio::test]
    async fn a_change_failing_in_a_batch_undoes_only_its_own_writes() {
        let (service, _dir) = sqlite_service().await;
        let party = create_party(&service, "host").await;
        let mut events = service.events().subscribe();

        let (release, holder) = hold_writer(&service).await;
        let join = |id: &'static str| {
            let (service, party) = (service.clone(), party.clone());
            tokio::spawn(async move { service.join_party(&peer(id), &party, info(id)).await })
        };
        let first = join("first");
        queued(&service, 1).await;
        // Joins, then fails: its member, its event and its seq must vanish.
        let failing = {
            let (service, party) = (service.clone(), party.clone());
            let op = WriteOp::Test(TestOp::JoinThenFail {
                caller: peer("failing"),
                party_id: party,
                info: info("failing"),
            });
            tokio::spawn(async move { service.write(op).await })
        };
        queued(&service, 2).await;
        let last = join("last");
        queued(&service, 3).await;
        release.add_permits(1);
        holder.await.unwrap();

        assert_eq!(first.await.unwrap().unwrap().seq, 2);
        assert!(matches!(failing.await.unwrap(), Err(Error::Forbidden(_))));
        assert_eq!(last.await.unwrap().unwrap().seq, 3);
        let (record, members) = service.store().snapshot(&party).await.unwrap().unwrap();
        let ids: Vec<_> = members.iter().map(|m| m.peer.peer_id.as_str()).collect();
        assert_eq!(ids, ["host", "first", "last"]);
        assert_eq!(record.seq, 3);
        let logged: Vec<_> = service
            .store()
            .events_after(&party, 0, u64::MAX)
            .await
            .unwrap()
            .iter()
            .filter_map(|m| m.party_seq().map(|(_, seq)| seq))
            .collect();
        assert_eq!(logged, [1, 2, 3]);
        assert_eq!(
            published(&mut events),
            [(party.clone(), 2), (party.clone(), 3)]
        );
    }

    #[tokio::test]
    async fn changes_in_one_batch_see_each_other_and_fail_alone() {
        let (service, _dir) = sqlite_service().await;
        let party = create_party(&service, "host").await;
        let unknown = PartyId::parse("0123456789abcdef0123456789abcdef").unwrap();

        let (release, holder) = hold_writer(&service).await;
        let join = |id: &'static str, party: &PartyId| {
            let (service, party) = (service.clone(), party.clone());
            tokio::spawn(async move {
                service
                    .join_party(&peer(id), &party, info(id))
                    .await
                    .map(|joined| (joined.seq, joined.virtual_ip.to_string()))
            })
        };
        let leave = |id: &'static str| {
            let (service, party) = (service.clone(), party.clone());
            tokio::spawn(async move { service.leave_party(&peer(id), &party, &peer(id)).await })
        };
        let a_joins = join("a", &party);
        queued(&service, 1).await;
        let ghost_leaves = leave("ghost");
        queued(&service, 2).await;
        let c_joins_nowhere = join("c", &unknown);
        queued(&service, 3).await;
        let b_joins = join("b", &party);
        queued(&service, 4).await;
        let a_leaves = leave("a");
        queued(&service, 5).await;
        release.add_permits(1);
        holder.await.unwrap();

        assert_eq!(a_joins.await.unwrap().unwrap(), (2, "10.66.0.2".into()));
        assert!(matches!(
            ghost_leaves.await.unwrap(),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            c_joins_nowhere.await.unwrap(),
            Err(Error::NotFound(_))
        ));
        // b saw a's place taken within the same transaction.
        assert_eq!(b_joins.await.unwrap().unwrap(), (3, "10.66.0.3".into()));
        assert_eq!(a_leaves.await.unwrap().unwrap(), crate::service::Left::Left);
        let (record, members) = service.store().snapshot(&party).await.unwrap().unwrap();
        let ids: Vec<_> = members.iter().map(|m| m.peer.peer_id.as_str()).collect();
        assert_eq!(ids, ["host", "b"]);
        assert_eq!(record.seq, 4);
    }

    #[tokio::test]
    async fn a_panicking_change_costs_only_its_batch() {
        let (service, _dir) = sqlite_service().await;
        let panicked = service.write(WriteOp::Test(TestOp::Panic)).await;
        assert!(matches!(
            panicked,
            Err(Error::Store(StoreError::Unavailable(_)))
        ));
        create_party(&service, "host").await;
    }

    #[tokio::test]
    async fn concurrent_churn_logs_and_publishes_each_partys_events_in_order_without_gaps() {
        let (service, _dir) = sqlite_service().await;
        let mut parties = Vec::new();
        for host in ["host-a", "host-b"] {
            parties.push(create_party(&service, host).await);
        }
        let mut events = service.events().subscribe();

        let churners: Vec<_> = (0..32)
            .map(|i| {
                let service = service.clone();
                let party = parties[i % 2].clone();
                let id = peer(&format!("churner{i}"));
                tokio::spawn(async move {
                    for _ in 0..5 {
                        service.join_party(&id, &party, info(id.as_str())).await?;
                        service.leave_party(&id, &party, &id).await?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for churner in churners {
            churner.await.unwrap().unwrap();
        }

        let published = published(&mut events);
        for party in &parties {
            let seqs: Vec<u64> = published
                .iter()
                .filter(|(id, _)| id == party)
                .map(|(_, seq)| *seq)
                .collect();
            // 16 churners, 5 joins and 5 leaves each, after the creation.
            assert_eq!(seqs, (2..=161).collect::<Vec<_>>());
            let logged: Vec<u64> = service
                .store()
                .events_after(party, 1, u64::MAX)
                .await
                .unwrap()
                .iter()
                .filter_map(ServerMessage::party_seq)
                .map(|(_, seq)| seq)
                .collect();
            assert_eq!(logged, seqs);
        }
    }

    #[tokio::test]
    async fn a_batchs_events_are_published_in_commit_order_across_parties() {
        let (service, _dir) = sqlite_service().await;
        let (a, b) = (
            create_party(&service, "host-a").await,
            create_party(&service, "host-b").await,
        );
        let mut events = service.events().subscribe();

        let (release, holder) = hold_writer(&service).await;
        let join = |id: &'static str, party: &PartyId| {
            let (service, party) = (service.clone(), party.clone());
            tokio::spawn(async move { service.join_party(&peer(id), &party, info(id)).await })
        };
        let x = join("x", &a);
        queued(&service, 1).await;
        let y = join("y", &b);
        queued(&service, 2).await;
        let z = join("z", &a);
        queued(&service, 3).await;
        release.add_permits(1);
        holder.await.unwrap();

        assert_eq!(x.await.unwrap().unwrap().seq, 2);
        assert_eq!(y.await.unwrap().unwrap().seq, 2);
        assert_eq!(z.await.unwrap().unwrap().seq, 3);
        assert_eq!(published(&mut events), [(a.clone(), 2), (b, 2), (a, 3)]);
    }

    /// A service whose writer runs until `stop` is cancelled.
    async fn service_stopped_by(
        stop: &CancellationToken,
    ) -> (Service, tokio::task::JoinHandle<()>, tempfile::TempDir) {
        let (service, writer, _, dir) =
            super::super::scratch_sqlite_writer(Config::defaults()).await;
        let running = tokio::spawn(writer.run(stop.clone().cancelled_owned()));
        (service, running, dir)
    }

    /// Whether `write` answers (either way) within seconds.
    async fn answers<T>(write: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("an answer, not a wait")
    }

    #[tokio::test]
    async fn the_writer_ends_when_told_to_stop_and_later_writes_are_refused() {
        let stop = CancellationToken::new();
        let (service, running, _dir) = service_stopped_by(&stop).await;
        let party = create_party(&service, "host").await;

        // The service (which queues to the writer) is still alive: the
        // writer ends because it was told to, not because nobody is left.
        stop.cancel();
        answers(running).await.unwrap();

        let refused = answers(service.join_party(&peer("late"), &party, info("late"))).await;
        assert!(
            matches!(refused, Err(Error::Store(StoreError::Unavailable(_)))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn changes_queued_when_the_writer_is_told_to_stop_are_still_committed() {
        let stop = CancellationToken::new();
        let (service, running, _dir) = service_stopped_by(&stop).await;
        let party = create_party(&service, "host").await;

        let (release, holder) = hold_writer(&service).await;
        let join = |id: &'static str| {
            let (service, party) = (service.clone(), party.clone());
            tokio::spawn(async move { service.join_party(&peer(id), &party, info(id)).await })
        };
        let (a, b) = (join("a"), join("b"));
        queued(&service, 2).await;
        stop.cancel();
        release.add_permits(1);
        holder.await.unwrap();

        let mut seqs = [
            answers(a).await.unwrap().unwrap().seq,
            answers(b).await.unwrap().unwrap().seq,
        ];
        seqs.sort_unstable();
        assert_eq!(seqs, [2, 3]);
        answers(running).await.unwrap();
        let (_, members) = service.store().snapshot(&party).await.unwrap().unwrap();
        assert_eq!(members.len(), 3);
    }
}
