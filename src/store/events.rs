//! Ingest: events are stored in the history and routed to their trigger's
//! destination in one transaction, so a 2xx means both are committed.

use std::collections::HashSet;

use diesel::prelude::*;

use super::push::{NewDelivery, PENDING};
use super::schema::{deliveries, events, pull_queue};
use super::triggers::{load_config_rows, to_map};
use super::{Store, StoreError};
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
}

#[derive(Insertable)]
#[diesel(table_name = pull_queue)]
struct QueueRow<'a> {
    account_id: i64,
    trigger: &'a str,
    received_at: i64,
    payload: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// How many went to the pull queue (long-pollers care).
    pub queued: usize,
    /// How many became HTTP push deliveries.
    pub pushed: usize,
    /// Accepted events per trigger, for metrics.
    pub by_trigger: Vec<(Trigger, usize)>,
}

impl Store {
    /// Stores valid events for an account. Events whose `external_id` the
    /// account already used are counted as duplicates and stored nowhere.
    pub fn ingest(&self, account_id: i64, batch: &[NewEvent]) -> Result<IngestOutcome, StoreError> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                let configs = to_map(load_config_rows!(c, account_id)?);
                let mut outcome = IngestOutcome::default();
                for chunk in batch.chunks(CHUNK) {
                    let rows: Vec<EventRow> = chunk
                        .iter()
                        .map(|e| EventRow {
                            account_id,
                            id: &e.id,
                            trigger: e.trigger.as_str(),
                            received_at: e.received_at_ms,
                            external_id: e.external_id.as_deref(),
                            payload: &e.payload,
                        })
                        .collect();
                    // Only an external_id can collide; without one, skip RETURNING.
                    let inserted: Option<HashSet<String>> = if chunk.iter().any(|e| e.external_id.is_some()) {
                        let ids: Vec<String> = diesel::insert_into(events::table)
                            .values(&rows)
                            .on_conflict_do_nothing()
                            .returning(events::id)
                            .get_results(c)?;
                        Some(ids.into_iter().collect())
                    } else {
                        diesel::insert_into(events::table).values(&rows).execute(c)?;
                        None
                    };
                    let fresh = |e: &&NewEvent| inserted.as_ref().is_none_or(|s| s.contains(&e.id));
                    let mut n_fresh = 0;
                    for e in chunk.iter().filter(fresh) {
                        n_fresh += 1;
                        match outcome.by_trigger.iter_mut().find(|(t, _)| *t == e.trigger) {
                            Some((_, n)) => *n += 1,
                            None => outcome.by_trigger.push((e.trigger, 1)),
                        }
                    }
                    outcome.accepted += n_fresh;
                    outcome.duplicates += chunk.len() - n_fresh;

                    let queue: Vec<QueueRow> = chunk
                        .iter()
                        .filter(fresh)
                        .filter(|e| {
                            configs.get(&e.trigger).map(|t| t.destination).unwrap_or_default() == Destination::Pull
                        })
                        .map(|e| QueueRow {
                            account_id,
                            trigger: e.trigger.as_str(),
                            received_at: e.received_at_ms,
                            payload: &e.payload,
                        })
                        .collect();
                    if !queue.is_empty() {
                        outcome.queued += diesel::insert_into(pull_queue::table).values(&queue).execute(c)?;
                    }
                    // Events of http triggers become deliveries for the push worker.
                    let push: Vec<NewDelivery> = chunk
                        .iter()
                        .filter(fresh)
                        .filter(|e| {
                            configs
                                .get(&e.trigger)
                                .is_some_and(|t| t.destination == Destination::Http)
                        })
                        .map(|e| NewDelivery {
                            account_id,
                            trigger: e.trigger.as_str(),
                            event_id: &e.id,
                            payload: &e.payload,
                            status: PENDING,
                            attempts: 0,
                            next_at: e.received_at_ms,
                            created_at: e.received_at_ms,
                            updated_at: e.received_at_ms,
                        })
                        .collect();
                    if !push.is_empty() {
                        outcome.pushed += diesel::insert_into(deliveries::table).values(&push).execute(c)?;
                    }
                }
                Ok(outcome)
            })
        })
    }
}
