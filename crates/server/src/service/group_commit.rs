//! Group commit for a store with a single writer (SQLite): one task owns the
//! writes, takes every change queued meanwhile, runs them in one
//! transaction (each in its own savepoint, so one change's failure undoes
//! only that change), commits once, publishes the events in commit order,
//! then answers each caller.
//!
//! With one writer, changes run one after another whatever we do; what a
//! change costs is its round trips to the database. Sharing BEGIN and
//! COMMIT, and the hand-offs between the request tasks, across a batch
//! removes most of them.

use std::{
    panic::AssertUnwindSafe,
    time::{Duration, Instant},
};

use futures_util::{FutureExt, future::BoxFuture};
use tokio::sync::{mpsc, oneshot};

use super::{Change, Error, Result, Service};
use crate::store::StoreError;

/// Most changes in one transaction: bounds how long the first of them waits
/// for its answer.
const MAX_BATCH: usize = 64;
/// Changes waiting for the writer; beyond it callers wait to queue.
const QUEUE: usize = 1024;
/// A change that waited this long is refused as the database being
/// unavailable, as a request that cannot get a pooled connection would be.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// One change: the operation, what it needs, and where its answer goes.
trait Job: Send {
    /// Runs the change inside `change`; false when it failed (then its
    /// writes must be undone).
    fn run<'c, 's>(&'c mut self, change: &'c mut Change<'s>) -> BoxFuture<'c, bool>;
    /// Replaces the outcome with a failure found after the change ran.
    fn overrule(&mut self, error: Error);
    fn queued_at(&self) -> Instant;
    /// Whether the change failed on the database itself (not on a party
    /// rule): SQLite may then have rolled back the whole transaction, so
    /// what ran before it in the batch is in doubt.
    fn in_doubt(&self) -> bool;
    /// Sends the outcome: once the batch committed, or at once for a
    /// change refused or failed without it.
    fn answer(self: Box<Self>);
}

struct Queued<S, T, F> {
    state: S,
    op: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    queued_at: Instant,
}

impl<S, T, F> Job for Queued<S, T, F>
where
    S: Send + Sync + 'static,
    T: Send + 'static,
    F: for<'c, 's> Fn(&'c S, &'c mut Change<'s>) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    fn run<'c, 's>(&'c mut self, change: &'c mut Change<'s>) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let outcome = (self.op)(&self.state, change).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn overrule(&mut self, error: Error) {
        self.outcome = Some(Err(error));
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }

    fn in_doubt(&self) -> bool {
        matches!(
            self.outcome,
            Some(Err(Error::Store(
                StoreError::Unavailable(_) | StoreError::Database(_)
            )))
        )
    }

    fn answer(self: Box<Self>) {
        // A caller that went away (its request was cancelled) needs no
        // answer; the change stands, as if its response were lost.
        if let Some(outcome) = self.outcome {
            let _ = self.reply.send(outcome);
        }
    }
}

/// The queue into the writer task.
#[derive(Debug)]
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

/// A change that could not be run in time.
fn timed_out() -> Error {
    Error::Store(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
}

/// The writer task is gone (at shutdown, once the store is closed), or
/// dropped the change unanswered (a change in its batch panicked).
fn writer_gone() -> Error {
    Error::Store(StoreError::Unavailable(sqlx::Error::PoolClosed))
}

impl GroupCommit {
    /// Starts the writer task. `service` must not itself write through a
    /// group commit: the task runs changes directly.
    pub(super) fn start(service: Service) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(service, queue));
        Self { jobs }
    }

    /// Queues `op` over `state` and waits until it is committed (or failed).
    pub(super) async fn submit<S, T, F>(&self, state: S, op: F) -> Result<T>
    where
        S: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c, 's> Fn(&'c S, &'c mut Change<'s>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Queued {
            state,
            op,
            outcome: None,
            reply,
            queued_at: Instant::now(),
        });
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

async fn run(service: Service, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut taken = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut taken, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut taken);
        let Err((error, batch)) = service.commit_guarded(batch).await else {
            continue;
        };
        if batch.len() == 1 {
            fail(batch, error);
            continue;
        }
        // The transaction failed after its changes ran (a savepoint, a
        // statement that left it in doubt, or the commit): nothing of it
        // was committed, so each change runs again alone and each caller
        // gets its own outcome.
        tracing::debug!(error = %crate::telemetry::error_chain(&error), "group commit failed; running its changes one by one");
        for job in batch {
            if let Err((error, alone)) = service.commit_guarded(vec![job]).await {
                fail(alone, error);
            }
        }
    }
}

/// Answers the one job of a failed transaction with its failure.
fn fail(alone: Vec<Box<dyn Job>>, error: Error) {
    if let Some(mut job) = alone.into_iter().next() {
        job.overrule(error);
        job.answer();
    }
}

type Failed = (Error, Vec<Box<dyn Job>>);

