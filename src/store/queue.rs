//! The pull queue: fetch (claim) a batch, mark it read, release it, status.
//!
//! Design (see docs/ARCHITECTURE.md): a queued event is one row, inserted at
//! ingest and deleted when its batch is marked read. A fetch claims the
//! oldest unleased rows by setting `batch_id` and `lease_until` on them (no
//! index covers either, so on PostgreSQL the update is HOT) and records the
//! batch (consumer, lease, seq range, count) in `batches`. A row is
//! available when it has no lease or its lease has run out, so an expired
//! batch's events return to the queue without any sweeper. Acknowledge and
//! release are one statement each over the batch's seq range.

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
    min_seq: i64,
    max_seq: i64,
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

/// SQL condition: the row belongs to the account, is not leased, and (if
/// asked) is of one of the triggers. Only integers and trigger names (a
/// closed set) are spliced in; client strings are always bound.
fn available(account_id: i64, now: i64, triggers: &Option<Vec<Trigger>>) -> String {
    let mut sql = format!("account_id = {account_id} AND (lease_until IS NULL OR lease_until <= {now})");
    if let Some(ts) = triggers {
        let list: Vec<String> = ts.iter().map(|t| format!("'{}'", t.as_str())).collect();
        sql.push_str(&format!(" AND trigger IN ({})", list.join(",")));
    }
    sql
}

fn claim(conn: &mut DbConn, cond: &str, limit: i64, batch_id: &str, lease_until: i64) -> QueryResult<Vec<Claimed>> {
    match conn {
        // Select the ids first (an array sub-select, so LIMIT bounds what is
        // locked), skip rows another fetch is claiming, then mark them in one
        // statement that walks the primary key (a join here would make the
        // planner hash the whole table).
        DbConn::Pg(c) => diesel::sql_query(format!(
            "UPDATE pull_queue SET batch_id = '{batch_id}', lease_until = {lease_until} \
             WHERE account_id = {acc} AND seq = ANY(ARRAY(SELECT seq FROM pull_queue WHERE {cond} \
             ORDER BY seq LIMIT {limit} FOR UPDATE SKIP LOCKED)) RETURNING seq, payload",
            acc = cond_account(cond)
        ))
        .load(c),
        // SQLite has one writer at a time (BEGIN IMMEDIATE): no locking needed.
        DbConn::Sqlite(c) => diesel::sql_query(format!(
            "UPDATE pull_queue SET batch_id = '{batch_id}', lease_until = {lease_until} \
             WHERE seq IN (SELECT seq FROM pull_queue WHERE {cond} ORDER BY seq LIMIT {limit}) \
             RETURNING seq, payload"
        ))
        .load(c),
    }
}

/// The account id spliced at the head of an [`available`] condition.
fn cond_account(cond: &str) -> &str {
    cond.trim_start_matches("account_id = ")
        .split_whitespace()
        .next()
        .unwrap_or("0")
}

fn count_available(conn: &mut DbConn, cond: &str) -> QueryResult<i64> {
    let sql = format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM pull_queue WHERE {cond} LIMIT {REMAINING_CAP}) t");
    let rows: Vec<Count> = on_conn!(conn, |c| diesel::sql_query(&sql).load(c))?;
    Ok(rows.first().map(|r| r.n).unwrap_or(0))
}

/// Serialises fetches of one consumer of one account across nodes, so that
/// two concurrent fetches of the same consumer cannot open two batches.
fn lock_consumer(conn: &mut DbConn, account_id: i64, consumer: &str) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>((account_id % i64::from(i32::MAX)) as i32)
            .bind::<Text, _>(consumer)
            .execute(c)?;
    }
    Ok(())
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

/// Records that a batch was marked read or released, and how many events
/// that touched.
macro_rules! close_batch {
    ($c:expr, $account_id:expr, $id:expr, $state:expr, $n:expr) => {
        diesel::update(
            batches::table
                .filter(batches::account_id.eq($account_id))
                .filter(batches::id.eq($id)),
        )
        .set((batches::state.eq($state), batches::closed_count.eq($n)))
        .execute($c)
    };
}

