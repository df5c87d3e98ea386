//! Writing back what each request did: the attempt log, each delivery's new
//! state and each destination's health.

use std::collections::HashMap;

use diesel::prelude::*;

use super::destinations::{DestinationKey, ACTIVE, SUSPENDED};
use super::log::{DEAD, DELIVERED, PENDING};
use crate::domain::time::now_ms;
use crate::on_conn;
use crate::store::bulk::{Col, Unnest};
use crate::store::schema::{deliveries, delivery_attempts, push_destinations};
use crate::store::{DbConn, Store, StoreResult};

/// Longest stored error text and response excerpt.
const MAX_TEXT: usize = 1024;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    Success,
    Failure,
    /// 429/503 with Retry-After: try again at this time; not a failure.
    RetryAfter(i64),
    /// 410: suspend the destination at once.
    Gone,
    /// Failed in a way that is not the destination's fault (an SMTP 4xx,
    /// the relay unreachable): retried on the schedule, not counted toward
    /// suspension.
    Transient,
    /// Not sent (the worker is stopping, or the destination was suspended
    /// meanwhile): give the deliveries back untouched, log nothing.
    Released,
}

/// One request's result (one or several deliveries of one destination).
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub dest: DestinationKey,
    /// (delivery id, failed tries before this one).
    pub deliveries: Vec<(i64, i64)>,
    pub url: String,
    pub attempted_at: i64,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response: Option<String>,
    pub kind: OutcomeKind,
    /// The [`Claim::config_version`](super::Claim::config_version) the request was sent with. When the
    /// configuration changed (or the destination was resumed) since, a
    /// failure does not count against the destination and the deliveries
    /// are tried again at once with the new configuration.
    pub config_version: i64,
}

#[derive(Insertable)]
#[diesel(table_name = delivery_attempts)]
struct NewAttempt<'a> {
    account_id: i64,
    delivery_id: i64,
    attempted_at: i64,
    url: &'a str,
    status_code: Option<i64>,
    latency_ms: i64,
    error: Option<&'a str>,
    response: Option<&'a str>,
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The retry delay after a delivery's `attempts`-th failed try, or None when
/// the schedule is used up (the delivery is dead).
fn next_try(schedule_ms: &[i64], attempts: i64) -> Option<i64> {
    usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| schedule_ms.get(i))
        .copied()
}

