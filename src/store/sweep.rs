//! The sweep: the rows of batches marked read are deleted after the
//! answer (`--sweep-delay`), one batch per transaction, and on PostgreSQL
//! their events' history when it is past `--history-days`.

use diesel::prelude::*;

use super::payloads::quoted;
use super::push::DELIVERED;
use super::queue::{batch_row, find_batch, READ};
use super::queue_rows::{member_conds, ACKED};
use super::retention::{history_guard, HistoryGuard};
use super::schema::{batches, pull_queue};
use super::{DbConn, Store, StoreError, StoreResult};
use crate::on_conn;

/// Batches marked read listed per sweeper query.
const SWEEP_CHUNK: i64 = 64;

/// Deletes the rows of one batch marked read and closes it; on PostgreSQL
/// also their events' history rows received before `history_cutoff_ms`
/// that no delivery needs (what history retention would delete later, here
/// through the batch's own id range instead of a walk of the history: with
/// `--history-days 0` the history then holds only what is queued).
/// Returns None when the batch was not waiting for that (another sweeper,
/// on this node or another, took it first, or it went with its account),
/// else how many history rows went with it.
fn sweep_one(conn: &mut DbConn, account_id: i64, id: &str, history_cutoff_ms: i64) -> StoreResult<Option<u64>> {
    let b = match find_batch(conn, account_id, id) {
        // Gone with its account meanwhile.
        Err(StoreError::NotFound) => return Ok(None),
        found => found?,
    };
    // The state changes first: a second sweeper blocks on this row until
    // the first commits, then finds it read and leaves it.
    let took = on_conn!(&mut *conn, |c| diesel::update(
        batch_row(account_id, id).filter(batches::state.eq(ACKED))
    )
    .set((batches::state.eq(READ), batches::seqs.eq("[]")))
    .execute(c))?;
    if took == 0 {
        return Ok(None);
    }
    let (mut deleted, mut history) = (0, 0);
    let members = b.members();
    // Seq order is ingest order: when the first member is well inside the
    // history retention (an hour covers any reordering), so are the others,
    // and their history is left alone (maintenance is the backstop anyway).
    // PostgreSQL only. There, retention by maintenance rounds could not keep
    // up under churn (each round's VACUUM grew with the history it left).
    // On SQLite a freed page is reused by the next insert, so maintenance
    // keeps the file flat, and the sweep, which holds the one writer, stays
    // short: with the history delete in it, fetch+read under churn took
    // 168-181 ms against 123-134 ms (docs/PERFORMANCE.md, eighth session).
    let history_due = matches!(conn, DbConn::Pg(_))
        && match members.first() {
            Some(first) => on_conn!(&mut *conn, |c| pull_queue::table
                .filter(pull_queue::account_id.eq(account_id))
                .filter(pull_queue::seq.eq(first))
                .select(pull_queue::received_at)
                .first::<i64>(c)
                .optional())?
            .is_some_and(|t| t < history_cutoff_ms.saturating_add(REORDER_MARGIN_MS)),
            None => false,
        };
    if history_due {
        history_guard(conn, account_id, HistoryGuard::Delete)?;
    }
    for cond in member_conds(conn, &members) {
        // The members' event ids span a range of the history's key.
        let span: Vec<IdSpan> = if history_due {
            on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                "SELECT MIN(event_id) AS lo, MAX(event_id) AS hi, MIN(received_at) AS oldest \
                 FROM pull_queue WHERE account_id = {account_id} AND {cond}"
            ))
            .load(c))?
        } else {
            Vec::new()
        };
        deleted += on_conn!(&mut *conn, |c| diesel::sql_query(format!(
            "DELETE FROM pull_queue WHERE account_id = {account_id} AND {cond}"
        ))
        .execute(c))?;
        let Some(IdSpan {
            lo: Some(lo),
            hi: Some(hi),
            oldest: Some(oldest),
        }) = span.into_iter().next()
        else {
            continue;
        };
        if oldest >= history_cutoff_ms {
            continue;
        }
        history += on_conn!(&mut *conn, |c| diesel::sql_query(format!(
            "DELETE FROM events WHERE account_id = {account_id} AND id >= {} AND id <= {} AND {cond} \
             AND received_at < {history_cutoff_ms} AND NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.account_id = {account_id} AND d.event_id = events.id AND d.status <> '{DELIVERED}')",
            quoted(&lo),
            quoted(&hi)
        ))
        .execute(c))?;
    }
    if deleted as i64 != b.event_count {
        tracing::warn!(batch = %b.id, deleted, expected = b.event_count, "a read batch's rows were not all there");
    }
    Ok(Some(history as u64))
}

/// How far ingest order (seq) and receipt time may disagree, at most.
const REORDER_MARGIN_MS: i64 = 3_600_000;

#[derive(QueryableByName)]
struct IdSpan {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    lo: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    hi: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    oldest: Option<i64>,
}

impl Store {
    /// Deletes the rows of every batch marked read, oldest first, one batch
    /// per transaction (see [`ACKED`]), with their events' history rows
    /// received before `history_cutoff_ms` ([`sweep_one`]). Returns how many
    /// history rows went. Safe to run on several nodes at once.
    pub fn sweep_read_batches(&self, history_cutoff_ms: i64) -> StoreResult<u64> {
        let mut history = 0;
        loop {
            let due: Vec<(i64, String)> = self.read_by_index(|conn| {
                Ok(on_conn!(conn, |c| batches::table
                    .filter(batches::state.eq(ACKED))
                    .order(batches::created_at)
                    .limit(SWEEP_CHUNK)
                    .select((batches::account_id, batches::id))
                    .load(c))?)
            })?;
            let mut now_swept = 0;
            for (account_id, id) in &due {
                if let Some(h) = self.write_relaxed(|conn| sweep_one(conn, *account_id, id, history_cutoff_ms))? {
                    now_swept += 1;
                    history += h;
                }
            }
            // Done, or what is left is another sweeper's.
            if (due.len() as i64) < SWEEP_CHUNK || now_swept == 0 {
                return Ok(history);
            }
        }
    }
}