impl Store {
    /// Claims a batch for a consumer, or returns the consumer's open batch
    /// again. `Ok(None)` when nothing is pending.
    pub fn fetch_batch(&self, account_id: i64, req: &FetchRequest) -> StoreResult<Option<Batch>> {
        let now = now_ms();
        let cond = available(account_id, now, &req.triggers);
        self.write(|conn| {
            lock_consumer(conn, account_id, &req.consumer)?;
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
                let payloads: Vec<String> = on_conn!(&mut *conn, |c| pull_queue::table
                    .filter(pull_queue::account_id.eq(account_id))
                    .filter(pull_queue::seq.between(b.min_seq, b.max_seq))
                    .filter(pull_queue::batch_id.eq(&b.id))
                    .order(pull_queue::seq)
                    .select(pull_queue::payload)
                    .load(c))?;
                let remaining = count_available(conn, &cond)?;
                return Ok(Some(Batch {
                    id: b.id,
                    consumer: b.consumer,
                    expires_at_ms: b.expires_at,
                    payloads,
                    remaining,
                    fresh: false,
                }));
            }

            let id = uuid::Uuid::now_v7().to_string();
            let expires_at = now + req.lease_ms;
            let mut rows = claim(conn, &cond, req.size, &id, expires_at)?;
            if rows.is_empty() {
                return Ok(None);
            }
            rows.sort_unstable_by_key(|r| r.seq);
            let (min_seq, max_seq) = (rows[0].seq, rows[rows.len() - 1].seq);
            let event_count = rows.len() as i64;
            on_conn!(&mut *conn, |c| diesel::insert_into(batches::table)
                .values((
                    batches::account_id.eq(account_id),
                    batches::id.eq(&id),
                    batches::consumer.eq(&req.consumer),
                    batches::state.eq(OPEN),
                    batches::created_at.eq(now),
                    batches::expires_at.eq(expires_at),
                    batches::event_count.eq(event_count),
                    batches::min_seq.eq(min_seq),
                    batches::max_seq.eq(max_seq),
                ))
                .execute(c))?;
            let remaining = count_available(conn, &cond)?;
            Ok(Some(Batch {
                id,
                consumer: req.consumer.clone(),
                expires_at_ms: expires_at,
                payloads: rows.into_iter().map(|r| r.payload).collect(),
                remaining,
                fresh: true,
            }))
        })
    }

    /// Marks a batch read: deletes its events. Idempotent.
    pub fn mark_read(&self, account_id: i64, batch_id: &str) -> StoreResult<i64> {
        let now = now_ms();
        self.write(|conn| {
            on_conn!(conn, |c| {
                let b: BatchRow = batches::table
                    .filter(batches::account_id.eq(account_id))
                    .filter(batches::id.eq(batch_id))
                    .select(BatchRow::as_select())
                    .first(c)
                    .optional()?
                    .ok_or(StoreError::NotFound)?;
                match b.state.as_str() {
                    READ => return Ok(0),
                    RELEASED => {
                        return Err(StoreError::Conflict(
                            "the batch was released; its events went back to the queue".into(),
                        ))
                    }
                    _ => {}
                }
                let mine = pull_queue::table
                    .filter(pull_queue::account_id.eq(account_id))
                    .filter(pull_queue::seq.between(b.min_seq, b.max_seq))
                    .filter(pull_queue::batch_id.eq(&b.id));
                if b.expires_at <= now {
                    let still: i64 = mine.count().get_result(c)?;
                    if still < b.event_count {
                        return Err(StoreError::Conflict(format!(
                            "the batch's lease expired and {} of its {} events were handed to another batch; \
                         nothing was deleted",
                            b.event_count - still,
                            b.event_count
                        )));
                    }
                }
                let deleted = diesel::delete(mine).execute(c)? as i64;
                close_batch!(c, account_id, &b.id, READ, deleted)?;
                Ok(deleted)
            })
        })
    }

    /// Releases a batch: its events return to the queue at once.
    pub fn release(&self, account_id: i64, batch_id: &str) -> StoreResult<i64> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                let b: BatchRow = batches::table
                    .filter(batches::account_id.eq(account_id))
                    .filter(batches::id.eq(batch_id))
                    .select(BatchRow::as_select())
                    .first(c)
                    .optional()?
                    .ok_or(StoreError::NotFound)?;
                match b.state.as_str() {
                    RELEASED => return Ok(0),
                    READ => return Err(StoreError::Conflict("the batch was already marked read".into())),
                    _ => {}
                }
                let released = diesel::update(
                    pull_queue::table
                        .filter(pull_queue::account_id.eq(account_id))
                        .filter(pull_queue::seq.between(b.min_seq, b.max_seq))
                        .filter(pull_queue::batch_id.eq(&b.id)),
                )
                .set((
                    pull_queue::batch_id.eq(None::<String>),
                    pull_queue::lease_until.eq(None::<i64>),
                ))
                .execute(c)? as i64;
                close_batch!(c, account_id, &b.id, RELEASED, released)?;
                Ok(released)
            })
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
        let sql = format!(
            "SELECT trigger, COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN lease_until > {now} THEN 1 ELSE 0 END), 0) AS leased, \
             MIN(CASE WHEN lease_until IS NULL OR lease_until <= {now} THEN received_at END) AS oldest \
             FROM pull_queue WHERE account_id = {account_id} GROUP BY trigger"
        );
        let (counts, open) = self.read(|conn| {
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
