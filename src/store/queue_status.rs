//! The pull queue at a glance (`GET /v1/queue`, `/metrics`) without
//! counting it: `queue_depth` holds the number of queued events per account
//! and trigger, changed in the same transaction as the rows (ingest adds,
//! mark-read and expiry subtract), and each open batch records its member
//! count per trigger. So a status reads a handful of short rows at any
//! depth; only the oldest pending event is looked up, at the queue's head.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::upsert::excluded;

use super::leases::{self, Mask, Piece};
use super::queue_rows::{open_pieces, BatchRow, SeqTrigger, OPEN};
use super::schema::{batches, queue_depth};
use super::{DbConn, Store, StoreResult};
use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::on_conn;

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

/// Adds `delta` events per trigger to the account's depth rows (negative:
/// removes). In trigger order, so concurrent transactions lock the rows in
/// one order.
pub(super) fn adjust_depth<K: AsRef<str> + Ord>(
    conn: &mut DbConn,
    account_id: i64,
    delta: &BTreeMap<K, i64>,
) -> QueryResult<()> {
    for (trigger, n) in delta.iter().filter(|(_, n)| **n != 0) {
        on_conn!(&mut *conn, |c| diesel::insert_into(queue_depth::table)
            .values((
                queue_depth::account_id.eq(account_id),
                queue_depth::trigger.eq(trigger.as_ref()),
                queue_depth::events.eq(*n),
            ))
            .on_conflict((queue_depth::account_id, queue_depth::trigger))
            .do_update()
            .set(queue_depth::events.eq(queue_depth::events + excluded(queue_depth::events)))
            .execute(c))?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct ReceivedAt {
    #[diesel(sql_type = BigInt)]
    received_at: i64,
}

/// received_at of the account's first event no open batch leases.
fn oldest_pending(conn: &mut DbConn, account_id: i64, pieces: &[Piece]) -> QueryResult<Option<i64>> {
    for seg in leases::segments(pieces, leases::ALL, 0) {
        // Every trigger allowed (no piece covers the stretch): no trigger
        // condition, which PostgreSQL would count against the estimate.
        let triggers = match seg.allowed {
            leases::ALL => String::new(),
            some => format!(
                " AND trigger IN ({})",
                leases::triggers_in(some)
                    .map(|t| format!("'{}'", t.as_str()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let sql = format!(
            "SELECT received_at FROM pull_queue WHERE account_id = {account_id} AND seq BETWEEN {} AND {}{triggers} \
             ORDER BY seq LIMIT 1",
            seg.lo, seg.hi,
        );
        let row: Vec<ReceivedAt> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
        if let Some(r) = row.first() {
            return Ok(Some(r.received_at));
        }
    }
    Ok(None)
}

/// An open batch as a status shows it (without its member list).
#[derive(Queryable, Selectable)]
#[diesel(table_name = batches)]
struct OpenHead {
    id: String,
    consumer: String,
    expires_at: i64,
    event_count: i64,
    trigger_counts: Option<String>,
}

/// The account's open, unexpired batches, oldest first, each with its
/// member count per trigger: one short row per batch.
fn open_batches(conn: &mut DbConn, account_id: i64, now: i64) -> QueryResult<Vec<(OpenHead, BTreeMap<String, i64>)>> {
    let heads: Vec<OpenHead> = on_conn!(&mut *conn, |c| batches::table
        .filter(batches::account_id.eq(account_id))
        .filter(batches::state.eq(OPEN))
        .filter(batches::expires_at.gt(now))
        .order(batches::created_at)
        .select(OpenHead::as_select())
        .load(c))?;
    let mut out = Vec::with_capacity(heads.len());
    for h in heads {
        let counts = match &h.trigger_counts {
            Some(json) => serde_json::from_str(json).unwrap_or_default(),
            None => counted_members(conn, account_id, &h.id)?,
        };
        out.push((h, counts));
    }
    Ok(out)
}

/// Member count per trigger of a batch made before the counts were
/// recorded: counts its members' rows.
fn counted_members(conn: &mut DbConn, account_id: i64, id: &str) -> QueryResult<BTreeMap<String, i64>> {
    let b: BatchRow = on_conn!(&mut *conn, |c| batches::table
        .filter(batches::account_id.eq(account_id))
        .filter(batches::id.eq(id))
        .select(BatchRow::as_select())
        .first(c))?;
    let cond = format!(
        "account_id = {account_id} AND {}",
        super::queue_rows::seq_in(conn, &b.members())
    );
    let rows: Vec<SeqTrigger> = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
        "SELECT seq, trigger FROM pull_queue WHERE {cond}"
    ))
    .load(c))?;
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r.trigger).or_default() += 1;
    }
    Ok(counts)
}

/// The account's queued events per trigger (its `queue_depth` rows).
fn depth_rows(conn: &mut DbConn, account_id: i64) -> QueryResult<Vec<(String, i64)>> {
    on_conn!(conn, |c| queue_depth::table
        .filter(queue_depth::account_id.eq(account_id))
        .select((queue_depth::trigger, queue_depth::events))
        .load(c))
}

/// Events of the `wanted` triggers waiting to be fetched (not in an open
/// batch), from the counters: the account's depth less what its open
/// batches hold. A handful of short rows at any depth, where counting the
/// rows themselves walked up to 10,000 index entries per fetch.
pub(super) fn pending_of(conn: &mut DbConn, account_id: i64, now: i64, wanted: Mask) -> QueryResult<i64> {
    let is_wanted = |name: &str| name.parse::<Trigger>().is_ok_and(|t| wanted & leases::bit(t) != 0);
    let depth = depth_rows(conn, account_id)?;
    let mut n: i64 = depth.iter().filter(|(t, _)| is_wanted(t)).map(|(_, n)| n).sum();
    for (_, counts) in open_batches(conn, account_id, now)? {
        n -= counts.iter().filter(|(t, _)| is_wanted(t)).map(|(_, n)| n).sum::<i64>();
    }
    Ok(n.max(0))
}

impl Store {
    /// Server-wide figures for /metrics: (stored pull events, open batches,
    /// received_at of the oldest pending event of any account: not in an
    /// open batch, nor marked read and waiting for the sweeper).
    pub fn queue_totals(&self, now: i64) -> StoreResult<(i64, i64, Option<i64>)> {
        self.read_by_index(|conn| {
            let (depth, open, accounts) = on_conn!(&mut *conn, |c| {
                let depth: i64 = queue_depth::table
                    .select(queue_depth::events)
                    .load::<i64>(c)?
                    .into_iter()
                    .sum();
                let open: i64 = batches::table
                    .filter(batches::state.eq(OPEN))
                    .filter(batches::expires_at.gt(now))
                    .count()
                    .get_result(c)?;
                let accounts: Vec<i64> = super::schema::accounts::table
                    .select(super::schema::accounts::id)
                    .load(c)?;
                QueryResult::Ok((depth, open, accounts))
            })?;
            let mut oldest: Option<i64> = None;
            for a in accounts {
                let pieces = open_pieces(conn, a, now, None)?;
                if let Some(at) = oldest_pending(conn, a, &pieces)? {
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
            }
            Ok((depth, open, oldest))
        })
    }

    pub fn queue_status(&self, account_id: i64) -> StoreResult<QueueStatus> {
        let now = now_ms();
        self.read_by_index(|conn| {
            let depth = depth_rows(conn, account_id)?;
            let open = open_batches(conn, account_id, now)?;
            let mut triggers: Vec<TriggerDepth> = Trigger::ALL
                .iter()
                .map(|&trigger| TriggerDepth {
                    trigger,
                    pending: 0,
                    in_flight: 0,
                })
                .collect();
            let find = |ts: &mut Vec<TriggerDepth>, name: &str| ts.iter_mut().position(|d| d.trigger.as_str() == name);
            for (name, n) in depth {
                if let Some(i) = find(&mut triggers, &name) {
                    triggers[i].pending += n;
                }
            }
            for (_, counts) in &open {
                for (name, n) in counts {
                    if let Some(i) = find(&mut triggers, name) {
                        triggers[i].pending -= n;
                        triggers[i].in_flight += n;
                    }
                }
            }
            for d in &mut triggers {
                d.pending = d.pending.max(0);
            }
            let pieces = open_pieces(conn, account_id, now, None)?;
            let oldest = oldest_pending(conn, account_id, &pieces)?;
            Ok(QueueStatus {
                triggers,
                oldest_pending_ms: oldest,
                open_batches: open
                    .into_iter()
                    .map(|(b, _)| OpenBatch {
                        id: b.id,
                        consumer: b.consumer,
                        expires_at_ms: b.expires_at,
                        events: b.event_count,
                    })
                    .collect(),
            })
        })
    }
}
