//! Ingest: events are stored in the history and routed to their trigger's
//! destination (the pull queue, or a delivery for the worker) at once, so
//! a 2xx means both are committed.
//!
//! A group of requests (see `group.rs`, the only caller) is planned here:
//! each event's route comes from its trigger's configuration. Each backend
//! then writes the plan its own way:
//! - SQLite ([`sqlite`]): one `BEGIN IMMEDIATE` transaction of chunked
//!   inserts (one writer, statements in the same process: round trips cost
//!   nothing);
//! - PostgreSQL ([`postgres`]): one statement for the whole group (arrays
//!   unnested in data-modifying CTEs), committed on its own: two round trips
//!   per group (the configuration read and that statement) instead of one
//!   per table and a `BEGIN` and a `COMMIT`.

mod postgres;
mod sqlite;

use std::collections::HashMap;

use diesel::prelude::*;

use super::push::parcels::period_end;
use super::push::{OPEN, PENDING};
use super::schema::trigger_configs;
use super::triggers::{to_map, Row};
use super::{Backend, DbConn, Store, StoreError};
use crate::domain::{Destination, NewEvent, Trigger, TriggerConfig};
use crate::on_conn;

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

/// One request's events, as handed to [`Store::ingest_group`].
pub struct IngestJob {
    pub account_id: i64,
    pub events: Vec<NewEvent>,
    /// The hash of the API key the request came with (None: the operator):
    /// its events are stored only if the key is live when they are written.
    pub key_hash: Option<String>,
}

/// Where an event goes besides the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// The pull queue.
    Pull,
    /// A delivery for the worker (http, email, ftp): due at once, or
    /// (digests, FTP files: `period_ms`) open until its period ends.
    Deliver { transport: &'a str, period_ms: Option<i64> },
    /// The history only.
    Keep,
}

/// One event of a group, with its request (index into the jobs) and route.
struct Planned<'a> {
    job: usize,
    account_id: i64,
    event: &'a NewEvent,
    route: Route<'a>,
}

type Configs = HashMap<i64, HashMap<Trigger, TriggerConfig>>;

/// The trigger configurations of the group's accounts, in one query.
fn load_configs(conn: &mut DbConn, jobs: &[IngestJob]) -> QueryResult<Configs> {
    let mut accounts: Vec<i64> = jobs.iter().map(|j| j.account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let rows: Vec<(i64, Row)> = on_conn!(conn, |c| trigger_configs::table
        .filter(trigger_configs::account_id.eq_any(&accounts))
        .select((
            trigger_configs::account_id,
            (
                trigger_configs::trigger,
                trigger_configs::destination,
                trigger_configs::settings,
            ),
        ))
        .load(c))?;
    let mut by_account: HashMap<i64, Vec<Row>> = HashMap::new();
    for (account, row) in rows {
        by_account.entry(account).or_default().push(row);
    }
    Ok(by_account.into_iter().map(|(a, rows)| (a, to_map(rows))).collect())
}

/// Each event of the jobs not `skipped`, in request order, with its route.
fn plan<'a>(jobs: &'a [IngestJob], configs: &'a Configs, skipped: impl Fn(usize) -> bool) -> Vec<Planned<'a>> {
    jobs.iter()
        .enumerate()
        .filter(|(j, _)| !skipped(*j))
        .flat_map(|(job, j)| {
            let config = configs.get(&j.account_id);
            j.events.iter().map(move |event| Planned {
                job,
                account_id: j.account_id,
                event,
                route: route(config.and_then(|m| m.get(&event.trigger))),
            })
        })
        .collect()
}

/// An event's route under its trigger's configuration (None: the default,
/// the pull queue).
fn route(config: Option<&TriggerConfig>) -> Route<'_> {
    let Some(config) = config else {
        return Route::Pull;
    };
    if config.destination == Destination::Pull {
        return Route::Pull;
    }
    if !config.destination.is_delivered() {
        return Route::Keep;
    }
    Route::Deliver {
        transport: config.destination.as_str(),
        period_ms: config.period_ms(),
    }
}

/// A new delivery's status and due time: `pending` at once, or `open`
/// until the end of its period (PostgreSQL's ingest statement computes
/// the same in SQL).
fn due(period_ms: Option<i64>, received_at_ms: i64) -> (&'static str, i64) {
    match period_ms {
        Some(p) => (OPEN, period_end(received_at_ms, p)),
        None => (PENDING, received_at_ms),
    }
}

/// Each job's outcome: `revoked[j]` says job j's key was not live (none of
/// its events counts), `stored` whether a planned event was written (not a
/// duplicate).
fn tally(
    jobs: &[IngestJob],
    planned: &[Planned],
    revoked: &[bool],
    stored: impl Fn(&Planned) -> bool,
) -> Vec<IngestOutcome> {
    let mut outcomes: Vec<IngestOutcome> = revoked
        .iter()
        .map(|r| IngestOutcome {
            key_revoked: *r,
            ..IngestOutcome::default()
        })
        .collect();
    debug_assert_eq!(outcomes.len(), jobs.len());
    for p in planned.iter().filter(|p| !revoked[p.job]) {
        let o = &mut outcomes[p.job];
        if !stored(p) {
            o.duplicates += 1;
            continue;
        }
        o.accepted += 1;
        match o.by_trigger.iter_mut().find(|(t, _)| *t == p.event.trigger) {
            Some((_, n)) => *n += 1,
            None => o.by_trigger.push((p.event.trigger, 1)),
        }
        match p.route {
            Route::Pull => o.queued += 1,
            Route::Deliver { .. } => o.pushed += 1,
            Route::Keep => {}
        }
    }
    outcomes
}

/// Whose keys are revoked: job j's key (if any) is `dead`.
fn revoked(jobs: &[IngestJob], dead: impl Fn(&str) -> bool) -> Vec<bool> {
    jobs.iter().map(|j| j.key_hash.as_deref().is_some_and(&dead)).collect()
}

impl Store {
    /// Stores the events of several requests (of any accounts) with one
    /// commit for all of them. Events whose `external_id` the account
    /// already used are counted as duplicates and stored nowhere. The
    /// requests are applied in order, so of two events with the same
    /// `(account, external_id)` the first is stored and the later one
    /// counted as a duplicate, whether they came in one request or two.
    /// Returns one outcome per job.
    pub fn ingest_group(&self, jobs: &[IngestJob]) -> Result<Vec<IngestOutcome>, StoreError> {
        match self.backend {
            Backend::Postgres => self.write_ingest_statement(|conn| postgres::ingest(conn, jobs)),
            Backend::Sqlite => self.write_ingest(|conn| sqlite::ingest(conn, jobs)),
        }
    }
}
