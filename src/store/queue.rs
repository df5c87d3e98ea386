//! The pull queue: fetch (claim) a batch, mark it read, release it, status.
//!
//! Design (see docs/ARCHITECTURE.md): a queued event is one row of
//! `pull_queue`, inserted at ingest and deleted after its batch is marked
//! read; it is never updated. A batch is one row of `batches` that lists
//! its events' seqs, the seq ranges it leases (`leases.rs`) and carries the
//! lease. An event is available when no open, unexpired batch leases it, so
//! an expired batch's events return to the queue without any sweeper and a
//! release is a change of one row. Marking read is a change of one row too
//! (state `acked`, the counters lowered); the sweeper deletes the rows
//! afterwards, off the consumer's path, and until then they stay leased.
//! Claims of one account are serialised (PostgreSQL: an advisory lock;
//! SQLite: the single writer), which keeps batches disjoint. `queue_depth` counts the rows per trigger (see
//! `queue_status.rs`).

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::leases::{self, Piece, Segment};
use super::payloads;
use super::queue_rows::{encode_members, member_conds, open_pieces, seq_in, BatchRow, SeqTrigger, ACKED, OPEN};
use super::queue_status::{adjust_depth, pending_of};
pub use super::queue_status::{OpenBatch, QueueStatus, TriggerDepth};
use super::schema::batches;
use super::{DbConn, Store, StoreError, StoreResult, RELAXED_BEGIN};
use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::on_conn;

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
    /// Events of the fetched triggers still waiting after this batch (exact,
    /// from the depth counters; see `queue_status::pending_of`).
    pub remaining: i64,
    /// False when this is the consumer's open batch handed out again.
    pub fresh: bool,
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

pub(super) const READ: &str = "read";
const RELEASED: &str = "released";
/// A batch whose lease ran out before it was closed (set by maintenance;
/// handled exactly like an open batch past its lease).
const EXPIRED: &str = "expired";

/// Sub-selects on the account's rows in one segment, each ordered by seq and
/// limited to `limit`: one over the primary key, or one per trigger over
/// `(account_id, trigger, seq)` when few triggers are allowed, so events of
/// other triggers are never walked past.
fn segment_selects(account_id: i64, seg: &Segment, cols: &str, limit: i64) -> Vec<String> {
    let base = format!(
        "SELECT {cols} FROM pull_queue WHERE account_id = {account_id} AND seq BETWEEN {} AND {}",
        seg.lo, seg.hi
    );
    let allowed: Vec<Trigger> = leases::triggers_in(seg.allowed).collect();
    if seg.allowed == leases::ALL {
        vec![format!("{base} ORDER BY seq LIMIT {limit}")]
    } else if allowed.len() <= PER_TRIGGER_MAX {
        allowed
            .iter()
            .map(|t| format!("{base} AND trigger = '{}' ORDER BY seq LIMIT {limit}", t.as_str()))
            .collect()
    } else {
        let list: Vec<String> = allowed.iter().map(|t| format!("'{}'", t.as_str())).collect();
        vec![format!(
            "{base} AND trigger IN ({}) ORDER BY seq LIMIT {limit}",
            list.join(",")
        )]
    }
}

/// Up to this many allowed triggers are read one index range each.
const PER_TRIGGER_MAX: usize = 3;

/// One statement: the first `limit` rows of a segment in seq order.
fn segment_sql(account_id: i64, seg: &Segment, cols: &str, limit: i64) -> String {
    let parts = segment_selects(account_id, seg, cols, limit);
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let union: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("SELECT {cols} FROM ({p}) t{i}"))
        .collect();
    format!("{} ORDER BY seq LIMIT {limit}", union.join(" UNION ALL "))
}

fn load_claimed(conn: &mut DbConn, sql: &str) -> QueryResult<Vec<Claimed>> {
    on_conn!(conn, |c| diesel::sql_query(sql).load(c))
}

