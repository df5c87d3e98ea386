//! Embedded migrations, one set per backend, run at start and by
//! `eventd migrate`. On PostgreSQL an advisory lock makes several nodes that
//! start at once run them one after the other (the later ones find nothing
//! left to do); on SQLite an immediate transaction does the same.

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{DbConn, Store, StoreError, StoreResult};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Arbitrary constant naming eventd's migration lock.
const LOCK_KEY: i64 = 0x0e7e_17d0_0001;

impl Store {
    /// Applies pending migrations; returns how many ran.
    pub fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self.writer()?;
        let mig = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
        match &mut *conn {
            DbConn::Pg(c) => {
                c.batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))?;
                let result = c.run_pending_migrations(POSTGRES).map(|v| v.len()).map_err(mig);
                c.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))?;
                result
            }
            // One write transaction around the whole run: processes that
            // start at once wait on the write lock (busy timeout), then find
            // the migrations applied (each one runs in a savepoint).
            DbConn::Sqlite(c) => {
                c.immediate_transaction(|c| c.run_pending_migrations(SQLITE).map(|v| v.len()).map_err(mig))
            }
        }
    }
}
