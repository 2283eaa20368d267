//! The single writer: one thread owns the read-write connection and runs each write
//! transaction on it from `BEGIN` to `COMMIT`. A caller sends the whole transaction as a
//! closure and awaits its result.
//!
//! Why not sqlx for writes: sqlx runs each statement as a round trip between the caller's
//! task and its connection's worker thread, and sends every returned row over a channel.
//! During a group commit of a few statements the worker spent much of its time waiting for
//! the next statement (bench/history/2026-11-29-fourth-sitting.md). Here a transaction is
//! one hand-off each way.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::checkpointer::Checkpointer;
use crate::error::StoreError;

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Run(Task),
    Close(oneshot::Sender<()>),
}

/// Transactions that may wait for the thread; further callers wait to enqueue. The node
/// sends attestations one group at a time, so this is reached only by a burst of other
/// writes (votes, finality) during a long block placement.
pub(super) const QUEUE: usize = 256;

/// Handle to the writer thread. Clones share the thread.
#[derive(Debug, Clone)]
pub(super) struct WriteThread {
    tx: mpsc::Sender<Msg>,
    busy: Arc<AtomicBool>,
}

impl WriteThread {
    /// Opens (creating if needed) the database at `path` on a new thread.
    pub(super) async fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (opened, open_result) = oneshot::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let thread_busy = busy.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || match connect(&path, busy_timeout) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    serve(conn, rx, &thread_busy, &path);
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        open_result.await.map_err(|_| stopped())??;
        Ok(WriteThread { tx, busy })
    }

    /// Runs `f` on the writer connection and returns its result. Once sent, `f` runs to
    /// its end even if the caller stops waiting, so a transaction is never abandoned
    /// half-way.
    pub(super) async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx.send(Msg::Run(task)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Transactions waiting for the thread.
    pub(super) fn queued(&self) -> u32 {
        u32::try_from(self.tx.max_capacity() - self.tx.capacity()).unwrap_or(u32::MAX)
    }

    /// True while a transaction runs.
    pub(super) fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Lets queued transactions finish, then closes the connection (the last connection
    /// to close checkpoints the WAL into the main file). Later writes fail as
    /// `Unavailable`.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

fn serve(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, busy: &AtomicBool, path: &Path) {
    // Without it the writer checkpoints itself (below), only slower.
    let checkpointer = match Checkpointer::start(path) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no background checkpointer; the writer checkpoints");
            None
        }
    };
    // Ends at `close` or when every handle is dropped (a store that failed to open, or
    // was dropped without `close`).
    let mut closed_by = None;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Run(task) => {
                busy.store(true, Ordering::Relaxed);
                // A task that panics loses its transaction (rusqlite rolls it back when
                // the `Transaction` drops) and its caller gets `Unavailable`; the writer
                // stays up for the next one.
                let _ = catch_unwind(AssertUnwindSafe(|| task(&mut conn)));
                busy.store(false, Ordering::Relaxed);
            }
            Msg::Close(done) => {
                closed_by = Some(done);
                break;
            }
        }
    }
    // The checkpointer's connection first, so that the writer's is the last to close.
    drop(checkpointer);
    drop(conn);
    if let Some(done) = closed_by {
        let _ = done.send(());
    }
}

fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{} cannot use WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch(
        // FULL: each commit fsyncs the WAL before it returns (see the module above).
        // temp_store: multi-row inserts keep a statement journal (to undo one statement on
        // a constraint error); beyond 64 KiB SQLite spilled it to a temp file.
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )?;
    // The checkpointer thread copies the WAL into the file; the writer checkpoints itself
    // only past 8192 pages (32 MiB). Under sustained writes that is what lets the WAL
    // restart from its start (see `checkpointer`), and it covers a checkpointer that
    // fell behind or did not start.
    conn.execute_batch("PRAGMA wal_autocheckpoint = 8192")?;
    // Every statement the writer uses, in each chunk size, stays prepared.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// A write transaction that holds the write lock from its first statement
/// (`BEGIN IMMEDIATE`): waiting for the lock (another process, a backup) is covered by
/// `busy_timeout`, and a transaction that reads before it writes cannot fail halfway on a
/// lock upgrade. Dropped without `commit`, it rolls back.
pub(super) fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the write did not finish: the writer thread stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = WriteThread::open(&dir.path().join("w.db"), Duration::from_secs(1))
            .await
            .unwrap();
        w.run(|c| Ok(c.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .await
            .unwrap();
        let failed = w
            .run(|c| -> Result<(), StoreError> {
                let tx = begin(c)?;
                tx.execute("INSERT INTO t VALUES (1)", [])?;
                panic!("a bug in a write");
            })
            .await;
        assert!(failed.unwrap_err().is_unavailable());
        let rows: i64 = w
            .run(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 0);
        w.close().await;
        let after = w.run(|_| Ok(())).await;
        assert!(after.unwrap_err().is_unavailable());
    }
}