/// The claimed events' ids, in seq order.
fn event_ids(rows: Vec<Claimed>) -> Vec<String> {
    rows.into_iter().map(|r| r.event_id).collect()
}

/// The account's rows among `members` (a batch's) that still exist, with
/// their triggers.
fn member_rows(conn: &mut DbConn, account_id: i64, members: &[i64]) -> QueryResult<Vec<SeqTrigger>> {
    let mut rows = Vec::with_capacity(members.len());
    for cond in member_conds(conn, members) {
        rows.extend(on_conn!(&mut *conn, |c| diesel::sql_query(format!(
            "SELECT seq, trigger FROM pull_queue WHERE account_id = {account_id} AND {cond}"
        ))
        .load::<SeqTrigger>(c))?);
    }
    Ok(rows)
}

fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("numbers and strings serialize")
}

/// What starts a transaction on an account's queue (fetch, mark read,
/// release) on PostgreSQL, in one round trip with its `BEGIN`: the lock
/// that serialises claims of one account across connections and nodes
/// (SQLite needs nothing: its writes are serialised already), and the
/// settings of its statements.
fn claims_begin(account_id: i64) -> String {
    // The two-key form: its key space is separate from the migration lock.
    // The claim must walk the primary key in seq order and stop after
    // `size` rows. With stale statistics (a queue that grew since the last
    // ANALYZE) the planner prefers a bitmap scan of every row of the
    // account plus a sort: measured 90 ms instead of 14 ms for 10,000 of
    // 190,000 rows, and it grows with the queue. Likewise `remaining` (a
    // LIMITed count past the batch's last seq) was planned as a sequential
    // scan from the start of the heap, where the deleted head of the queue
    // lies: 2.4 s with 10M pending.
    // Claims, acknowledgements and releases need not wait for their WAL
    // flush: one lost in a database crash only makes its events
    // deliverable again (at-least-once). Ingest stays synchronous.
    format!(
        "{RELAXED_BEGIN}; SELECT pg_advisory_xact_lock(3710, {}); SET LOCAL enable_bitmapscan = off; \
         SET LOCAL enable_seqscan = off",
        account_id.rem_euclid(i64::from(i32::MAX))
    )
}

/// The row of one batch of the account.
#[diesel::dsl::auto_type(no_type_alias)]
pub(super) fn batch_row<'a>(account_id: i64, batch_id: &'a str) -> _ {
    batches::table
        .filter(batches::account_id.eq(account_id))
        .filter(batches::id.eq(batch_id))
}

pub(super) fn find_batch(conn: &mut DbConn, account_id: i64, batch_id: &str) -> StoreResult<BatchRow> {
    on_conn!(conn, |c| batch_row(account_id, batch_id)
        .select(BatchRow::as_select())
        .first(c)
        .optional())?
    .ok_or(StoreError::NotFound)
}

/// Records that a batch was released, and how many events that returned
/// to the queue; its member list is no longer needed.
fn mark_released(conn: &mut DbConn, account_id: i64, id: &str, n: i64) -> QueryResult<usize> {
    on_conn!(conn, |c| diesel::update(batch_row(account_id, id))
        .set((
            batches::state.eq(RELEASED),
            batches::closed_count.eq(n),
            batches::seqs.eq("[]"),
        ))
        .execute(c))
}

/// A batch's member count per trigger: as recorded at fetch, or (a batch
/// made before the counts were) counted from its rows.
fn member_counts(
    conn: &mut DbConn,
    account_id: i64,
    b: &BatchRow,
    members: &[i64],
) -> QueryResult<BTreeMap<String, i64>> {
    let known = b
        .trigger_counts
        .as_deref()
        .and_then(|j| serde_json::from_str::<BTreeMap<String, i64>>(j).ok());
    if let Some(known) = known {
        return Ok(known);
    }
    let mut counts = BTreeMap::new();
    for r in member_rows(conn, account_id, members)? {
        *counts.entry(r.trigger).or_default() += 1;
    }
    Ok(counts)
}

