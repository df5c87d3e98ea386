//! The pull queue: fetch (claim) a batch, mark it read, release it, status.
//!
//! Design (see docs/ARCHITECTURE.md): a queued event is one row of
//! `pull_queue`, inserted at ingest and deleted when its batch is marked
//! read; it is never updated. A batch is one row of `batches` that lists
//! its events' seqs and carries the lease. An event is available when no
//! open, unexpired batch lists it, so an expired batch's events return to
//! the queue without any sweeper and a release is a change of one row.
//! Claims of one account are serialised (PostgreSQL: an advisory lock;
//! SQLite: the single writer), which keeps batches disjoint.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::schema::{batches, pull_queue};
use super::{DbConn, Store, StoreError, StoreResult};
use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::on_conn;

/// `remaining` is counted exactly up to this many events (one more full
/// batch), so that a fetch on a queue of millions stays as fast as on a
/// short one. `GET /v1/queue` counts everything.
pub const REMAINING_CAP: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub size: i64,
    pub consumer: String,
    /// None: every trigger.
    pub triggers: Option<Vec<Trigger>>,
    pub lease_ms: i64,
}

/// A claimed batch. `payloads` are the events' stored JSON, oldest first.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub consumer: String,
    pub expires_at_ms: i64,
    pub payloads: Vec<String>,
    /// Events still available after this batch (capped at [`REMAINING_CAP`]).
    pub remaining: i64,
    /// False when this is the consumer's open batch handed out again.
    pub fresh: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = batches)]
struct BatchRow {
    id: String,
    consumer: String,
    state: String,
    expires_at: i64,
    event_count: i64,
    seqs: String,
}

impl BatchRow {
    fn members(&self) -> Vec<i64> {
        serde_json::from_str(&self.seqs).unwrap_or_default()
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    payload: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TriggerCount {
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    leased: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
}

const OPEN: &str = "open";
const READ: &str = "read";
const RELEASED: &str = "released";
/// A batch whose lease ran out before it was closed (set by maintenance;
/// handled exactly like an open batch past its lease).
const EXPIRED: &str = "expired";

/// SQL yielding the seqs listed by the account's open, unexpired batches.
/// Only integers are spliced into queue SQL; client strings are bound.
pub(super) fn leased_sql(conn: &DbConn, account_id: i64, now: i64) -> String {
    match conn {
        DbConn::Pg(_) => format!(
            "SELECT jsonb_array_elements_text(seqs::jsonb)::bigint FROM batches \
             WHERE account_id = {account_id} AND state = 'open' AND expires_at > {now}"
        ),
        DbConn::Sqlite(_) => format!(
            "SELECT j.value FROM batches b, json_each(b.seqs) j \
             WHERE b.account_id = {account_id} AND b.state = 'open' AND b.expires_at > {now}"
        ),
    }
}

/// SQL condition "seq is one of these". The range bound keeps the index
/// scan to the members' span: with `= ANY` alone PostgreSQL 15 walked far
/// more of a 6M-row index (a 10,000-row mark-read took 1.0-1.4 s; 6 ms with
/// the bound).
fn seq_in(conn: &DbConn, seqs: &[i64]) -> String {
    let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let (lo, hi) = (
        seqs.iter().min().copied().unwrap_or(0),
        seqs.iter().max().copied().unwrap_or(-1),
    );
    match conn {
        DbConn::Pg(_) => format!("seq BETWEEN {lo} AND {hi} AND seq = ANY('{{{list}}}'::bigint[])"),
        DbConn::Sqlite(_) => format!("seq BETWEEN {lo} AND {hi} AND seq IN ({list})"),
    }
}

/// SQL condition: the account's events (of some triggers) that no open batch holds.
fn available(conn: &DbConn, account_id: i64, now: i64, triggers: &Option<Vec<Trigger>>) -> String {
    let mut sql = format!("account_id = {account_id}");
    if let Some(ts) = triggers {
        let list: Vec<String> = ts.iter().map(|t| format!("'{}'", t.as_str())).collect();
        sql.push_str(&format!(" AND trigger IN ({})", list.join(",")));
    }
    sql.push_str(&format!(" AND seq NOT IN ({})", leased_sql(conn, account_id, now)));
    sql
}

fn count(conn: &mut DbConn, sql: &str) -> QueryResult<i64> {
    let rows: Vec<Count> = on_conn!(conn, |c| diesel::sql_query(sql).load(c))?;
    Ok(rows.first().map(|r| r.n).unwrap_or(0))
}

fn load_payloads(conn: &mut DbConn, sql: &str) -> QueryResult<Vec<Claimed>> {
    on_conn!(conn, |c| diesel::sql_query(sql).load(c))
}

/// Serialises claims of one account across connections and nodes (SQLite
/// needs nothing: its writes are serialised already).
fn lock_account(conn: &mut DbConn, account_id: i64) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        // The two-key form: its key space is separate from the migration lock.
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock(3710, {})",
            account_id.rem_euclid(i64::from(i32::MAX))
        ))
        .execute(c)?;
        // The claim must walk the primary key in seq order and stop after
        // `size` rows. With stale statistics (a queue that grew since the
        // last ANALYZE) the planner prefers a bitmap scan of every row of
        // the account plus a sort: measured 90 ms instead of 14 ms for
        // 10,000 of 190,000 rows, and it grows with the queue.
        // Likewise `remaining` (a LIMITed count past the batch's last seq)
        // was planned as a sequential scan from the start of the heap, where
        // the deleted head of the queue lies: 2.4 s with 10M pending.
        diesel::sql_query("SET LOCAL enable_bitmapscan = off").execute(c)?;
        diesel::sql_query("SET LOCAL enable_seqscan = off").execute(c)?;
        // Claims, acknowledgements and releases need not wait for their WAL
        // flush: one lost in a database crash only makes its events
        // deliverable again (at-least-once). Ingest stays synchronous.
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(c)?;
    }
    Ok(())
}