impl Store {
    /// Writes the results of finished requests: the attempt log, each
    /// delivery's new state (delivered, retry at the next step of
    /// `schedule_ms`, dead) and each destination's health (failure streak,
    /// suspension after `suspend_after` consecutive failures or a 410,
    /// Retry-After pause). Rows no longer claimed by `worker` are left alone.
    /// Returns the destinations that must not be sent to now, with the time
    /// until which (`i64::MAX` when suspended).
    pub fn complete_deliveries(
        &self,
        worker: &str,
        outcomes: &[AttemptOutcome],
        schedule_ms: &[i64],
        suspend_after: i64,
    ) -> StoreResult<Vec<(DestinationKey, i64)>> {
        let now = now_ms();
        self.write_relaxed(|conn| {
            let mut attempts: Vec<NewAttempt> = Vec::new();
            // Per destination: (failures since the last success in this
            // flush, whether a success reset the streak, gone, pause, last error).
            #[derive(Default)]
            struct Health {
                failures: i64,
                reset: bool,
                gone: bool,
                paused_until: i64,
                last_error: Option<String>,
            }
            let mut health: HashMap<&DestinationKey, Health> = HashMap::new();
            // Successes are written together: (account, status code) → ids.
            let mut delivered: HashMap<(i64, Option<i64>), Vec<i64>> = HashMap::new();
            // Each destination's configuration version now, its row locked
            // until commit (PostgreSQL; SQLite writers are serialized) so a
            // resume or configuration change cannot land between this read
            // and the health update below, and be overwritten by it.
            // Locked in one order, so two completers cannot deadlock.
            // With its state and failure streak, for the health update (the
            // row is locked, so they cannot change before it).
            type Row = (i64, String, i64);
            let mut versions: HashMap<&DestinationKey, Option<Row>> = HashMap::new();
            let mut dests: Vec<&DestinationKey> = outcomes
                .iter()
                .filter(|o| o.kind != OutcomeKind::Released)
                .map(|o| &o.dest)
                .collect();
            dests.sort_by(|a, b| {
                (a.account_id, &a.trigger, &a.transport).cmp(&(b.account_id, &b.trigger, &b.transport))
            });
            dests.dedup();
            for dest in dests {
                let target = push_destinations::table
                    .filter(push_destinations::account_id.eq(dest.account_id))
                    .filter(push_destinations::trigger.eq(&dest.trigger))
                    .filter(push_destinations::transport.eq(&dest.transport))
                    .select((
                        push_destinations::config_version,
                        push_destinations::state,
                        push_destinations::consecutive_failures,
                    ));
                let v: Option<Row> = match &mut *conn {
                    DbConn::Pg(c) => target.for_update().first(c).optional()?,
                    DbConn::Sqlite(c) => target.first(c).optional()?,
                };
                versions.insert(dest, v);
            }
            for o in outcomes {
                let account_id = o.dest.account_id;
                let ids: Vec<i64> = o.deliveries.iter().map(|(id, _)| *id).collect();
                if o.kind == OutcomeKind::Released {
                    claimed_rows!(&mut *conn, account_id, &ids, worker, |c, mine| diesel::update(
                        deliveries::table.filter(mine)
                    )
                    .set((
                        deliveries::lease_until.eq(None::<i64>),
                        deliveries::claimed_by.eq(None::<String>),
                    ))
                    .execute(c))?;
                    continue;
                }
                for (id, _) in &o.deliveries {
                    attempts.push(NewAttempt {
                        account_id,
                        delivery_id: *id,
                        attempted_at: o.attempted_at,
                        url: &o.url,
                        status_code: o.status_code,
                        latency_ms: o.latency_ms,
                        error: o.error.as_deref(),
                        response: o.response.as_deref(),
                    });
                }
                let error_text = o.error.clone().map(|e| clip(&e));
                // Gives this worker's claim back: pending again from `next_at`.
                macro_rules! unclaim {
                    ($next_at:expr) => {
                        claimed_rows!(&mut *conn, account_id, &ids, worker, |c, mine| {
                            diesel::update(deliveries::table.filter(mine))
                                .set((
                                    deliveries::next_at.eq($next_at),
                                    deliveries::attempts.eq(deliveries::attempts + 1),
                                    deliveries::lease_until.eq(None::<i64>),
                                    deliveries::claimed_by.eq(None::<String>),
                                    deliveries::updated_at.eq(now),
                                    deliveries::last_status_code.eq(o.status_code),
                                    deliveries::last_error.eq(&error_text),
                                ))
                                .execute(c)
                        })?
                    };
                }
                let version = versions.get(&o.dest).and_then(|v| v.as_ref()).map(|v| v.0);
                if o.kind != OutcomeKind::Success && version.is_some_and(|v| v != o.config_version) {
                    // Sent with a configuration changed (or resumed) since:
                    // logged (an attempt), but neither counted against the
                    // destination nor as a failed try; sent again at once
                    // with the new configuration.
                    unclaim!(now);
                    continue;
                }
                let h = health.entry(&o.dest).or_default();
                match &o.kind {
                    OutcomeKind::Success => {
                        h.failures = 0;
                        h.reset = true;
                        delivered.entry((account_id, o.status_code)).or_default().extend(ids);
                    }
                    OutcomeKind::RetryAfter(until) => {
                        h.paused_until = h.paused_until.max(*until);
                        h.last_error = error_text.clone();
                        unclaim!(*until);
                    }
                    OutcomeKind::Gone => {
                        h.gone = true;
                        h.last_error = error_text.clone();
                        // Suspended now; once resumed, sent at once.
                        unclaim!(now);
                    }
                    OutcomeKind::Released => {}
                    OutcomeKind::Failure | OutcomeKind::Transient => {
                        if o.kind == OutcomeKind::Failure {
                            h.failures += 1;
                        }
                        h.last_error = error_text.clone();
                        // Deliveries of one request usually share their try count.
                        let mut by_attempts: HashMap<i64, Vec<i64>> = HashMap::new();
                        for (id, before) in &o.deliveries {
                            by_attempts.entry(*before).or_default().push(*id);
                        }
                        for (before, ids) in by_attempts {
                            let tries = before + 1;
                            let (status, next_at) = match next_try(schedule_ms, tries) {
                                Some(delay) => (PENDING, now + delay),
                                None => (DEAD, now),
                            };
                            claimed_rows!(&mut *conn, account_id, &ids, worker, |c, mine| diesel::update(
                                deliveries::table.filter(mine)
                            )
                            .set((
                                deliveries::status.eq(status),
                                deliveries::attempts.eq(deliveries::attempts + 1),
                                deliveries::failures.eq(tries),
                                deliveries::next_at.eq(next_at),
                                deliveries::lease_until.eq(None::<i64>),
                                deliveries::claimed_by.eq(None::<String>),
                                deliveries::updated_at.eq(now),
                                deliveries::last_status_code.eq(o.status_code),
                                deliveries::last_error.eq(&error_text),
                            ))
                            .execute(c))?;
                        }
                    }
                }
            }
            for ((account_id, code), ids) in delivered {
                for ids in ids.chunks(1000) {
                    claimed_rows!(&mut *conn, account_id, ids, worker, |c, mine| diesel::update(
                        deliveries::table.filter(mine)
                    )
                    .set((
                        deliveries::status.eq(DELIVERED),
                        deliveries::attempts.eq(deliveries::attempts + 1),
                        deliveries::lease_until.eq(None::<i64>),
                        deliveries::claimed_by.eq(None::<String>),
                        deliveries::updated_at.eq(now),
                        deliveries::last_status_code.eq(code),
                        deliveries::last_error.eq(None::<String>),
                    ))
                    .execute(c))?;
                }
            }
            insert_attempts(conn, &attempts)?;
            let mut stopped = Vec::new();
            for (dest, h) in health {
                let Some(Some((_, state, streak))) = versions.get(dest) else {
                    continue;
                };
                let (state, streak) = (state.clone(), *streak);
                let streak = if h.reset { h.failures } else { streak + h.failures };
                let suspend = state == ACTIVE && (h.gone || streak >= suspend_after);
                let state = if suspend { SUSPENDED.to_string() } else { state };
                if state != ACTIVE {
                    stopped.push((dest.clone(), i64::MAX));
                } else if h.paused_until > now {
                    stopped.push((dest.clone(), h.paused_until));
                }
                let target = push_destinations::table
                    .filter(push_destinations::account_id.eq(dest.account_id))
                    .filter(push_destinations::trigger.eq(&dest.trigger))
                    .filter(push_destinations::transport.eq(&dest.transport));
                on_conn!(&mut *conn, |c| diesel::update(target)
                    .set((
                        push_destinations::state.eq(&state),
                        push_destinations::consecutive_failures.eq(streak),
                        push_destinations::updated_at.eq(now),
                    ))
                    .execute(c))?;
                if h.paused_until > 0 {
                    on_conn!(&mut *conn, |c| diesel::update(target)
                        .set(push_destinations::paused_until.eq(h.paused_until))
                        .execute(c))?;
                }
                if suspend {
                    on_conn!(&mut *conn, |c| diesel::update(target)
                        .set(push_destinations::suspended_at.eq(Some(now)))
                        .execute(c))?;
                }
                if let Some(e) = &h.last_error {
                    on_conn!(&mut *conn, |c| diesel::update(target)
                        .set((
                            push_destinations::last_error.eq(e),
                            push_destinations::last_error_at.eq(Some(now))
                        ))
                        .execute(c))?;
                }
            }
            Ok(stopped)
        })
    }
}