/// Marks a batch read: its events leave the queue's counts now; its rows
/// stay, leased to it, until the sweeper deletes them.
fn ack(conn: &mut DbConn, account_id: i64, id: &str, counts: &BTreeMap<String, i64>) -> QueryResult<usize> {
    on_conn!(conn, |c| diesel::update(batch_row(account_id, id))
        .set((
            batches::state.eq(ACKED),
            batches::closed_count.eq(counts.values().sum::<i64>()),
            batches::trigger_counts.eq(Some(to_json(counts))),
        ))
        .execute(c))
}

impl Store {
    /// Claims a batch for a consumer, or returns the consumer's open batch
    /// again. `Ok(None)` when nothing is pending.
    pub fn fetch_batch(&self, account_id: i64, req: &FetchRequest) -> StoreResult<Option<Batch>> {
        let now = now_ms();
        let wanted = leases::mask_of(&req.triggers);
        let claimed = self.write_begun_with(&claims_begin(account_id), |conn| {
            let open: Option<BatchRow> = on_conn!(&mut *conn, |c| batches::table
                .filter(batches::account_id.eq(account_id))
                .filter(batches::consumer.eq(&req.consumer))
                .filter(batches::state.eq(OPEN))
                .filter(batches::expires_at.gt(now))
                .select(BatchRow::as_select())
                .order(batches::created_at.desc())
                .first(c)
                .optional())?;
            let pieces = open_pieces(conn, account_id, now, None)?;
            if let Some(b) = open {
                let sql = format!(
                    "SELECT seq, trigger, event_id FROM pull_queue WHERE account_id = {account_id} AND {} ORDER BY seq",
                    seq_in(conn, &b.members())
                );
                let rows = load_claimed(conn, &sql)?;
                let batch = Batch {
                    id: b.id,
                    consumer: b.consumer,
                    expires_at_ms: b.expires_at,
                    remaining: pending_of(conn, account_id, now, wanted)?,
                    payloads: Vec::new(),
                    fresh: false,
                };
                return Ok(Some((batch, event_ids(rows))));
            }

            // Walk the stretches nobody leases, in seq order, until the batch
            // is full; each stretch taken from becomes a piece of the batch.
            let mut rows: Vec<Claimed> = Vec::new();
            let mut mine: Vec<Piece> = Vec::new();
            for seg in leases::segments(&pieces, wanted, 0) {
                let need = req.size - rows.len() as i64;
                if need <= 0 {
                    break;
                }
                let got = load_claimed(conn, &segment_sql(account_id, &seg, "seq, trigger, event_id", need))?;
                if let (Some(first), Some(last)) = (got.first(), got.last()) {
                    mine.push(Piece(first.seq, last.seq, seg.allowed));
                }
                rows.extend(got);
            }
            if rows.is_empty() {
                return Ok(None);
            }
            let id = uuid::Uuid::now_v7().to_string();
            let expires_at = now + req.lease_ms;
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let mut per_trigger: BTreeMap<&str, i64> = BTreeMap::new();
            for r in &rows {
                *per_trigger.entry(r.trigger.as_str()).or_default() += 1;
            }
            on_conn!(&mut *conn, |c| diesel::insert_into(batches::table)
                .values((
                    batches::account_id.eq(account_id),
                    batches::id.eq(&id),
                    batches::consumer.eq(&req.consumer),
                    batches::state.eq(OPEN),
                    batches::created_at.eq(now),
                    batches::expires_at.eq(expires_at),
                    batches::event_count.eq(rows.len() as i64),
                    batches::seqs.eq(encode_members(&seqs)),
                    batches::pieces.eq(Some(to_json(&mine))),
                    batches::trigger_counts.eq(Some(to_json(&per_trigger))),
                ))
                .execute(c))?;
            // After the insert: the new batch is among the open ones.
            let left = pending_of(conn, account_id, now, wanted)?;
            let batch = Batch {
                id,
                consumer: req.consumer.clone(),
                expires_at_ms: expires_at,
                payloads: Vec::new(),
                remaining: left,
                fresh: true,
            };
            Ok(Some((batch, event_ids(rows))))
        })?;
        // The payloads are read after the commit, outside the account's
        // claim lock: history rows never change, and retention keeps those
        // of queued events.
        let Some((mut batch, ids)) = claimed else {
            return Ok(None);
        };
        batch.payloads = self.payloads_in_order(account_id, &ids)?;
        Ok(Some(batch))
    }

