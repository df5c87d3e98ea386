//! Storage: the connection pools, the schema, and every operation on the
//! data. One code path serves both backends: each operation is written once
//! against diesel's query builder and instantiated for SQLite and PostgreSQL
//! by [`on_conn!`]; backend-specific SQL is used only where it pays (the
//! queue claim, see `queue.rs`).

pub mod accounts;
pub mod activity;
mod bulk;
mod cached;
mod checkpoint;
mod error;
pub mod events;
pub mod failure;
pub mod group;
pub mod leases;
pub mod listen;
pub mod migrate;
pub mod paint_contexts;
pub mod payloads;
mod pool;
pub mod push;
pub mod push_totals;
pub mod queue;
mod queue_rows;
pub mod queue_status;
pub mod retention;
pub mod schema;
pub mod secrets;
pub mod sweep;
pub mod triggers;
mod vacuum;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::Pool;
use diesel::{PgConnection, SqliteConnection};

pub use self::error::{StoreError, StoreResult};
use self::pool::checkout;
pub use self::pool::{Conn, Manager};
use crate::domain::time::now_ms;

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection of either backend.
/// The body is compiled once per backend.
#[macro_export]
#[doc(hidden)]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::DbConn::Pg($c) => $body,
            $crate::store::DbConn::Sqlite($c) => $body,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// How many times an ingest transaction is run before a deadlock is
/// reported to its requests (see [`Store::write_ingest`]).
pub const INGEST_ATTEMPTS: u32 = 5;

/// The pools. SQLite allows one writer at a time, so its writes go through a
/// pool of one connection (waiting in-process rather than spinning on
/// SQLITE_BUSY) and reads through a pool of several; PostgreSQL uses one pool
/// for both.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// What connections are opened with (the queue listener opens its own).
    conninfo: String,
    read: Pool<Manager>,
    write: Pool<Manager>,
    /// When (ms) the database last said it is out of space; 0 once an
    /// ingest has committed since (see [`Store::out_of_space_at`]).
    out_of_space_at: Arc<AtomicI64>,
    /// SQLite: the thread that checkpoints the WAL (`checkpoint.rs`).
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

impl Store {
    pub fn connect(url: &str, pool_size: u32) -> StoreResult<Store> {
        let backend = Backend::of_url(url);
        let manager = Manager::new(url, backend)?;
        let read = manager.pool(pool_size)?;
        let (write, checkpointer) = match backend {
            Backend::Sqlite => (manager.pool(1)?, Some(Arc::new(checkpoint::start(&manager)?))),
            Backend::Postgres => (read.clone(), None),
        };
        Ok(Store {
            backend,
            conninfo: manager.url().to_string(),
            read,
            write,
            out_of_space_at: Arc::default(),
            _checkpointer: checkpointer,
        })
    }