impl Service {
    /// [`Service::commit_batch`], but a panicking change (a bug) only
    /// costs its batch: the transaction rolls back, the batch's callers get
    /// 503, and the writer goes on serving the rest.
    async fn commit_guarded(&self, jobs: Vec<Box<dyn Job>>) -> std::result::Result<(), Failed> {
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

    /// Runs `jobs` in one transaction, each in a savepoint, and answers
    /// them once it commits; gives back, unanswered, those not yet answered
    /// when the transaction as a whole fails.
    async fn commit_batch(&self, jobs: Vec<Box<dyn Job>>) -> std::result::Result<(), Failed> {
        let mut change = match self.change().await {
            Ok(change) => change,
            Err(error) => {
                // No change ran, and running them one by one would wait
                // for the writer once per change: all are refused at once.
                tracing::warn!(error = %crate::telemetry::error_chain(&error), changes = jobs.len(), "cannot start a write transaction");
                for mut job in jobs {
                    job.overrule(timed_out());
                    job.answer();
                }
                return Ok(());
            }
        };
        let mut ran = Vec::with_capacity(jobs.len());
        let mut queued = jobs.into_iter();
        while let Some(mut job) = queued.next() {
            // Checked before each change, not once per batch: behind a
            // database that stalls every write (a lock held elsewhere),
            // waiting callers are still answered within seconds.
            if job.queued_at().elapsed() > QUEUE_TIMEOUT {
                job.overrule(timed_out());
                job.answer();
                continue;
            }
            let outcome = run_in_savepoint(&mut change, job.as_mut()).await;
            if outcome.is_ok() && job.in_doubt() {
                if ran.is_empty() && queued.len() == 0 {
                    // Alone: its own error is its answer; the transaction
                    // is dropped, rolled back, not committed.
                    job.answer();
                    return Ok(());
                }
                ran.push(job);
                ran.extend(queued);
                let in_doubt = sqlx::Error::Protocol(
                    "a statement failed on the database; the batch's transaction is in doubt"
                        .into(),
                );
                return Err((Error::Store(StoreError::Unavailable(in_doubt)), ran));
            }
            ran.push(job);
            if let Err(error) = outcome {
                ran.extend(queued);
                return Err((error.into(), ran));
            }
        }
        if let Err(error) = change.commit().await {
            return Err((error, ran));
        }
        for job in ran {
            job.answer();
        }
        Ok(())
    }
}

/// Runs one job in its own savepoint: kept when it succeeds, undone with
/// its events when it fails. An error here means the transaction itself is
/// in doubt.
async fn run_in_savepoint(
    change: &mut Change<'_>,
    job: &mut dyn Job,
) -> std::result::Result<(), StoreError> {
    let events = change.events.len();
    change.tx.savepoint().await?;
    let kept = if job.run(change).await {
        match change.tx.release_savepoint().await {
            Ok(()) => true,
            Err(error) => {
                job.overrule(error.into());
                false
            }
        }
    } else {
        false
    };
    if !kept {
        change.tx.rollback_to_savepoint().await?;
        change.events.truncate(events);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lanrage_proto::{
        IpOrUnknown, NatType, PartyId, PeerId, PeerInfo, PublicKey, ServerMessage,
    };
    use tokio::sync::{Semaphore, broadcast};

    use super::*;
    use crate::{config::Config, events::Event, store::SqliteStore};

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
        let held = store.writer_pool().acquire().await.unwrap();

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

    fn peer(id: &str) -> PeerId {
        PeerId::parse(id).unwrap()
    }

    fn info(id: &str) -> PeerInfo {
        PeerInfo {
            peer_id: peer(id),
            name: lanrage_proto::Name::parse(id).unwrap(),
            public_key: PublicKey::from_bytes(&[7; 32]),
            nat_type: NatType::Open,
            public_ip: IpOrUnknown::Unknown,
            public_port: 0,
            local_ip: IpOrUnknown::Unknown,
            local_port: 0,
        }
    }

    async fn create_party(service: &Service, host: &str) -> PartyId {
        let name = lanrage_proto::Name::parse("party").unwrap();
        let created = service.create_party(&peer(host), name, info(host)).await;
        created.unwrap().party.party_id
    }

    /// Holds the writer inside a change until the returned permit is
    /// given, so whatever is queued meanwhile commits as one batch.
    async fn hold_writer(service: &Service) -> (Arc<Semaphore>, tokio::task::JoinHandle<()>) {
        let (started, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let holder = {
            let service = service.clone();
            let state = (started.clone(), release.clone());
            tokio::spawn(async move {
                service
                    .write(state, |(started, release), _change| {
                        Box::pin(async move {
                            started.add_permits(1);
                            let _held = release.acquire().await;
                            Ok(())
                        })
                    })
                    .await
                    .unwrap();
            })
        };
        let _running = started.acquire().await.unwrap();
        (release, holder)
    }

    /// Waits until `n` changes wait in the writer's queue.
    async fn queued(service: &Service, n: usize) {
        let jobs = &service.group_commit.as_ref().unwrap().jobs;
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
            tokio::spawn(async move {
                service
                    .write(party, |party, change| {
                        Box::pin(async move {
                            Service::join_in(change, &peer("failing"), party, &info("failing"))
                                .await?;
                            Err::<(), _>(Error::Forbidden("refused after writing".into()))
                        })
                    })
                    .await
            })
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
        let panicked = service
            .write((), |(), _change| {
                Box::pin(async { panic!("a bug in a change") })
            })
            .await;
        assert!(matches!(
            panicked,
            Err::<(), _>(Error::Store(StoreError::Unavailable(_)))
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
}
