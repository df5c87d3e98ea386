//! Reclaiming the space of deleted and updated rows on PostgreSQL.
//!
//! The pull queue turns over: every event is inserted, read and deleted;
//! batches, depth counters and deliveries are updated many times a second.
//! PostgreSQL only reuses a dead row's space once VACUUM has run, and
//! eventd cannot count on autovacuum: it may be off (as on this project's
//! test server), and at its default thresholds (20 % of a table dead) it
//! lets a queue that turns over millions of rows grow by as much between
//! runs. Measured with `cargo bench --bench eventd_bench -- --churn
//! 10000000 --backend postgres` and autovacuum off: without this, the
//! database grew by ~690 MB per million events and the fetch of 10,000
//! slowed from 125 to 320 ms (docs/PERFORMANCE.md). So maintenance vacuums
//! the churning tables itself: the queue's at the start and at the end of
//! each round (a round that prunes a large history takes a while, and the
//! queue turns over meanwhile), the rest at the end. `SKIP_LOCKED` leaves
//! a table another VACUUM is working on (e.g. autovacuum, or another node)
//! to it.
//! SQLite reuses freed pages by itself (its file stays at its high-water
//! mark, measured flat over the same churn).

use diesel::RunQueryDsl;

use super::{DbConn, Store, StoreResult};

/// The pull queue's tables: small, turned over fastest.
const QUEUE: &str = "pull_queue, batches, queue_depth";
/// The others whose rows are deleted or updated as events flow.
const REST: &str = "events, deliveries, delivery_attempts, push_destinations, activity";

impl Store {
    /// VACUUM the pull queue's tables (PostgreSQL; nothing on SQLite).
    /// Runs outside any transaction, on one pooled connection; VACUUM
    /// blocks no reader or writer.
    pub fn vacuum_queue(&self) -> StoreResult<()> {
        self.vacuum(QUEUE)
    }

    /// VACUUM the history and the push tables (PostgreSQL).
    pub fn vacuum_rest(&self) -> StoreResult<()> {
        self.vacuum(REST)
    }

    fn vacuum(&self, tables: &str) -> StoreResult<()> {
        let mut conn = self.writer()?;
        if let DbConn::Pg(c) = &mut *conn {
            diesel::sql_query(format!("VACUUM (SKIP_LOCKED) {tables}")).execute(c)?;
        }
        Ok(())
    }
}