/// Writes the attempt log rows. PostgreSQL: one `INSERT … SELECT FROM
/// unnest` per 5,000 rows ([`Unnest`]: one statement text, prepared once,
/// 8 array parameters), where a multi-row VALUES list binds 8 parameters
/// per row; SQLite: multi-row inserts.
fn insert_attempts(conn: &mut DbConn, attempts: &[NewAttempt]) -> StoreResult<()> {
    match conn {
        DbConn::Pg(c) => {
            for chunk in attempts.chunks(5000) {
                let cols = vec![
                    Col::Int(chunk.iter().map(|a| a.account_id).collect()),
                    Col::Int(chunk.iter().map(|a| a.delivery_id).collect()),
                    Col::Int(chunk.iter().map(|a| a.attempted_at).collect()),
                    Col::Str(chunk.iter().map(|a| a.url).collect()),
                    Col::OptInt(chunk.iter().map(|a| a.status_code).collect()),
                    Col::Int(chunk.iter().map(|a| a.latency_ms).collect()),
                    Col::OptStr(chunk.iter().map(|a| a.error).collect()),
                    Col::OptStr(chunk.iter().map(|a| a.response).collect()),
                ];
                Unnest::new(
                    "delivery_attempts",
                    "account_id, delivery_id, attempted_at, url, status_code, latency_ms, error, response",
                    cols,
                    "",
                )
                .execute(c)?;
            }
        }
        DbConn::Sqlite(c) => {
            for chunk in attempts.chunks(500) {
                diesel::insert_into(delivery_attempts::table).values(chunk).execute(c)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_steps_then_dead() {
        let s = [10, 20];
        assert_eq!(next_try(&s, 1), Some(10));
        assert_eq!(next_try(&s, 2), Some(20));
        assert_eq!(next_try(&s, 3), None);
        assert_eq!(clip(&"é".repeat(600)).len(), 1024);
    }
}
