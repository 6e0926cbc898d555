//! SQLite's one writer: a thread of its own owning the one write
//! connection (rusqlite), which runs every write transaction.
//!
//! Why a thread, and not sqlx: sqlx runs each SQLite connection on a worker
//! thread of its own and hands every statement to it and its result back,
//! two context switches a statement. `perf` put most of a write's time
//! there, not in SQLite. Here a transaction's statements run on the thread
//! that owns the connection, as plain calls, from prepared statements
//! cached on it; a write costs one hand-off in (a task spawned onto the
//! thread's runtime) and one out (its result), whatever its statements.
//!
//! The thread runs a current-thread tokio runtime, so whole jobs run there:
//! the group-commit writer (`service::group_commit`), placed there by
//! [`crate::store::Store::write_runtime`], and each of the store's own
//! writes (`Backend::on_writer`). A transaction holds the connection for
//! its life; a job that cannot have it within [`ACQUIRE_TIMEOUT`] fails as
//! unavailable, as a request that cannot get a pooled connection does.
//!
//! Reads outside a write transaction stay on sqlx's pool of read-only
//! connections (WAL lets them run beside the writer).

use std::{borrow::Cow, sync::Arc, thread::ThreadId, time::Duration};

use futures_util::future::BoxFuture;
use rusqlite::{
    Connection, ToSql, params_from_iter,
    types::{ToSqlOutput, Value, ValueRef},
};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::{StoreError, StoreResult, core::Arg, rows};

/// How long a write waits for the connection before it is answered 503.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Distinct statements kept prepared: more than the core has.
const PREPARED: usize = 128;

/// The writer thread and its connection.
#[derive(Debug)]
pub(super) struct WriterThread {
    runtime: tokio::runtime::Handle,
    thread: ThreadId,
    connection: Arc<Mutex<Connection>>,
    /// Dropped (or sent) to end the thread.
    stop: parking_lot::Mutex<Option<oneshot::Sender<()>>>,
}

/// A failure to start the thread, as the database being unavailable.
pub(super) fn cannot_start(error: std::io::Error) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(error))
}

fn closed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

impl WriterThread {
    /// Starts the thread, handing it `connection`.
    pub(super) fn start(connection: Connection) -> StoreResult<Self> {
        connection.set_prepared_statement_cache_capacity(PREPARED);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(cannot_start)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                // Until the store is closed or dropped; dropping the
                // runtime then cancels whatever job is left.
                let _ = runtime.block_on(stopped);
            })
            .map_err(cannot_start)?;
        Ok(Self {
            runtime: handle,
            thread: thread.thread().id(),
            connection: Arc::new(Mutex::new(connection)),
            stop: parking_lot::Mutex::new(Some(stop)),
        })
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Runs `job` on the writer thread (at once when already there).
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: BoxFuture<'static, StoreResult<T>>,
    ) -> StoreResult<T> {
        if std::thread::current().id() == self.thread {
            return job.await;
        }
        // A stopped runtime cancels the task at once.
        self.runtime.spawn(job).await.map_err(|_| closed())?
    }

    /// The connection, for one transaction or one statement.
    pub(super) async fn connection(&self) -> StoreResult<OwnedMutexGuard<Connection>> {
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.connection.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))
    }

    /// Waits for the running transaction, then ends the thread.
    pub(super) async fn close(&self) {
        let _idle = self.connection.lock().await;
        self.stop.lock().take();
    }

    /// Whether a write is running now, for the pool metrics.
    pub(super) fn busy(&self) -> bool {
        self.connection.try_lock().is_err()
    }
}

/// A value as SQLite stores it; a list as a JSON array, which `json_each`
/// reads back (see the dialect's `id_list`).
impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(value) => ToSqlOutput::Owned(Value::Integer(*value)),
            Arg::Text(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Arg::Owned(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Arg::NullableInt(None) | Arg::NullableText(None) => ToSqlOutput::Owned(Value::Null),
            Arg::NullableInt(Some(value)) => ToSqlOutput::Owned(Value::Integer(*value)),
            Arg::NullableText(Some(value)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))
            }
            Arg::Ints(values) => ToSqlOutput::Owned(Value::Text(
                rows::to_json(values, "list argument")
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            )),
        })
    }
}

