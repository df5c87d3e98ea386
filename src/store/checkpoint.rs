//! SQLite checkpoints off the writer's path.
//!
//! In WAL mode every commit appends to the `-wal` file, and a checkpoint
//! copies those pages back into the database file (and syncs both). By
//! default the connection whose commit takes the WAL past 1,000 pages runs
//! the checkpoint itself, before its commit returns: here that is the one
//! write connection, so ingest waited for the checkpoint's copying and its
//! two fsyncs every few milliseconds under load. perf showed the ingest
//! writer on the CPU for two thirds of the time with the machine half idle
//! (batches of 1,000 from 4 clients). So a thread of its own, on a
//! connection of its own, runs a passive checkpoint (which never waits for
//! a lock, nor holds one a writer needs) every [`EVERY`], and the write
//! connections checkpoint themselves only past
//! [`AUTOCHECKPOINT_PAGES`], should that thread fall behind.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::ManageConnection;

use super::pool::Manager;
use super::{DbConn, StoreError, StoreResult};

/// How often the checkpointer runs.
const EVERY: Duration = Duration::from_millis(50);

/// A write connection checkpoints itself once the WAL holds this many pages
/// (16 MiB of 4 KiB pages). Under a steady stream of commits the
/// checkpointer stays one commit behind, so the WAL cannot start over from
/// its beginning until this fallback runs: it bounds the WAL. Measured
/// (`--ingest-only --backend sqlite`, alternated): 4,096 pages 168-173k
/// ev/s in batches of 1,000, single-event p99 8.3-9.0 ms; 16,384 pages
/// 174-185k and 4.6-5.1 ms, but a churn of 4M events (`--churn`) then
/// levels off at 557 MB of file and WAL, against 467 MB at 4,096 pages and
/// 396 MB with the writer checkpointing every 1,000 pages (all flat from
/// the second million: a faster ingest leaves a deeper queue at its peak,
/// and the file keeps its high-water mark).
pub(super) const AUTOCHECKPOINT_PAGES: u32 = 4_096;

/// A WAL file that grew past this (16 MiB) is cut back to it when it
/// starts over (`journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// The running checkpointer; stopped when dropped (with the last clone of
/// its [`Store`](super::Store)).
pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }
}

/// Starts the checkpointer of the SQLite database `manager` opens.
pub(super) fn start(manager: &Manager) -> StoreResult<Checkpointer> {
    let conn = manager.connect().map_err(|e| StoreError::Connect(e.to_string()))?;
    let DbConn::Sqlite(mut conn) = conn else {
        return Err(StoreError::Connect("checkpoints are for SQLite".into()));
    };
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let (stopped, wake) = &*flag;
            let mut done = stopped.lock().unwrap_or_else(|e| e.into_inner());
            while !*done {
                done = wake.wait_timeout(done, EVERY).unwrap_or_else(|e| e.into_inner()).0;
                if *done {
                    break;
                }
                drop(done);
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::debug!(error = %e, "sqlite checkpoint failed; the writers checkpoint past the limit");
                }
                done = stopped.lock().unwrap_or_else(|e| e.into_inner());
            }
        })
        .map_err(|e| StoreError::Connect(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Checkpointer { stop })
}