    /// The payloads of `ids` (events of one account, in seq order), on a
    /// read connection. (Reading a large batch in two halves at once on two
    /// connections saved 2-3 ms of a PostgreSQL fetch of 10,000 at the
    /// median, but cost 10-20 MB of peak RSS and a worse p99: not kept.)
    fn payloads_in_order(&self, account_id: i64, ids: &[String]) -> StoreResult<Vec<String>> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut conn = self.reader()?;
        Ok(payloads::in_order(&mut conn, account_id, &ids)?)
    }

    /// Marks a batch read: its events leave the queue for good (their rows
    /// are deleted by [`Store::sweep_read_batches`], off the consumer's
    /// path). Idempotent. Answers how many events of each trigger it held.
    pub fn mark_read(&self, account_id: i64, batch_id: &str) -> StoreResult<Vec<(Trigger, i64)>> {
        let now = now_ms();
        self.write_begun_with(&claims_begin(account_id), |conn| {
            let b = find_batch(conn, account_id, batch_id)?;
            match b.state.as_str() {
                READ | ACKED => return Ok(Vec::new()),
                RELEASED => {
                    return Err(StoreError::Conflict(
                        "the batch was released; its events went back to the queue".into(),
                    ))
                }
                _ => {}
            }
            let members = b.members();
            if b.expires_at <= now {
                // Past its lease, its events may have gone to another batch
                // (open now, or already read and deleted).
                let still = member_rows(conn, account_id, &members)?;
                let others = open_pieces(conn, account_id, now, Some(&b.id))?;
                let taken = still
                    .iter()
                    .filter(|r| leases::covered(&others, r.seq, r.mask()))
                    .count() as i64;
                if (still.len() as i64) < b.event_count || taken > 0 {
                    return Err(StoreError::Conflict(format!(
                        "the batch's lease expired and {} of its {} events were handed to another batch; \
                         nothing was deleted",
                        (b.event_count - still.len() as i64 + taken).min(b.event_count),
                        b.event_count
                    )));
                }
            }
            let counts = member_counts(conn, account_id, &b, &members)?;
            let lower: BTreeMap<&str, i64> = counts.iter().map(|(t, n)| (t.as_str(), -n)).collect();
            adjust_depth(conn, account_id, &lower)?;
            ack(conn, account_id, &b.id, &counts)?;
            Ok(counts
                .into_iter()
                .filter_map(|(t, n)| Some((t.parse::<Trigger>().ok()?, n)))
                .collect())
        })
    }

    /// Releases a batch: its events return to the queue at once.
    pub fn release(&self, account_id: i64, batch_id: &str) -> StoreResult<i64> {
        let now = now_ms();
        self.write_begun_with(&claims_begin(account_id), |conn| {
            let b = find_batch(conn, account_id, batch_id)?;
            match b.state.as_str() {
                RELEASED => return Ok(0),
                READ | ACKED => return Err(StoreError::Conflict("the batch was already marked read".into())),
                _ => {}
            }
            // What is available again now: its events that still exist and
            // that no other batch took after its lease ran out.
            let still = member_rows(conn, account_id, &b.members())?;
            let others = open_pieces(conn, account_id, now, Some(&b.id))?;
            let released = still
                .iter()
                .filter(|r| !leases::covered(&others, r.seq, r.mask()))
                .count() as i64;
            mark_released(conn, account_id, &b.id, released)?;
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
}
