//! Connections: how each backend's are opened and checked, and how a pool
//! hands them out (briefly while the database is suspect).

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};

use super::{failure, Backend, DbConn, StoreError, StoreResult};
use crate::on_conn;

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

impl Manager {
    /// The manager of `url`'s connections; a new SQLite file is put in WAL
    /// mode first.
    pub(super) fn new(url: &str, backend: Backend) -> StoreResult<Manager> {
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
        Ok(manager)
    }

    /// What connections are opened with.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// A pool of up to `size` connections (at least one).
    pub(super) fn pool(&self, size: u32) -> StoreResult<Pool<Manager>> {
        Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .test_on_check_out(true)
            .error_handler(Box::new(ConnectFailures))
            .build(self.clone())
            .map_err(|e| StoreError::Connect(e.to_string()))
    }
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
                // The WAL is checkpointed by a thread of its own (`checkpoint.rs`).
                use super::checkpoint::{AUTOCHECKPOINT_PAGES, WAL_SIZE_LIMIT};
                diesel::connection::SimpleConnection::batch_execute(
                    &mut c,
                    &format!(
                        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; \
                         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}; \
                         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};",
                    ),
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

/// A connection: within the pool's timeout, or briefly while connections
/// are suspect (the database just failed: answer 503 soon, not in 30 s).
pub(super) fn checkout(pool: &Pool<Manager>) -> StoreResult<Conn> {
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