    /// When the database last failed a statement for lack of space, unless
    /// an ingest has committed since (for `/readyz` and the gauge: with the
    /// watermarks off, a real full disk shows only in these errors).
    pub fn out_of_space_at(&self) -> Option<i64> {
        Some(self.out_of_space_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Remembers an out-of-space error, or forgets it after an ingest commit.
    fn note_space<T>(&self, r: &StoreResult<T>, committed_ingest: bool) {
        match r {
            Err(StoreError::OutOfSpace(_)) => self.out_of_space_at.store(now_ms(), Ordering::Relaxed),
            Ok(_) if committed_ingest => self.out_of_space_at.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn reader(&self) -> StoreResult<Conn> {
        checkout(&self.read)
    }

    pub fn writer(&self) -> StoreResult<Conn> {
        checkout(&self.write)
    }

    /// Runs `f` in a write transaction and commits it if `f` succeeds.
    /// SQLite starts it with `BEGIN IMMEDIATE`, so it takes the write lock
    /// up front and never fails with SQLITE_BUSY half-way.
    pub fn write<T>(&self, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        let r = self.write_inner(f);
        self.note_space(&r, false);
        r
    }

    /// [`Store::write`] for ingest: its commit also ends an out-of-space
    /// report, and a transaction rolled back by a deadlock is run again (up
    /// to [`INGEST_ATTEMPTS`] times in all), so a request never fails
    /// because another one held the same keys.
    pub(crate) fn write_ingest<T>(&self, f: impl Fn(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        self.retry_ingest(|| self.write_inner(&f))
    }

    /// [`Store::write_ingest`] for a write made by one statement, run
    /// outside any transaction so that it commits on its own (on
    /// PostgreSQL, no `BEGIN` and `COMMIT` round trips). `f` may read
    /// first, but must write with a single statement: an error leaves
    /// nothing written.
    pub(crate) fn write_ingest_statement<T>(&self, f: impl Fn(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        self.retry_ingest(|| {
            let mut conn = self.writer()?;
            f(&mut conn)
        })
    }

    /// Runs an ingest write, again after a deadlock (up to
    /// [`INGEST_ATTEMPTS`] times in all); its success ends an out-of-space
    /// report.
    fn retry_ingest<T>(&self, attempt_once: impl Fn() -> StoreResult<T>) -> StoreResult<T> {
        let mut attempt = 1;
        let r = loop {
            match attempt_once() {
                Err(e) if e.is_retryable() && attempt < INGEST_ATTEMPTS => {
                    tracing::info!(error = %e, attempt, "ingest transaction rolled back by the database; running it again");
                    std::thread::sleep(Duration::from_millis(5 * attempt as u64));
                    attempt += 1;
                }
                r => break r,
            }
        };
        self.note_space(&r, true);
        r
    }

    /// [`Store::write`] with [`relaxed_commit`]'s setting, which on
    /// PostgreSQL is sent with the `BEGIN` (one round trip for both).
    pub(crate) fn write_relaxed<T>(&self, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        let r = self.write_begun(Some(RELAXED_BEGIN), f);
        self.note_space(&r, false);
        r
    }

    /// [`Store::write`] whose transaction starts on PostgreSQL with
    /// `pg_begin` (a `BEGIN` and what goes with it, in one round trip).
    pub(crate) fn write_begun_with<T>(
        &self,
        pg_begin: &str,
        f: impl FnOnce(&mut DbConn) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let r = self.write_begun(Some(pg_begin), f);
        self.note_space(&r, false);
        r
    }

    fn write_inner<T>(&self, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        self.write_begun(None, f)
    }

    /// A write transaction, started on PostgreSQL by `pg_begin` if given.
    fn write_begun<T>(&self, pg_begin: Option<&str>, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        let mut pooled = self.writer()?;
        let conn: &mut DbConn = &mut pooled;
        match conn {
            DbConn::Pg(c) => match pg_begin {
                Some(sql) => {
                    if let Err(e) = AnsiTransactionManager::begin_transaction_sql(c, sql) {
                        // A statement after the `BEGIN` of the batch failed: the
                        // connection must not go back to the pool inside that
                        // (aborted) transaction, which diesel does not know of.
                        let _ = diesel::connection::SimpleConnection::batch_execute(c, "ROLLBACK");
                        return Err(e.into());
                    }
                }
                None => AnsiTransactionManager::begin_transaction(c)?,
            },
            DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        }
        match f(conn) {
            Ok(v) => {
                on_conn!(conn, |c| AnsiTransactionManager::commit_transaction(c))?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = on_conn!(conn, |c| AnsiTransactionManager::rollback_transaction(c)) {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Runs `f` on a read connection (no transaction).
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        let mut pooled = self.reader()?;
        let r = f(&mut pooled);
        // (PostgreSQL spills large sorts to temporary files.)
        self.note_space(&r, false);
        r
    }

    /// Runs `f` on a read connection; on PostgreSQL in a read-only
    /// transaction whose plans walk indexes only (no bitmap or sequential
    /// scans). For short reads at the head of a queue that has grown since
    /// its last ANALYZE: with stale statistics the planner takes the account
    /// for a few rows and picks a bitmap scan of all of them plus a sort
    /// (`GET /v1/queue` with 500,000 pending: 6,496 buffers and 150 ms
    /// instead of 4 buffers and 0.1 ms, EXPLAIN (ANALYZE, BUFFERS)).
    pub fn read_by_index<T>(&self, f: impl FnOnce(&mut DbConn) -> StoreResult<T>) -> StoreResult<T> {
        let mut pooled = self.reader()?;
        let conn: &mut DbConn = &mut pooled;
        let DbConn::Pg(c) = conn else { return f(conn) };
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN READ ONLY")?;
        let pinned = diesel::sql_query(
            "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)",
        )
        .execute(c);
        let out = pinned.map_err(StoreError::from).and_then(|_| f(conn));
        let DbConn::Pg(c) = conn else { unreachable!() };
        match out {
            Ok(v) => {
                AnsiTransactionManager::commit_transaction(c)?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = AnsiTransactionManager::rollback_transaction(c) {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Pool use, for /metrics: (connections, idle connections, most allowed).
    pub fn pool_state(&self) -> (u32, u32, u32) {
        let s = self.read.state();
        (s.connections, s.idle_connections, self.read.max_size())
    }

    /// PostgreSQL: the size of the database on disk (`pg_database_size`), for
    /// `--max-db-size`; SQLite answers `None` (its files are measured).
    pub fn database_size(&self) -> StoreResult<Option<u64>> {
        #[derive(QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let mut c = self.reader()?;
        let DbConn::Pg(pg) = &mut *c else { return Ok(None) };
        let s: Size = diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes").get_result(pg)?;
        Ok(Some(s.bytes.max(0) as u64))
    }

    /// A cheap round trip, for /readyz.
    pub fn ping(&self) -> StoreResult<()> {
        let mut c = self.reader()?;
        diesel::connection::SimpleConnection::batch_execute(&mut *c, "SELECT 1")?;
        Ok(())
    }
}

/// `BEGIN` and [`relaxed_commit`]'s setting in one round trip.
pub(super) const RELAXED_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// Worker bookkeeping (claims, results) need not wait for the WAL flush on
/// PostgreSQL: a crash loses at most the last moments of it, which only
/// means a lease that did not happen (the rows are claimable) or a delivery
/// sent again (at-least-once, as for any webhook). Events themselves are
/// always committed durably at ingest.
pub(crate) fn relaxed_commit(conn: &mut DbConn) -> StoreResult<()> {
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(c)?;
    }
    Ok(())
}
