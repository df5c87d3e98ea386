//! The PostgreSQL write of an ingest group: one statement, sent outside any
//! transaction so that it commits on its own (the caller runs it again
//! whole when the database rolls it back, e.g. for a deadlock).
//!
//! Its parameters are arrays: one element per event, in request order, and
//! one per destination that gets deliveries. The history insert draws each
//! pulled event's seq as it reads the arrays, in order (the subquery behind
//! `OFFSET 0` is evaluated before any sort), so fetch order is ingest
//! order; the rows it returns (no payloads) feed the pull queue, the
//! deliveries and the queue depth. Nothing in it joins on the events, so
//! its plan cannot turn quadratic on a large group.
//!
//! The API keys are checked in the statement, so a revocation counts from
//! its commit: if any key of the group is no longer live, the statement
//! writes nothing and returns those keys, and the group is written again
//! without their requests (rare: a revocation during traffic).
//!
//! When an event carries an `external_id`, the history rows are inserted
//! in `(account, external_id, request order)`: two writers inserting the
//! same new keys take their index locks in one order, and of two equal
//! keys the first is stored (the second is `ON CONFLICT DO NOTHING`). The
//! statement then returns the ids it inserted; without external ids every
//! event is new (ids are fresh UUIDs).
//!
//! Depth rows are updated in `(account, trigger)` order, and last: the
//! final `SELECT` reads every other CTE, so PostgreSQL runs them while it
//! computes the result, and `depth`, which it does not read, after it. The
//! depth rows are the only rows two writers share, and are locked only
//! from then to the commit (first, they serialised two writers' whole
//! statements: 1,000-event batches 87-104k ev/s instead of 114-118k).

use std::collections::{BTreeMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};

use super::{load_configs, plan, revoked, tally, IngestJob, IngestOutcome, Route};
use crate::store::bulk::{Arrays, Col};
use crate::store::{DbConn, StoreError, StoreResult};

/// The statement, with the history insert's order and what it returns as
/// "inserted ids" as parameters of the text.
macro_rules! ingest_sql {
    ($order:literal, $inserted:literal) => {
        concat!(
            r#"
WITH dead AS (
    SELECT k FROM unnest(?) AS k
    WHERE NOT EXISTS (SELECT 1 FROM api_keys a WHERE a.key_hash = k AND a.revoked_at IS NULL)
), ins AS (
    INSERT INTO events (account_id, id, trigger, received_at, external_id, payload, seq)
    SELECT account_id, id, trigger, received_at, external_id, payload, seq FROM (
        SELECT u.*, CASE WHEN u.pull THEN nextval('pull_queue_seq_seq') END AS seq
        FROM unnest(?, ?, ?, ?, ?, ?, ?) WITH ORDINALITY
            AS u (account_id, id, trigger, received_at, external_id, payload, pull, ord)
        WHERE NOT EXISTS (SELECT 1 FROM dead)
        OFFSET 0
    ) s "#,
            $order,
            r#"
    RETURNING account_id, id, trigger, received_at, seq
), queued AS (
    INSERT INTO pull_queue (account_id, seq, trigger, received_at, event_id)
    SELECT account_id, seq, trigger, received_at, id FROM ins WHERE seq IS NOT NULL
    RETURNING 1
), delivered AS (
    -- status and next_at as `due` (mod.rs) computes them on SQLite
    -- (received_at is never negative: `/` is its Euclidean division).
    INSERT INTO deliveries (account_id, trigger, transport, event_id, status, attempts, next_at, created_at, updated_at)
    SELECT i.account_id, i.trigger, r.transport, i.id,
        CASE WHEN r.period IS NULL THEN 'pending' ELSE 'open' END, 0,
        CASE WHEN r.period IS NULL THEN i.received_at
            ELSE (i.received_at / GREATEST(r.period, 1) + 1) * GREATEST(r.period, 1) END,
        i.received_at, i.received_at
    FROM ins i JOIN unnest(?, ?, ?, ?) AS r (account_id, trigger, transport, period)
        ON r.account_id = i.account_id AND r.trigger = i.trigger
    WHERE i.seq IS NULL
    ORDER BY i.id
    RETURNING 1
), depth AS (
    INSERT INTO queue_depth AS d (account_id, trigger, events)
    SELECT account_id, trigger, n FROM (
        SELECT account_id, trigger, COUNT(*) AS n FROM ins WHERE seq IS NOT NULL GROUP BY account_id, trigger
    ) g
    ORDER BY account_id, trigger
    ON CONFLICT (account_id, trigger) DO UPDATE SET events = d.events + excluded.events
)
SELECT (SELECT COUNT(*) FROM ins), "#,
            $inserted,
            r#", ARRAY(SELECT k FROM dead), (SELECT COUNT(*) FROM queued), (SELECT COUNT(*) FROM delivered)
"#
        )
    };
}

