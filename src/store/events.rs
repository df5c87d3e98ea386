//! Ingest: events are stored in the history and routed to their trigger's
//! destination in one transaction, so a 2xx means both are committed.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;

use super::bulk::{Col, Unnest};
use super::push::parcels::period_end;
use super::push::{NewDelivery, OPEN, PENDING};
use super::queue_status::adjust_depth;
use super::schema::{api_keys, deliveries, events, pull_queue};
use super::triggers::{load_config_rows, to_map};
use super::{DbConn, Store, StoreError};
use crate::domain::{Destination, NewEvent, Trigger};
use crate::on_conn;

/// Rows per INSERT statement: well under both backends' bind limits.
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

/// Seqs for `n` new queue rows, in order. They are taken before the events
/// are inserted, so each history row records its queue seq (retention looks
/// it up there). PostgreSQL: the queue's sequence; SQLite: a range of the
/// one-row counter `queue_seq` (one writer at a time). Neither gives a seq
/// out twice.
fn next_seqs(conn: &mut DbConn, n: usize) -> QueryResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match conn {
        DbConn::Pg(c) => {
            let rows: Vec<Seq> = diesel::sql_query(format!(
                "SELECT nextval('pull_queue_seq_seq') AS n FROM generate_series(1, {n})"
            ))
            .load(c)?;
            Ok(rows.into_iter().map(|r| r.n).collect())
        }
        DbConn::Sqlite(c) => {
            // Never the largest seq queued plus one: a drained queue would
            // hand out its deleted events' seqs again (migration `queue_seq`).
            let rows: Vec<Seq> =
                diesel::sql_query(format!("UPDATE queue_seq SET last = last + {n} RETURNING last AS n")).load(c)?;
            let last = rows.first().map(|r| r.n).ok_or(diesel::result::Error::NotFound)?;
            Ok((last - n as i64 + 1..=last).collect())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// How many went to the pull queue (long-pollers care).
    pub queued: usize,
    /// How many became deliveries (http, email, ftp).
    pub pushed: usize,
    /// Accepted events per trigger, for metrics.
    pub by_trigger: Vec<(Trigger, usize)>,
    /// The request's API key was no longer live at the commit (revoked):
    /// none of its events was stored.
    pub key_revoked: bool,
}

/// Inserts a chunk's events into the history with their queue seqs (None:
/// not queued). Returns the ids actually inserted when an `external_id`
/// could collide (`ON CONFLICT DO NOTHING`), None when all were inserted.
fn insert_events(
    conn: &mut DbConn,
    chunk: &[(usize, i64, &NewEvent)],
    seqs: &[Option<i64>],
) -> QueryResult<Option<HashSet<String>>> {
    let mut rows: Vec<EventRow> = chunk
        .iter()
        .zip(seqs)
        .map(|(&(_, account_id, e), seq)| EventRow {
            account_id,
            id: &e.id,
            trigger: e.trigger.as_str(),
            received_at: e.received_at_ms,
            external_id: e.external_id.as_deref(),
            payload: &e.payload,
            seq: *seq,
        })
        .collect();
    // Only an external_id can collide; without one, skip RETURNING.
    let may_collide = chunk.iter().any(|(_, _, e)| e.external_id.is_some());
    if let DbConn::Pg(c) = conn {
        // In key order, so two writers inserting the same new external_ids
        // take their index locks in the same order instead of deadlocking
        // (a deadlock still possible across chunks is retried: `write_ingest`).
        // Stable: of two equal keys in the chunk, the first is stored.
        if may_collide {
            rows.sort_by(|a, b| (a.account_id, a.external_id).cmp(&(b.account_id, b.external_id)));
        }
        let cols = vec![
            Col::Int(rows.iter().map(|r| r.account_id).collect()),
            Col::Str(rows.iter().map(|r| r.id).collect()),
            Col::Str(rows.iter().map(|r| r.trigger).collect()),
            Col::Int(rows.iter().map(|r| r.received_at).collect()),
            Col::OptStr(rows.iter().map(|r| r.external_id).collect()),
            Col::Str(rows.iter().map(|r| r.payload).collect()),
            Col::OptInt(rows.iter().map(|r| r.seq).collect()),
        ];
        const COLUMNS: &str = "account_id, id, trigger, received_at, external_id, payload, seq";
        if may_collide {
            let ids: Vec<String> =
                Unnest::new("events", COLUMNS, cols, "ON CONFLICT DO NOTHING RETURNING id").load(c)?;
            return Ok(Some(ids.into_iter().collect()));
        }
        Unnest::new("events", COLUMNS, cols, "").execute(c)?;
        return Ok(None);
    }
    if may_collide {
        let ids: Vec<String> = on_conn!(conn, |c| diesel::insert_into(events::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .returning(events::id)
            .get_results(c))?;
        Ok(Some(ids.into_iter().collect()))
    } else {
        on_conn!(conn, |c| diesel::insert_into(events::table).values(&rows).execute(c))?;
        Ok(None)
    }
}

fn insert_queue(conn: &mut DbConn, rows: &[QueueRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if let DbConn::Pg(c) = conn {
        let cols = vec![
            Col::Int(rows.iter().map(|r| r.account_id).collect()),
            Col::Int(rows.iter().map(|r| r.seq).collect()),
            Col::Str(rows.iter().map(|r| r.trigger).collect()),
            Col::Int(rows.iter().map(|r| r.received_at).collect()),
            Col::Str(rows.iter().map(|r| r.event_id).collect()),
        ];
        Unnest::new(
            "pull_queue",
            "account_id, seq, trigger, received_at, event_id",
            cols,
            "",
        )
        .execute(c)?;
        return Ok(());
    }
    on_conn!(conn, |c| diesel::insert_into(pull_queue::table).values(rows).execute(c))?;
    Ok(())
}

fn insert_deliveries(conn: &mut DbConn, rows: &[NewDelivery]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if let DbConn::Pg(c) = conn {
        let cols = vec![
            Col::Int(rows.iter().map(|r| r.account_id).collect()),
            Col::Str(rows.iter().map(|r| r.trigger).collect()),
            Col::Str(rows.iter().map(|r| r.transport).collect()),
            Col::Str(rows.iter().map(|r| r.event_id).collect()),
            Col::Str(rows.iter().map(|r| r.status).collect()),
            Col::Int(rows.iter().map(|r| r.attempts).collect()),
            Col::Int(rows.iter().map(|r| r.next_at).collect()),
            Col::Int(rows.iter().map(|r| r.created_at).collect()),
            Col::Int(rows.iter().map(|r| r.updated_at).collect()),
        ];
        Unnest::new(
            "deliveries",
            "account_id, trigger, transport, event_id, status, attempts, next_at, created_at, updated_at",
            cols,
            "",
        )
        .execute(c)?;
        return Ok(());
    }
    on_conn!(conn, |c| diesel::insert_into(deliveries::table).values(rows).execute(c))?;
    Ok(())
}

/// One request's events, as handed to [`Store::ingest_group`].
pub struct IngestJob {
    pub account_id: i64,
    pub events: Vec<NewEvent>,
    /// The hash of the API key the request came with (None: the operator):
    /// its events are stored only if the key is live in the transaction.
    pub key_hash: Option<String>,
}

/// Which of the jobs' API keys are live (not revoked) now: one query for
/// the whole group. The request was authenticated from a cache of keys
/// verified before (`auth/key_cache.rs`); this makes a revocation count
/// from its commit, whichever node or process made it.
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

impl Store {
    /// Stores the events of several requests (of any accounts) in one
    /// transaction: one commit for all of them (see `group.rs`, the only
    /// caller). Events whose `external_id` the account already used are
    /// counted as duplicates and stored nowhere. The requests are applied in
    /// order, so of two events with the same `(account, external_id)` the
    /// first is stored and the later one counted as a duplicate, whether
    /// they came in one request or two. Returns one outcome per job.
    pub fn ingest_group(&self, jobs: &[IngestJob]) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write_ingest(|conn| {
            let mut depth: BTreeMap<i64, BTreeMap<&str, i64>> = BTreeMap::new();
            let mut outcomes = vec![IngestOutcome::default(); jobs.len()];
            let live = live_keys(conn, jobs)?;
            for (job, o) in jobs.iter().zip(&mut outcomes) {
                o.key_revoked = job.key_hash.as_ref().is_some_and(|h| !live.contains(h));
            }
            let mut configs = HashMap::new();
            for job in jobs {
                if let Entry::Vacant(v) = configs.entry(job.account_id) {
                    let rows = on_conn!(&mut *conn, |c| load_config_rows!(c, job.account_id))?;
                    v.insert(to_map(rows));
                }
            }
            let destination = |account: i64, trigger: Trigger| {
                configs
                    .get(&account)
                    .and_then(|m| m.get(&trigger))
                    .map(|t| t.destination)
                    .unwrap_or_default()
            };
            let all: Vec<(usize, i64, &NewEvent)> = jobs
                .iter()
                .enumerate()
                .filter(|(j, _)| !outcomes[*j].key_revoked)
                .flat_map(|(j, job)| job.events.iter().map(move |e| (j, job.account_id, e)))
                .collect();
            for chunk in all.chunks(CHUNK) {
                let pull: Vec<bool> = chunk
                    .iter()
                    .map(|&(_, a, e)| destination(a, e.trigger) == Destination::Pull)
                    .collect();
                let mut seqs = next_seqs(conn, pull.iter().filter(|p| **p).count())?.into_iter();
                let seq_of: Vec<Option<i64>> = pull.iter().map(|p| if *p { seqs.next() } else { None }).collect();
                let inserted = insert_events(conn, chunk, &seq_of)?;
                for &(j, _, _) in chunk {
                    outcomes[j].duplicates += 1;
                }
                let mut queue: Vec<QueueRow> = Vec::new();
                let mut push: Vec<NewDelivery> = Vec::new();
                for (i, &(j, account_id, e)) in chunk.iter().enumerate() {
                    if !inserted.as_ref().is_none_or(|s| s.contains(&e.id)) {
                        continue;
                    }
                    let o = &mut outcomes[j];
                    o.duplicates -= 1;
                    o.accepted += 1;
                    match o.by_trigger.iter_mut().find(|(t, _)| *t == e.trigger) {
                        Some((_, n)) => *n += 1,
                        None => o.by_trigger.push((e.trigger, 1)),
                    }
                    if let Some(seq) = seq_of[i] {
                        o.queued += 1;
                        *depth
                            .entry(account_id)
                            .or_default()
                            .entry(e.trigger.as_str())
                            .or_default() += 1;
                        queue.push(QueueRow {
                            account_id,
                            seq,
                            trigger: e.trigger.as_str(),
                            received_at: e.received_at_ms,
                            event_id: &e.id,
                        });
                        continue;
                    }
                    // Events of http, email and ftp triggers become deliveries for
                    // the worker: due at once, or (digests, FTP files) open until
                    // their period ends.
                    let Some(config) = configs.get(&account_id).and_then(|m| m.get(&e.trigger)) else {
                        continue;
                    };
                    if !config.destination.is_delivered() {
                        continue;
                    }
                    let (status, next_at) = match config.period_ms() {
                        Some(p) => (OPEN, period_end(e.received_at_ms, p)),
                        None => (PENDING, e.received_at_ms),
                    };
                    o.pushed += 1;
                    push.push(NewDelivery {
                        account_id,
                        trigger: e.trigger.as_str(),
                        transport: config.destination.as_str(),
                        event_id: &e.id,
                        status,
                        attempts: 0,
                        next_at,
                        created_at: e.received_at_ms,
                        updated_at: e.received_at_ms,
                    });
                }
                insert_queue(conn, &queue)?;
                insert_deliveries(conn, &push)?;
            }
            // Last, so the depth rows are locked only while committing.
            for (account_id, delta) in &depth {
                adjust_depth(conn, *account_id, delta)?;
            }
            Ok(outcomes)
        })
    }
}