fn find_batch(conn: &mut DbConn, account_id: i64, batch_id: &str) -> StoreResult<BatchRow> {
    on_conn!(conn, |c| batches::table
        .filter(batches::account_id.eq(account_id))
        .filter(batches::id.eq(batch_id))
        .select(BatchRow::as_select())
        .first(c)
        .optional())?
    .ok_or(StoreError::NotFound)
}

/// Records that a batch was marked read or released, and how many events
/// that touched; its member list is no longer needed.
fn close(conn: &mut DbConn, account_id: i64, id: &str, state: &str, n: i64) -> QueryResult<usize> {
    on_conn!(conn, |c| diesel::update(
        batches::table
            .filter(batches::account_id.eq(account_id))
            .filter(batches::id.eq(id)),
    )
    .set((
        batches::state.eq(state),
        batches::closed_count.eq(n),
        batches::seqs.eq("[]"),
    ))
    .execute(c))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub id: String,
    pub consumer: String,
    pub expires_at_ms: i64,
    pub events: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerDepth {
    pub trigger: Trigger,
    /// Waiting to be fetched.
    pub pending: i64,
    /// In open (leased) batches.
    pub in_flight: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub triggers: Vec<TriggerDepth>,
    /// received_at of the oldest event not in an open batch.
    pub oldest_pending_ms: Option<i64>,
    pub open_batches: Vec<OpenBatch>,
}

impl QueueStatus {
    /// (pending, in flight) over every trigger.
    pub fn totals(&self) -> (i64, i64) {
        self.triggers
            .iter()
            .fold((0, 0), |(p, f), d| (p + d.pending, f + d.in_flight))
    }

    /// How long the oldest pending event has waited at `now_ms`, in seconds.
    pub fn oldest_pending_age_seconds(&self, now_ms: i64) -> Option<f64> {
        self.oldest_pending_ms.map(|t| (now_ms - t).max(0) as f64 / 1000.0)
    }
}

impl Store {
    /// Claims a batch for a consumer, or returns the consumer's open batch
    /// again. `Ok(None)` when nothing is pending.
    pub fn fetch_batch(&self, account_id: i64, req: &FetchRequest) -> StoreResult<Option<Batch>> {
        let now = now_ms();
        self.write(|conn| {
            lock_account(conn, account_id)?;
            let cond = available(conn, account_id, now, &req.triggers);
            // Available events after `after` (the batch's last seq: what lies
            // before it is in this batch or held by others).
            let remaining = |conn: &mut DbConn, after: i64| {
                count(
                    conn,
                    &format!(
                        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM pull_queue WHERE {cond} AND seq > {after} \
                         LIMIT {REMAINING_CAP}) t"
                    ),
                )
            };
            let open: Option<BatchRow> = on_conn!(&mut *conn, |c| batches::table
                .filter(batches::account_id.eq(account_id))
                .filter(batches::consumer.eq(&req.consumer))
                .filter(batches::state.eq(OPEN))
                .filter(batches::expires_at.gt(now))
                .select(BatchRow::as_select())
                .order(batches::created_at.desc())
                .first(c)
                .optional())?;
            if let Some(b) = open {
                let sql = format!(
                    "SELECT seq, payload FROM pull_queue WHERE account_id = {account_id} AND {} ORDER BY seq",
                    seq_in(conn, &b.members())
                );
                let rows = load_payloads(conn, &sql)?;
                return Ok(Some(Batch {
                    id: b.id,
                    consumer: b.consumer,
                    expires_at_ms: b.expires_at,
                    remaining: remaining(conn, rows.last().map_or(0, |r| r.seq))?,
                    payloads: rows.into_iter().map(|r| r.payload).collect(),
                    fresh: false,
                }));
            }

            let sql = format!(
                "SELECT seq, payload FROM pull_queue WHERE {cond} ORDER BY seq LIMIT {}",
                req.size
            );
            let rows = load_payloads(conn, &sql)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let left = remaining(conn, rows[rows.len() - 1].seq)?;
            let id = uuid::Uuid::now_v7().to_string();
            let expires_at = now + req.lease_ms;
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let members = serde_json::to_string(&seqs).expect("integers serialize");
            on_conn!(&mut *conn, |c| diesel::insert_into(batches::table)
                .values((
                    batches::account_id.eq(account_id),
                    batches::id.eq(&id),
                    batches::consumer.eq(&req.consumer),
                    batches::state.eq(OPEN),
                    batches::created_at.eq(now),
                    batches::expires_at.eq(expires_at),
                    batches::event_count.eq(rows.len() as i64),
                    batches::seqs.eq(&members),
                ))
                .execute(c))?;
            Ok(Some(Batch {
                id,
                consumer: req.consumer.clone(),
                expires_at_ms: expires_at,
                payloads: rows.into_iter().map(|r| r.payload).collect(),
                remaining: left,
                fresh: true,
            }))
        })
    }

    /// Marks a batch read: deletes its events. Idempotent.
    pub fn mark_read(&self, account_id: i64, batch_id: &str) -> StoreResult<i64> {
        let now = now_ms();
        self.write(|conn| {
            lock_account(conn, account_id)?;
            let b = find_batch(conn, account_id, batch_id)?;
            match b.state.as_str() {
                READ => return Ok(0),
                RELEASED => {
                    return Err(StoreError::Conflict(
                        "the batch was released; its events went back to the queue".into(),
                    ))
                }
                _ => {}
            }
            let members = b.members();
            let mine = format!("account_id = {account_id} AND {}", seq_in(conn, &members));
            if b.expires_at <= now {
                // Past its lease, its events may have gone to another batch
                // (open now, or already read and deleted).
                let still = count(conn, &format!("SELECT COUNT(*) AS n FROM pull_queue WHERE {mine}"))?;
                let taken = count(
                    conn,
                    &format!(
                        "SELECT COUNT(*) AS n FROM pull_queue WHERE {mine} AND seq IN ({})",
                        leased_sql(conn, account_id, now)
                    ),
                )?;
                if still < b.event_count || taken > 0 {
                    return Err(StoreError::Conflict(format!(
                        "the batch's lease expired and {} of its {} events were handed to another batch; \
                         nothing was deleted",
                        (b.event_count - still + taken).min(b.event_count),
                        b.event_count
                    )));
                }
            }
            let deleted = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                "DELETE FROM pull_queue WHERE {mine}"
            ))
            .execute(c))? as i64;
            close(conn, account_id, &b.id, READ, deleted)?;
            Ok(deleted)
        })
    }

    /// Releases a batch: its events return to the queue at once.
    pub fn release(&self, account_id: i64, batch_id: &str) -> StoreResult<i64> {
        let now = now_ms();
        self.write(|conn| {
            lock_account(conn, account_id)?;
            let b = find_batch(conn, account_id, batch_id)?;
            match b.state.as_str() {
                RELEASED => return Ok(0),
                READ => return Err(StoreError::Conflict("the batch was already marked read".into())),
                _ => {}
            }
            let members = b.members();
            close(conn, account_id, &b.id, RELEASED, 0)?;
            // What is available again now: its events that still exist and
            // that no other batch took after its lease ran out.
            let released = count(
                conn,
                &format!(
                    "SELECT COUNT(*) AS n FROM pull_queue WHERE account_id = {account_id} AND {} AND seq NOT IN ({})",
                    seq_in(conn, &members),
                    leased_sql(conn, account_id, now)
                ),
            )?;
            on_conn!(&mut *conn, |c| diesel::update(
                batches::table
                    .filter(batches::account_id.eq(account_id))
                    .filter(batches::id.eq(&b.id))
            )
            .set(batches::closed_count.eq(released))
            .execute(c))?;
            Ok(released)
        })
    }

    /// Marks open batches whose lease ran out as expired; returns how many.
    /// (Their events are already available again: this is bookkeeping.)
    pub fn mark_expired_batches(&self, now: i64) -> StoreResult<u64> {
        let n = self.write(|conn| {
            on_conn!(conn, |c| Ok(diesel::update(
                batches::table
                    .filter(batches::state.eq(OPEN))
                    .filter(batches::expires_at.le(now))
            )
            .set(batches::state.eq(EXPIRED))
            .execute(c)?))
        })?;
        Ok(n as u64)
    }

    /// Server-wide figures for /metrics: (stored pull events, open batches,
    /// received_at of the oldest event at the head of any account's queue).
    pub fn queue_totals(&self, now: i64) -> StoreResult<(i64, i64, Option<i64>)> {
        self.read(|conn| {
            on_conn!(conn, |c| {
                let depth: i64 = pull_queue::table.count().get_result(c)?;
                let open: i64 = batches::table
                    .filter(batches::state.eq(OPEN))
                    .filter(batches::expires_at.gt(now))
                    .count()
                    .get_result(c)?;
                let accounts: Vec<i64> = super::schema::accounts::table
                    .select(super::schema::accounts::id)
                    .load(c)?;
                let mut oldest: Option<i64> = None;
                for a in accounts {
                    let head: Option<i64> = pull_queue::table
                        .filter(pull_queue::account_id.eq(a))
                        .order(pull_queue::seq)
                        .select(pull_queue::received_at)
                        .first(c)
                        .optional()?;
                    oldest = match (oldest, head) {
                        (Some(x), Some(y)) => Some(x.min(y)),
                        (x, y) => x.or(y),
                    };
                }
                Ok((depth, open, oldest))
            })
        })
    }

    pub fn queue_status(&self, account_id: i64) -> StoreResult<QueueStatus> {
        let now = now_ms();
        let (counts, open) = self.read(|conn| {
            let leased = leased_sql(conn, account_id, now);
            let sql = format!(
                "SELECT trigger, COUNT(*) AS total, \
                 COALESCE(SUM(CASE WHEN seq IN ({leased}) THEN 1 ELSE 0 END), 0) AS leased, \
                 MIN(CASE WHEN seq IN ({leased}) THEN NULL ELSE received_at END) AS oldest \
                 FROM pull_queue WHERE account_id = {account_id} GROUP BY trigger"
            );
            let counts: Vec<TriggerCount> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
            let open: Vec<BatchRow> = on_conn!(&mut *conn, |c| batches::table
                .filter(batches::account_id.eq(account_id))
                .filter(batches::state.eq(OPEN))
                .filter(batches::expires_at.gt(now))
                .order(batches::created_at)
                .select(BatchRow::as_select())
                .load(c))?;
            Ok((counts, open))
        })?;
        let mut triggers: Vec<TriggerDepth> = Trigger::ALL
            .iter()
            .map(|&trigger| TriggerDepth {
                trigger,
                pending: 0,
                in_flight: 0,
            })
            .collect();
        let mut oldest: Option<i64> = None;
        for row in counts {
            if let Some(d) = triggers.iter_mut().find(|d| d.trigger.as_str() == row.trigger) {
                d.pending = row.total - row.leased;
                d.in_flight = row.leased;
            }
            oldest = match (oldest, row.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(QueueStatus {
            triggers,
            oldest_pending_ms: oldest,
            open_batches: open
                .into_iter()
                .map(|b| OpenBatch {
                    id: b.id,
                    consumer: b.consumer,
                    expires_at_ms: b.expires_at,
                    events: b.event_count,
                })
                .collect(),
        })
    }
}