/// No event has an `external_id`: inserted in request order, all new.
/// (No `ON CONFLICT` clause: only an `external_id` can collide, and a
/// speculative insertion probes the unique indexes first and wrote 6 % more
/// WAL in the ingest bench.)
const INGEST: &str = ingest_sql!("", "ARRAY[]::text[]");
/// Some have: inserted in key order, and the ids inserted returned.
const INGEST_DEDUP: &str = ingest_sql!(
    "ORDER BY account_id, external_id, ord ON CONFLICT DO NOTHING",
    "ARRAY(SELECT id FROM ins)"
);

/// Writes the group (`conn` outside any transaction: the statement is its
/// own).
pub(super) fn ingest(conn: &mut DbConn, jobs: &[IngestJob]) -> StoreResult<Vec<IngestOutcome>> {
    let configs = load_configs(conn, jobs)?;
    let DbConn::Pg(c) = conn else {
        return Err(StoreError::Db(diesel::result::Error::QueryBuilderError(
            "the PostgreSQL ingest on another backend".into(),
        )));
    };
    let mut dead: HashSet<String> = HashSet::new();
    loop {
        let revoked = revoked(jobs, |k| dead.contains(k));
        let planned = plan(jobs, &configs, |j| revoked[j]);
        let mut keys: Vec<&str> = jobs
            .iter()
            .zip(&revoked)
            .filter(|(_, r)| !**r)
            .filter_map(|(j, _)| j.key_hash.as_deref())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // One row per destination that gets deliveries.
        let mut routes: BTreeMap<(i64, &str), (&str, Option<i64>)> = BTreeMap::new();
        for p in &planned {
            if let Route::Deliver { transport, period_ms } = p.route {
                routes.insert((p.account_id, p.event.trigger.as_str()), (transport, period_ms));
            }
        }
        let dedup = planned.iter().any(|p| p.event.external_id.is_some());
        let cols = vec![
            Col::Str(keys),
            Col::Int(planned.iter().map(|p| p.account_id).collect()),
            Col::Str(planned.iter().map(|p| p.event.id.as_str()).collect()),
            Col::Str(planned.iter().map(|p| p.event.trigger.as_str()).collect()),
            Col::Int(planned.iter().map(|p| p.event.received_at_ms).collect()),
            Col::OptStr(planned.iter().map(|p| p.event.external_id.as_deref()).collect()),
            Col::Str(planned.iter().map(|p| p.event.payload.as_str()).collect()),
            Col::Bool(planned.iter().map(|p| p.route == Route::Pull).collect()),
            Col::Int(routes.keys().map(|(a, _)| *a).collect()),
            Col::Str(routes.keys().map(|(_, t)| *t).collect()),
            Col::Str(routes.values().map(|(t, _)| *t).collect()),
            Col::OptInt(routes.values().map(|(_, p)| *p).collect()),
        ];
        let sql = if dedup { INGEST_DEDUP } else { INGEST };
        let (_, inserted, newly_dead, _, _): (i64, Vec<String>, Vec<String>, i64, i64) =
            Arrays::<(BigInt, Array<Text>, Array<Text>, BigInt, BigInt)>::new(sql, cols).get_result(c)?;
        if !newly_dead.is_empty() {
            // Nothing was written: again without the revoked keys' requests.
            dead.extend(newly_dead);
            continue;
        }
        let inserted: HashSet<String> = inserted.into_iter().collect();
        return Ok(tally(jobs, &planned, &revoked, |p| {
            !dedup || inserted.contains(&p.event.id)
        }));
    }
}
