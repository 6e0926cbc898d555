//! Checkpoints of SQLite's write-ahead log, on a thread of their own.
//!
//! By default SQLite checkpoints on the connection that commits: the commit
//! that grows the log past 1,000 pages then copies the log into the
//! database file and waits for two `fsync`s before it returns. On our one
//! writer thread that stalls every write queued behind it. Measured under
//! churn and registration on two cores, those stalls were the writes' p99
//! (15 ms, against 7 ms without them) and a quarter of registration's
//! throughput (see `docs/benchmarks.md`).
//!
//! Here a second connection checkpoints in PASSIVE mode, every
//! [`BUSY_TICK`] while the log grows and every [`TICK`] while it is quiet:
//! it copies what is committed without taking the write lock, so the writer
//! goes on committing meanwhile, and a pass with nothing new to copy costs
//! no I/O. SQLite restarts the log from its start at a commit that finds it
//! fully copied. Under writes so steady that a pass never finishes between
//! two commits, the writer's own auto-checkpoint, moved up to
//! [`WRITER_CHECKPOINT_PAGES`], bounds the log: it then has only the last
//! pass's remainder to copy.
//!
//! Durability is unchanged: what a commit guarantees depends on the
//! writer's `synchronous` mode, and the checkpointer syncs as the writer
//! would have (same mode).

use std::{
    path::Path,
    sync::mpsc::{self, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

use super::{StoreResult, sqlite_writer::cannot_start};

/// How often a quiet log is looked at.
const TICK: Duration = Duration::from_millis(100);
/// How often a log that grew since the last pass is copied.
const BUSY_TICK: Duration = Duration::from_millis(5);
/// The writer's own auto-checkpoint threshold, in pages of the log: about
/// 40 MB with 4 KiB pages.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// The checkpointing thread; dropping or closing it ends the thread.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: parking_lot::Mutex<Option<mpsc::Sender<()>>>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection to the database at `path` (already in WAL mode)
    /// with `synchronous` as the writer has it, and starts the thread.
    pub(super) fn start(path: &Path, synchronous: &str) -> StoreResult<Self> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&connection, &stopped))
            .map_err(cannot_start)?;
        Ok(Self {
            stop: parking_lot::Mutex::new(Some(stop)),
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// Ends the thread once its pass in progress, if any, is done.
    pub(super) async fn close(&self) {
        self.stop.lock().take();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            // A pass is a few milliseconds of I/O: wait off the runtime.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Checkpoints until `stopped` hears or its sender is gone: every
/// [`TICK`] while the log is quiet, every [`BUSY_TICK`] while it grows.
fn run(connection: &Connection, stopped: &mpsc::Receiver<()>) {
    let mut failing = false;
    let mut last_log = 0;
    let mut wait = TICK;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        match checkpoint(connection) {
            Ok(log) => {
                failing = false;
                // Short passes while writes go on: each then has little
                // to copy and sync, and the writer's own checkpoint, when
                // the log reaches its bound, even less.
                wait = if log == last_log { TICK } else { BUSY_TICK };
                last_log = log;
            }
            // Once per run of failures: a disk that stays full would
            // otherwise log ten lines a second. The writer's own
            // checkpoint still bounds the log meanwhile.
            Err(error) if !failing => {
                failing = true;
                wait = TICK;
                tracing::warn!(%error, "checkpointing the SQLite write-ahead log failed");
            }
            Err(_) => {}
        }
    }
}

/// One PASSIVE pass: copies what it can without waiting for anyone;
/// returns the pages in the log.
fn checkpoint(connection: &Connection) -> rusqlite::Result<i64> {
    // (busy, pages in the log, pages copied); busy means another
    // checkpoint (the writer's own) holds the lock: the next pass goes on.
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn committed_pages_are_copied_into_the_database_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = Connection::open(&path).unwrap();
        // The writer never checkpoints, and nothing else here does: only
        // the thread can move pages from the log into the database file.
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (v TEXT NOT NULL);",
            )
            .unwrap();
        let checkpointer = Checkpointer::start(&path, "NORMAL").unwrap();
        for i in 0..200 {
            writer
                .execute("INSERT INTO t (v) VALUES (?)", [format!("{i:0>500}")])
                .unwrap();
        }
        let database_size = || std::fs::metadata(&path).unwrap().len();
        let copied = async {
            while database_size() < 100_000 {
                tokio::time::sleep(TICK).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), copied)
            .await
            .expect("the log was never copied into the database file");

        checkpointer.close().await;
        assert!(checkpointer.thread.lock().is_none());
        let rows: i64 = writer
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 200);
    }
}
