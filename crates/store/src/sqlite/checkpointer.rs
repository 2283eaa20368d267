//! Copies the WAL into the database file from a thread and connection of its own.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, where it took a
//! large share of the writer thread's time under a submit load
//! (bench/history/2026-11-29-fifth-sitting.md).
//! Passive checkpoints block neither the writer nor readers, so this thread runs one every
//! [`CHECKPOINT_EVERY`]; the writer keeps a high automatic threshold as a backstop.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;

/// How often the WAL is checkpointed. Under sustained writes a passive checkpoint
/// rarely catches the writer idle, so the WAL is not restarted from its start; the
/// writer's own checkpoint at its threshold (8192 pages, after a commit) is what
/// restarts it, and bounds the file (bench/history/2026-11-29-fifth-sitting.md).
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (which the writer has opened in WAL
    /// mode).
    pub(super) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // FULL: the database file is fsynced before the WAL is reused.
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &flag))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

/// Dropping stops the thread and closes its connection (the writer drops it before its
/// own connection, so that the writer's is the last to close and removes the WAL).
impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, stop: &(Mutex<bool>, Condvar)) {
    let (lock, wake) = stop;
    loop {
        let Ok(stopped) = lock.lock() else { return };
        let Ok((stopped, _)) = wake.wait_timeout_while(stopped, CHECKPOINT_EVERY, |s| !*s) else {
            return;
        };
        if *stopped {
            return;
        }
        drop(stopped);
        // A failure (the disk, a lock held by a backup) is retried next time; meanwhile
        // the WAL grows, and past the writer's threshold the writer checkpoints.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (v BLOB);",
            )
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        // Only a checkpoint writes the main file; the writer never does here.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(checkpointer);
    }
}
