//! The SQLite write of an ingest group: one `BEGIN IMMEDIATE` transaction
//! (the caller's) of chunked multi-row inserts. Seqs are taken before the
//! events are inserted, so each history row records its queue seq
//! (retention looks it up there).

use std::collections::{BTreeMap, HashSet};

use diesel::prelude::*;

use super::{due, load_configs, plan, revoked, tally, IngestJob, IngestOutcome, Planned, Route};
use crate::on_conn;
use crate::store::push::NewDelivery;
use crate::store::queue_status::adjust_depth;
use crate::store::schema::{api_keys, deliveries, events, pull_queue};
use crate::store::{DbConn, StoreResult};

/// Rows per INSERT statement: well under SQLite's bind limit.
const CHUNK: usize = 1000;

#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct EventRow<'a> {
    account_id: i64,
    id: &'a str,
    trigger: &'a str,
    received_at: i64,
    external_id: Option<&'a str>,
    payload: &'a str,
    seq: Option<i64>,
}

/// A queued event: a reference to its history row (the payload is stored
/// there only), with what the queue's indexes and leases need.
#[derive(Insertable)]
#[diesel(table_name = pull_queue)]
struct QueueRow<'a> {
    account_id: i64,
    seq: i64,
    trigger: &'a str,
    received_at: i64,
    event_id: &'a str,
}

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Seqs for `n` new queue rows, in order: a range of the one-row counter
/// `queue_seq` (never the largest seq queued plus one: a drained queue
/// would hand out its deleted events' seqs again, migration `queue_seq`).
fn next_seqs(conn: &mut DbConn, n: usize) -> QueryResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<Seq> = on_conn!(conn, |c| diesel::sql_query(format!(
        "UPDATE queue_seq SET last = last + {n} RETURNING last AS n"
    ))
    .load(c))?;
    let last = rows.first().map(|r| r.n).ok_or(diesel::result::Error::NotFound)?;
    Ok((last - n as i64 + 1..=last).collect())
}

/// Which of the jobs' API keys are live (not revoked) now: one query for
/// the whole group. The request was authenticated from a cache of keys
/// verified before (`auth/key_cache.rs`); this makes a revocation count
/// from its commit, whichever process made it.
fn live_keys(conn: &mut DbConn, jobs: &[IngestJob]) -> QueryResult<HashSet<String>> {
    let mut hashes: Vec<&str> = jobs.iter().filter_map(|j| j.key_hash.as_deref()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.is_empty() {
        return Ok(HashSet::new());
    }
    let live: Vec<String> = on_conn!(conn, |c| api_keys::table
        .filter(api_keys::key_hash.eq_any(&hashes))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::key_hash)
        .load(c))?;
    Ok(live.into_iter().collect())
}

/// Inserts a chunk's events into the history with their queue seqs.
/// Returns the ids of those not inserted (their `external_id` was taken).
fn insert_events(conn: &mut DbConn, chunk: &[Planned], seqs: &[Option<i64>]) -> QueryResult<HashSet<String>> {
    let rows: Vec<EventRow> = chunk
        .iter()
        .zip(seqs)
        .map(|(p, seq)| EventRow {
            account_id: p.account_id,
            id: &p.event.id,
            trigger: p.event.trigger.as_str(),
            received_at: p.event.received_at_ms,
            external_id: p.event.external_id.as_deref(),
            payload: &p.event.payload,
            seq: *seq,
        })
        .collect();
    // Only an external_id can collide; without one, skip RETURNING.
    if chunk.iter().all(|p| p.event.external_id.is_none()) {
        on_conn!(conn, |c| diesel::insert_into(events::table).values(&rows).execute(c))?;
        return Ok(HashSet::new());
    }
    let ids: HashSet<String> = on_conn!(conn, |c| diesel::insert_into(events::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(events::id)
        .get_results::<String>(c))?
    .into_iter()
    .collect();
    Ok(chunk
        .iter()
        .filter(|p| !ids.contains(&p.event.id))
        .map(|p| p.event.id.clone())
        .collect())
}

/// Writes the group in the caller's transaction.
pub(super) fn ingest(conn: &mut DbConn, jobs: &[IngestJob]) -> StoreResult<Vec<IngestOutcome>> {
    let live = live_keys(conn, jobs)?;
    let revoked = revoked(jobs, |k| !live.contains(k));
    let configs = load_configs(conn, jobs)?;
    let planned = plan(jobs, &configs, |j| revoked[j]);
    let mut duplicates: HashSet<String> = HashSet::new();
    let mut depth: BTreeMap<i64, BTreeMap<&str, i64>> = BTreeMap::new();
    for chunk in planned.chunks(CHUNK) {
        let pulled = chunk.iter().filter(|p| p.route == Route::Pull).count();
        let mut seqs = next_seqs(conn, pulled)?.into_iter();
        let seq_of: Vec<Option<i64>> = chunk
            .iter()
            .map(|p| if p.route == Route::Pull { seqs.next() } else { None })
            .collect();
        let dups = insert_events(conn, chunk, &seq_of)?;
        let mut queue: Vec<QueueRow> = Vec::new();
        let mut push: Vec<NewDelivery> = Vec::new();
        for (p, seq) in chunk.iter().zip(&seq_of) {
            if dups.contains(&p.event.id) {
                continue;
            }
            let e = p.event;
            match (p.route, seq) {
                (Route::Pull, Some(seq)) => {
                    *depth
                        .entry(p.account_id)
                        .or_default()
                        .entry(e.trigger.as_str())
                        .or_default() += 1;
                    queue.push(QueueRow {
                        account_id: p.account_id,
                        seq: *seq,
                        trigger: e.trigger.as_str(),
                        received_at: e.received_at_ms,
                        event_id: &e.id,
                    });
                }
                (Route::Deliver { transport, period_ms }, _) => {
                    let (status, next_at) = due(period_ms, e.received_at_ms);
                    push.push(NewDelivery {
                        account_id: p.account_id,
                        trigger: e.trigger.as_str(),
                        transport,
                        event_id: &e.id,
                        status,
                        attempts: 0,
                        next_at,
                        created_at: e.received_at_ms,
                        updated_at: e.received_at_ms,
                    })
                }
                _ => {}
            }
        }
        duplicates.extend(dups);
        if !queue.is_empty() {
            on_conn!(conn, |c| diesel::insert_into(pull_queue::table)
                .values(&queue)
                .execute(c))?;
        }
        if !push.is_empty() {
            on_conn!(conn, |c| diesel::insert_into(deliveries::table)
                .values(&push)
                .execute(c))?;
        }
    }
    for (account_id, delta) in &depth {
        adjust_depth(conn, *account_id, delta)?;
    }
    Ok(tally(jobs, &planned, &revoked, |p| !duplicates.contains(&p.event.id)))
}