/// Runs one statement; returns the rows it changed.
pub(super) fn execute(connection: &Connection, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
    let changed = connection
        .prepare_cached(sql)?
        .execute(params_from_iter(args))?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// Runs one statement; returns its rows.
pub(super) fn fetch(
    connection: &Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> StoreResult<Vec<WriterRow>> {
    let mut statement = connection.prepare_cached(sql)?;
    let names: Arc<[String]> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = statement.query(params_from_iter(args))?;
    let mut fetched = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..names.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<_>>()?;
        fetched.push(WriterRow {
            names: names.clone(),
            values,
        });
    }
    Ok(fetched)
}

/// A row read on the writer connection.
#[derive(Debug, Clone)]
pub struct WriterRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl WriterRow {
    fn value(&self, column: &str) -> StoreResult<&Value> {
        self.names
            .iter()
            .position(|name| name == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?} in the row")))
    }
}

fn wrong_type(column: &str, value: &Value) -> StoreError {
    StoreError::Corrupt(format!(
        "column {column:?} holds {:?}, not the type expected",
        value.data_type()
    ))
}

impl rows::Columns for WriterRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        match self.value(column)? {
            Value::Text(text) => Ok(text.clone()),
            other => Err(wrong_type(column, other)),
        }
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        match self.value(column)? {
            Value::Integer(value) => Ok(*value),
            other => Err(wrong_type(column, other)),
        }
    }

    fn nullable_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(wrong_type(column, other)),
        }
    }

    fn nullable_int(&self, column: &str) -> StoreResult<Option<i64>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Integer(value) => Ok(Some(*value)),
            other => Err(wrong_type(column, other)),
        }
    }
}

/// A rusqlite error, told apart as sqlx's are (busy, constraint, …), so
/// [`StoreError`] classifies both drivers' failures by one rule.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct WriteError(rusqlite::Error);

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        sqlx::Error::Database(Box::new(WriteError(error))).into()
    }
}

impl sqlx::error::DatabaseError for WriteError {
    fn message(&self) -> &str {
        match &self.0 {
            rusqlite::Error::SqliteFailure(_, Some(message)) => message,
            _ => "SQLite error",
        }
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(error, _) => {
                Some(Cow::Owned(error.extended_code.to_string()))
            }
            _ => None,
        }
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;

        let rusqlite::Error::SqliteFailure(error, _) = &self.0 else {
            return ErrorKind::Other;
        };
        match error.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn writer() -> WriterThread {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        WriterThread::start(connection).unwrap()
    }

    #[tokio::test]
    async fn jobs_run_on_the_writer_thread_and_statements_in_place() {
        let writer = Arc::new(writer());
        let thread = writer.thread;
        let ran_on = writer
            .run(async move { Ok(std::thread::current().id()) }.boxed())
            .await
            .unwrap();
        assert_eq!(ran_on, thread);
        assert_ne!(std::thread::current().id(), thread);

        let connection = writer.connection().await.unwrap();
        let insert = "INSERT INTO t (id, v) VALUES (?, ?)";
        assert_eq!(
            execute(&connection, insert, &[Arg::Int(1), Arg::Text("a")]).unwrap(),
            1
        );
        let rows = fetch(&connection, "SELECT id, v FROM t", &[]).unwrap();
        assert_eq!(rows::Columns::text(&rows[0], "v").unwrap(), "a");
        assert!(matches!(
            rows::Columns::int(&rows[0], "v"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn sqlite_failures_are_classified_as_sqlx_ones_are() {
        let writer = writer();
        let connection = writer.connection().await.unwrap();
        let insert = "INSERT INTO t (id, v) VALUES (?, ?)";
        execute(&connection, insert, &[Arg::Int(1), Arg::Text("a")]).unwrap();
        let duplicate = execute(&connection, insert, &[Arg::Int(1), Arg::Text("b")]);
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{duplicate:?}"
        );
        let broken = execute(&connection, "INSERT INTO nowhere VALUES (1)", &[]);
        assert!(matches!(broken, Err(StoreError::Database(_))), "{broken:?}");
    }

    #[tokio::test]
    async fn a_held_connection_times_out_as_unavailable_and_close_ends_the_thread() {
        let writer = writer();
        let held = writer.connection().await.unwrap();
        let waiting = writer.connection();
        assert!(matches!(waiting.await, Err(StoreError::Unavailable(_))));
        drop(held);

        writer.close().await;
        let after = writer.run(async { Ok(()) }.boxed()).await;
        assert!(
            matches!(after, Err(StoreError::Unavailable(_))),
            "{after:?}"
        );
    }
}
