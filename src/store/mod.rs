//! Storage: the connection pools, the schema, and every operation on the
//! data. One code path serves both backends: each operation is written once
//! against diesel's query builder and instantiated for SQLite and PostgreSQL
//! by [`on_conn!`]; backend-specific SQL is used only where it pays (the
//! queue claim, see `queue.rs`).

pub mod accounts;
pub mod activity;
mod bulk;
mod cached;
pub mod events;
pub mod failure;
pub mod group;
pub mod leases;
pub mod listen;
pub mod migrate;
pub mod paint_contexts;
pub mod payloads;
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
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(diesel::result::Error),
    /// The connection was lost or refused (see [`failure`]).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A storage watermark is reached: ingest is refused before the disk
    /// is full (fetch and mark-read go on).
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The database itself ran out of space: this statement failed, and
    /// every write (a claim, a mark-read too) may fail until space is added.
    #[error("database out of space: {0}")]
    OutOfSpace(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        if failure::is_connection_lost(&e) {
            failure::note_unreachable();
            StoreError::Unavailable(e.to_string())
        } else if failure::is_out_of_space(&e) {
            tracing::warn!(error = %e, "the database is out of space");
            StoreError::OutOfSpace(e.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

impl StoreError {
    /// The database cannot be reached now (503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Pool(_) | StoreError::Connect(_) | StoreError::Unavailable(_)
        )
    }

    /// Refused for lack of space: a watermark, or the database's own error
    /// (507 `storage_full`).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull(_) | StoreError::OutOfSpace(_))
    }

    /// Rolled back because of another transaction (a deadlock): may be run
    /// again as it is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Db(e) if failure::is_retryable(e))
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How many times an ingest transaction is run before a deadlock is
/// reported to its requests (see [`Store::write_ingest`]).
pub const INGEST_ATTEMPTS: u32 = 5;

/// libpq negotiates GSSAPI transport encryption by default, which loads
/// Kerberos; its thread-specific-data destructors then abort the process
/// (`krb5int_getspecific` assertion) when it exits while pool threads still
/// hold connections (seen in our test runs). eventd does not use GSSAPI
/// encryption unless the URL asks for it with `gssencmode=…`.
fn pg_conninfo(url: &str) -> String {
    if url.contains("gssencmode=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}gssencmode=disable")
}

/// Puts the SQLite file in WAL mode (a property of the file: set once,
/// before any pool). Switching a new file's journal mode takes an exclusive
/// lock without waiting on the busy timeout, so when several nodes start on
/// one new file at once, the losers see "database is locked": they retry for
/// as long as the busy timeout would have waited.
fn set_wal(manager: &Manager) -> StoreResult<()> {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tried = manager.connect().and_then(|mut c| {
            diesel::connection::SimpleConnection::batch_execute(&mut c, "PRAGMA journal_mode = WAL;")
                .map_err(r2d2::Error::QueryError)
        });
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("locked") && std::time::Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(StoreError::Connect(e.to_string())),
        }
    }
}

/// Opens connections of the backend the URL names (never guessing: a
/// PostgreSQL URL that fails to connect is an error, not a SQLite file).
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        match self.backend {
            Backend::Postgres => PgConnection::establish(&self.url)
                .map(DbConn::Pg)
                .map_err(r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").unwrap_or(&self.url);
                let mut c = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                diesel::connection::SimpleConnection::batch_execute(
                    &mut c,
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; \
                     PRAGMA temp_store = MEMORY;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(c))
            }
        }
    }

    /// Checked at every checkout, but only costs a round trip while
    /// connections are suspect (a connection failed in the last seconds).
    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        if !failure::suspect() {
            return Ok(());
        }
        diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1").map_err(r2d2::Error::QueryError)
    }

    /// A connection given back inside a transaction (after a panic) is
    /// dropped rather than reused.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        let depth = on_conn!(conn, |c| AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()
            .map(|d| d.is_some()));
        !matches!(depth, Ok(false))
    }
}

pub type Conn = PooledConnection<Manager>;

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
}

impl Store {
    pub fn connect(url: &str, pool_size: u32) -> StoreResult<Store> {
        let backend = Backend::of_url(url);
        let manager = Manager {
            url: match backend {
                Backend::Postgres => pg_conninfo(url),
                Backend::Sqlite => url.to_string(),
            },
            backend,
        };
        if backend == Backend::Sqlite {
            set_wal(&manager)?;
        }
        let build = |size: u32| {
            Pool::builder()
                .max_size(size.max(1))
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(30))
                .test_on_check_out(true)
                .error_handler(Box::new(ConnectFailures))
                .build(manager.clone())
                .map_err(|e| StoreError::Connect(e.to_string()))
        };
        let read = build(pool_size)?;
        let write = match backend {
            Backend::Sqlite => build(1)?,
            Backend::Postgres => read.clone(),
        };
        Ok(Store {
            backend,
            conninfo: manager.url.clone(),
            read,
            write,
            out_of_space_at: Arc::default(),
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
        let mut attempt = 1;
        let r = loop {
            match self.write_inner(&f) {
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

/// A connection: within the pool's timeout, or briefly while connections
/// are suspect (the database just failed: answer 503 soon, not in 30 s).
fn checkout(pool: &Pool<Manager>) -> StoreResult<Conn> {
    let got = if failure::suspect() {
        pool.get_timeout(failure::SUSPECT_CHECKOUT)
    } else {
        pool.get()
    };
    got.map_err(|e| {
        failure::note_unreachable();
        StoreError::Pool(e)
    })
}

/// Failures to open a connection make the others suspect (and are logged).
#[derive(Debug)]
struct ConnectFailures;

impl r2d2::HandleError<r2d2::Error> for ConnectFailures {
    fn handle_error(&self, error: r2d2::Error) {
        failure::note_unreachable();
        tracing::warn!(%error, "database connection failed");
    }
}

/// `BEGIN` and [`relaxed_commit`]'s setting in one round trip.
const RELAXED_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit = off";

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

#[cfg(test)]
mod tests {
    use super::pg_conninfo;

    /// `.cargo/config.toml` builds SQLite without its per-call mutex (see
    /// there); a build that lost the setting is slower, not wrong, so this
    /// is where it shows.
    #[test]
    fn bundled_sqlite_is_built_in_multi_thread_mode() {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Opt {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut c = diesel::SqliteConnection::establish(":memory:").unwrap();
        let opts: Vec<Opt> = diesel::sql_query("PRAGMA compile_options").load(&mut c).unwrap();
        let threadsafe: Vec<&str> = opts
            .iter()
            .map(|o| o.compile_options.as_str())
            .filter(|o| o.starts_with("THREADSAFE"))
            .collect();
        assert_eq!(threadsafe, ["THREADSAFE=2"]);
        // Statements keep their plan whatever is bound (no re-prepare per
        // execution on tables with partial indexes).
        assert!(opts.iter().any(|o| o.compile_options == "ENABLE_QPSG"));
    }

    #[test]
    fn gss_encryption_is_off_unless_asked_for() {
        assert_eq!(pg_conninfo("postgres://h/db"), "postgres://h/db?gssencmode=disable");
        assert_eq!(
            pg_conninfo("postgres://h/db?sslmode=require"),
            "postgres://h/db?sslmode=require&gssencmode=disable"
        );
        assert_eq!(
            pg_conninfo("postgres://h/db?gssencmode=prefer"),
            "postgres://h/db?gssencmode=prefer"
        );
    }
}
