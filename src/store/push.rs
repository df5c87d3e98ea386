//! HTTP push storage (SPEC §6): per-trigger destinations (secret, health),
//! deliveries (one row per event to push, created in the ingest
//! transaction) and the attempt log.
//!
//! Claiming: a worker marks due rows with `lease_until`/`claimed_by` in one
//! short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent
//! workers on any node take disjoint rows; SQLite: the single-writer
//! `BEGIN IMMEDIATE` transaction). A row whose lease ran out (its worker
//! died) is claimable again. Results are written back in batches, and only
//! for rows still claimed by the worker that reports them.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::schema::{deliveries, delivery_attempts, push_destinations};
use super::triggers::upsert_config;
use super::{DbConn, Store, StoreError, StoreResult};
use crate::domain::time::now_ms;
use crate::domain::{HttpSettings, Trigger, TriggerConfig};
use crate::on_conn;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
pub const STATUSES: [&str; 3] = [PENDING, DELIVERED, DEAD];
pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";

/// Most deliveries claimed at once (unless one batch is larger).
const MAX_CLAIM: i64 = 2000;

/// Longest stored error text and response excerpt.
const MAX_TEXT: usize = 1024;

#[derive(Insertable)]
#[diesel(table_name = deliveries)]
pub(crate) struct NewDelivery<'a> {
    pub account_id: i64,
    pub trigger: &'a str,
    pub event_id: &'a str,
    pub payload: &'a str,
    pub status: &'a str,
    pub attempts: i64,
    pub next_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `PUT /v1/triggers/{T}` with an http destination did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPut {
    /// The destination's signing secret when it was just created (shown once).
    pub new_secret: Option<String>,
    /// Events of the last days queued as deliveries (first configuration only).
    pub backfilled: usize,
}

/// A destination's health, for `GET /v1/triggers/{T}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    pub state: String,
    pub consecutive_failures: i64,
    pub paused_until: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub suspended_at: Option<i64>,
    pub pending: i64,
    pub dead: i64,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    next_at: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    lease_until: Option<i64>,
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    #[diesel(sql_type = Text)]
    pub trigger: String,
}

/// Rows claimed for one destination, with what is needed to send them.
#[derive(Debug, Clone)]
pub struct Claim {
    pub settings: HttpSettings,
    /// The signing secrets: the current one, then the previous one while a
    /// rotation's overlap lasts.
    pub secrets: Vec<String>,
    /// In id (event) order.
    pub rows: Vec<ClaimedRow>,
    /// The destination's configuration version when claimed; reported back
    /// in [`AttemptOutcome::config_version`].
    pub config_version: i64,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    Success,
    Failure,
    /// 429/503 with Retry-After: try again at this time; not a failure.
    RetryAfter(i64),
    /// 410: suspend the destination at once.
    Gone,
    /// Not sent (the worker is stopping, or the destination was suspended
    /// meanwhile): give the deliveries back untouched, log nothing.
    Released,
}

/// One request's result (one or several deliveries of one destination).
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub dest: DestinationKey,
    /// (delivery id, attempts before this one).
    pub deliveries: Vec<(i64, i64)>,
    pub url: String,
    pub attempted_at: i64,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response: Option<String>,
    pub kind: OutcomeKind,
    /// The [`Claim::config_version`] the request was sent with. When the
    /// configuration changed (or the destination was resumed) since, a
    /// failure does not count against the destination and the deliveries
    /// are tried again at once with the new configuration.
    pub config_version: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub trigger: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = delivery_attempts)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub attempted_at: i64,
    pub url: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
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

/// Attempts keyed by delivery id, oldest first.
pub type AttemptsByDelivery = HashMap<i64, Vec<AttemptRow>>;

/// Filters of `GET /v1/deliveries`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub trigger: Option<Trigger>,
    pub status: Option<&'static str>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Cursor: only deliveries with a smaller id (newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
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
    /// Saves an http configuration. The first time a trigger gets one, its
    /// destination is created with `fresh_secret` and its events received
    /// since `backfill_since_ms` are queued for delivery, oldest first.
    /// Changing the configuration resumes a suspended destination.
    pub fn put_http_config(
        &self,
        account_id: i64,
        trigger: Trigger,
        config: &TriggerConfig,
        fresh_secret: &str,
        backfill_since_ms: i64,
    ) -> StoreResult<HttpPut> {
        let now = now_ms();
        self.write(|conn| {
            upsert_config(conn, account_id, trigger, config)?;
            let existing: Option<String> = on_conn!(&mut *conn, |c| push_destinations::table
                .filter(push_destinations::account_id.eq(account_id))
                .filter(push_destinations::trigger.eq(trigger.as_str()))
                .select(push_destinations::secret)
                .first(c)
                .optional())?;
            let settings = config.settings.to_string();
            if existing.is_some() {
                resume_destination(conn, account_id, trigger.as_str(), now)?;
                on_conn!(&mut *conn, |c| diesel::update(
                    push_destinations::table
                        .filter(push_destinations::account_id.eq(account_id))
                        .filter(push_destinations::trigger.eq(trigger.as_str()))
                )
                .set(push_destinations::settings.eq(&settings))
                .execute(c))?;
                return Ok(HttpPut {
                    new_secret: None,
                    backfilled: 0,
                });
            }
            on_conn!(&mut *conn, |c| diesel::insert_into(push_destinations::table)
                .values((
                    push_destinations::account_id.eq(account_id),
                    push_destinations::trigger.eq(trigger.as_str()),
                    push_destinations::settings.eq(&settings),
                    push_destinations::secret.eq(fresh_secret),
                    push_destinations::state.eq(ACTIVE),
                    push_destinations::created_at.eq(now),
                    push_destinations::updated_at.eq(now),
                ))
                .execute(c))?;
            // Trigger names are a closed set and the rest are integers.
            let sql = format!(
                "INSERT INTO deliveries (account_id, trigger, event_id, payload, status, attempts, next_at, \
                 created_at, updated_at) \
                 SELECT account_id, trigger, id, payload, '{PENDING}', 0, {now}, {now}, {now} FROM events \
                 WHERE account_id = {account_id} AND trigger = '{t}' AND received_at >= {backfill_since_ms} \
                 ORDER BY id",
                t = trigger.as_str()
            );
            let backfilled = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).execute(c))?;
            Ok(HttpPut {
                new_secret: Some(fresh_secret.to_string()),
                backfilled,
            })
        })
    }

    /// Replaces a destination's signing secret; the previous one keeps
    /// signing too (a second signature) for `overlap_ms`. NotFound if the
    /// trigger never had an http destination.
    pub fn rotate_secret(&self, account_id: i64, trigger: Trigger, secret: &str, overlap_ms: i64) -> StoreResult<()> {
        let now = now_ms();
        let n = self.write(|conn| {
            Ok(on_conn!(conn, |c| diesel::update(
                push_destinations::table
                    .filter(push_destinations::account_id.eq(account_id))
                    .filter(push_destinations::trigger.eq(trigger.as_str()))
            )
            .set((
                push_destinations::previous_secret.eq(push_destinations::secret.nullable()),
                push_destinations::previous_until.eq(Some(now + overlap_ms)),
                push_destinations::secret.eq(secret),
                push_destinations::updated_at.eq(now)
            ))
            .execute(c))?)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The signing secrets of a trigger's destination (see [`Claim::secrets`]),
    /// if it ever had one.
    pub fn push_secrets(&self, account_id: i64, trigger: Trigger) -> StoreResult<Option<Vec<String>>> {
        let now = now_ms();
        self.read(|conn| {
            let row: Option<(String, Option<String>, Option<i64>)> = on_conn!(conn, |c| push_destinations::table
                .filter(push_destinations::account_id.eq(account_id))
                .filter(push_destinations::trigger.eq(trigger.as_str()))
                .select((
                    push_destinations::secret,
                    push_destinations::previous_secret,
                    push_destinations::previous_until
                ))
                .first(c)
                .optional())?;
            Ok(row.map(|(s, p, u)| secrets(s, p, u, now)))
        })
    }

    /// Resumes a suspended (or paused) destination. NotFound if none.
    pub fn resume_push(&self, account_id: i64, trigger: Trigger) -> StoreResult<()> {
        let now = now_ms();
        let n = self.write(|conn| resume_destination(conn, account_id, trigger.as_str(), now))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub fn push_status(&self, account_id: i64, trigger: Trigger) -> StoreResult<Option<PushStatus>> {
        let now = now_ms();
        self.read(|conn| {
            on_conn!(conn, |c| {
                type Row = (String, i64, i64, Option<String>, Option<i64>, Option<i64>);
                let row: Option<Row> = push_destinations::table
                    .filter(push_destinations::account_id.eq(account_id))
                    .filter(push_destinations::trigger.eq(trigger.as_str()))
                    .select((
                        push_destinations::state,
                        push_destinations::consecutive_failures,
                        push_destinations::paused_until,
                        push_destinations::last_error,
                        push_destinations::last_error_at,
                        push_destinations::suspended_at,
                    ))
                    .first(c)
                    .optional()?;
                let Some((state, consecutive_failures, paused_until, last_error, last_error_at, suspended_at)) = row
                else {
                    return Ok(None);
                };
                let count = |status: &str, c: &mut _| -> QueryResult<i64> {
                    deliveries::table
                        .filter(deliveries::account_id.eq(account_id))
                        .filter(deliveries::trigger.eq(trigger.as_str()))
                        .filter(deliveries::status.eq(status))
                        .count()
                        .get_result(c)
                };
                Ok(Some(PushStatus {
                    state,
                    consecutive_failures,
                    paused_until: (paused_until > now).then_some(paused_until),
                    last_error,
                    last_error_at,
                    suspended_at,
                    pending: count(PENDING, c)?,
                    dead: count(DEAD, c)?,
                }))
            })
        })
    }

    /// Destinations (account, trigger) with due, unclaimed deliveries that
    /// are neither suspended nor paused by a Retry-After.
    pub fn due_destinations(&self, limit: i64) -> StoreResult<Vec<DestinationKey>> {
        let now = now_ms();
        // Walks the (small) destinations table and probes each one's
        // pending index, rather than scanning every pending delivery.
        let sql = format!(
            "SELECT p.account_id, p.trigger FROM push_destinations p \
             WHERE p.state = '{ACTIVE}' AND p.paused_until <= {now} \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.account_id = p.account_id \
             AND d.trigger = p.trigger AND d.status = '{PENDING}' AND d.next_at <= {now} \
             AND (d.lease_until IS NULL OR d.lease_until <= {now})) \
             LIMIT {limit}"
        );
        self.read(|conn| Ok(on_conn!(conn, |c| diesel::sql_query(&sql).load(c))?))
    }

    /// Claims due deliveries of one destination for `worker` until
    /// `lease_until`, enough for `max_requests` requests of the
    /// destination's batch size. With `ordered` settings only one request's
    /// worth is claimed, as a run starting at
    /// the destination's oldest pending delivery is claimed, and nothing
    /// while any of its deliveries is claimed elsewhere. The destination's
    /// last http settings are used even if the trigger has since switched to
    /// another destination (accepted events stay where they were).
    /// `Ok(None)` when the destination is suspended or paused.
    pub fn claim_deliveries(
        &self,
        dest: &DestinationKey,
        max_requests: i64,
        lease_until: i64,
        worker: &str,
    ) -> StoreResult<Option<Claim>> {
        let now = now_ms();
        let Ok(trigger) = dest.trigger.parse::<Trigger>() else {
            return Ok(None);
        };
        let account_id = dest.account_id;
        self.write(|conn| {
            relaxed_commit(conn)?;
            type Health = (String, String, Option<String>, Option<i64>, String, i64, i64);
            let health: Option<Health> = on_conn!(&mut *conn, |c| push_destinations::table
                .filter(push_destinations::account_id.eq(account_id))
                .filter(push_destinations::trigger.eq(trigger.as_str()))
                .select((
                    push_destinations::settings,
                    push_destinations::secret,
                    push_destinations::previous_secret,
                    push_destinations::previous_until,
                    push_destinations::state,
                    push_destinations::paused_until,
                    push_destinations::config_version
                ))
                .first(c)
                .optional())?;
            let Some((settings, secret, previous, previous_until, state, paused_until, config_version)) = health else {
                return Ok(None);
            };
            let secrets = secrets(secret, previous, previous_until, now);
            if state != ACTIVE || paused_until > now {
                return Ok(None);
            }
            let Some(settings) = serde_json::from_str(&settings)
                .ok()
                .and_then(|v| HttpSettings::parse(&v).ok())
            else {
                return Ok(None);
            };
            let requests = if settings.ordered { 1 } else { max_requests.max(1) };
            let limit = (requests * i64::from(settings.batch_size)).min(MAX_CLAIM.max(i64::from(settings.batch_size)));
            let t = trigger.as_str();
            let base = format!("account_id = {account_id} AND trigger = '{t}' AND status = '{PENDING}'");
            let ids: Vec<i64> = if settings.ordered {
                let lock = if matches!(conn, DbConn::Pg(_)) {
                    " FOR UPDATE"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT id, next_at, lease_until FROM deliveries WHERE {base} ORDER BY id LIMIT {limit}{lock}"
                );
                let head: Vec<Candidate> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
                head.iter()
                    .take_while(|r| r.next_at <= now && r.lease_until.is_none_or(|l| l <= now))
                    .map(|r| r.id)
                    .collect()
            } else {
                let lock = if matches!(conn, DbConn::Pg(_)) {
                    " FOR UPDATE SKIP LOCKED"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT id, next_at, lease_until FROM deliveries WHERE {base} AND next_at <= {now} \
                     AND (lease_until IS NULL OR lease_until <= {now}) ORDER BY id LIMIT {limit}{lock}"
                );
                let rows: Vec<Candidate> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
                rows.iter().map(|r| r.id).collect()
            };
            if ids.is_empty() {
                return Ok(Some(Claim {
                    settings,
                    secrets,
                    rows: Vec::new(),
                    config_version,
                }));
            }
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let sql = format!(
                "UPDATE deliveries SET lease_until = {lease_until}, claimed_by = '{worker}' \
                 WHERE account_id = {account_id} AND id IN ({}) RETURNING id, event_id, payload, attempts",
                list.join(",")
            );
            debug_assert!(worker.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let mut rows: Vec<ClaimedRow> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
            rows.sort_by_key(|r| r.id);
            Ok(Some(Claim {
                settings,
                secrets,
                rows,
                config_version,
            }))
        })
    }

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
        self.write(|conn| {
            relaxed_commit(conn)?;
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
            // Each destination's configuration version now.
            let mut versions: HashMap<&DestinationKey, Option<i64>> = HashMap::new();
            for o in outcomes {
                let account_id = o.dest.account_id;
                let ids: Vec<i64> = o.deliveries.iter().map(|(id, _)| *id).collect();
                if o.kind == OutcomeKind::Released {
                    let mine = deliveries::account_id
                        .eq(account_id)
                        .and(deliveries::id.eq_any(ids))
                        .and(deliveries::claimed_by.eq(worker));
                    on_conn!(&mut *conn, |c| diesel::update(deliveries::table.filter(mine))
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
                let mine = deliveries::account_id
                    .eq(account_id)
                    .and(deliveries::id.eq_any(ids.clone()))
                    .and(deliveries::claimed_by.eq(worker));
                // Gives this worker's claim back: pending again from `next_at`.
                macro_rules! unclaim {
                    ($next_at:expr) => {
                        on_conn!(&mut *conn, |c| diesel::update(
                            deliveries::table.filter(mine)
                        )
                        .set((
                            deliveries::next_at.eq($next_at),
                            deliveries::lease_until.eq(None::<i64>),
                            deliveries::claimed_by.eq(None::<String>),
                            deliveries::updated_at.eq(now),
                            deliveries::last_status_code.eq(o.status_code),
                            deliveries::last_error.eq(&error_text),
                        ))
                        .execute(c))?
                    };
                }
                let version = match versions.get(&o.dest) {
                    Some(v) => *v,
                    None => {
                        let v: Option<i64> = on_conn!(&mut *conn, |c| push_destinations::table
                            .filter(push_destinations::account_id.eq(account_id))
                            .filter(push_destinations::trigger.eq(&o.dest.trigger))
                            .select(push_destinations::config_version)
                            .first(c)
                            .optional())?;
                        versions.insert(&o.dest, v);
                        v
                    }
                };
                if o.kind != OutcomeKind::Success && version.is_some_and(|v| v != o.config_version) {
                    // Sent with a configuration changed (or resumed) since:
                    // logged, but neither counted against the destination nor
                    // as a try; sent again at once with the new configuration.
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
                    OutcomeKind::Failure => {
                        h.failures += 1;
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
                            let mine = deliveries::account_id
                                .eq(account_id)
                                .and(deliveries::id.eq_any(ids))
                                .and(deliveries::claimed_by.eq(worker));
                            on_conn!(&mut *conn, |c| diesel::update(deliveries::table.filter(mine))
                                .set((
                                    deliveries::status.eq(status),
                                    deliveries::attempts.eq(tries),
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
                    let mine = deliveries::account_id
                        .eq(account_id)
                        .and(deliveries::id.eq_any(ids))
                        .and(deliveries::claimed_by.eq(worker));
                    on_conn!(&mut *conn, |c| diesel::update(deliveries::table.filter(mine))
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
            for chunk in attempts.chunks(500) {
                on_conn!(&mut *conn, |c| diesel::insert_into(delivery_attempts::table)
                    .values(chunk)
                    .execute(c))?;
            }
            let mut stopped = Vec::new();
            for (dest, h) in health {
                let current: Option<(String, i64)> = on_conn!(&mut *conn, |c| push_destinations::table
                    .filter(push_destinations::account_id.eq(dest.account_id))
                    .filter(push_destinations::trigger.eq(&dest.trigger))
                    .select((push_destinations::state, push_destinations::consecutive_failures))
                    .first(c)
                    .optional())?;
                let Some((state, streak)) = current else { continue };
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
                    .filter(push_destinations::trigger.eq(&dest.trigger));
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

    /// Deletes finished (delivered or dead) deliveries and attempts last
    /// touched before `cutoff_ms`, at most `limit` deliveries per call;
    /// returns how many deliveries went.
    pub fn prune_deliveries(&self, cutoff_ms: i64, limit: i64) -> StoreResult<usize> {
        let sql_attempts = format!("DELETE FROM delivery_attempts WHERE attempted_at < {cutoff_ms}");
        let sql = format!(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status <> '{PENDING}' \
             AND updated_at < {cutoff_ms} LIMIT {limit})"
        );
        self.write(|conn| {
            relaxed_commit(conn)?;
            on_conn!(&mut *conn, |c| diesel::sql_query(&sql_attempts).execute(c))?;
            Ok(on_conn!(&mut *conn, |c| diesel::sql_query(&sql).execute(c))?)
        })
    }

    /// Gives back every delivery `worker` still holds (graceful stop).
    pub fn release_deliveries(&self, worker: &str) -> StoreResult<usize> {
        self.write(|conn| {
            Ok(on_conn!(conn, |c| diesel::update(
                deliveries::table
                    .filter(deliveries::claimed_by.eq(worker))
                    .filter(deliveries::status.eq(PENDING))
            )
            .set((
                deliveries::lease_until.eq(None::<i64>),
                deliveries::claimed_by.eq(None::<String>)
            ))
            .execute(c))?)
        })
    }

    /// Deliveries, newest first, with their attempts.
    pub fn list_deliveries(
        &self,
        account_id: i64,
        f: &DeliveryFilter,
    ) -> StoreResult<(Vec<DeliveryRow>, AttemptsByDelivery)> {
        self.read(|conn| {
            on_conn!(conn, |c| {
                let mut q = deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .select(DeliveryRow::as_select())
                    .order(deliveries::id.desc())
                    .limit(f.limit)
                    .into_boxed();
                if let Some(t) = f.trigger {
                    q = q.filter(deliveries::trigger.eq(t.as_str()));
                }
                if let Some(s) = f.status {
                    q = q.filter(deliveries::status.eq(s));
                }
                if let Some(s) = f.since_ms {
                    q = q.filter(deliveries::created_at.ge(s));
                }
                if let Some(u) = f.until_ms {
                    q = q.filter(deliveries::created_at.lt(u));
                }
                if let Some(b) = f.before_id {
                    q = q.filter(deliveries::id.lt(b));
                }
                let rows: Vec<DeliveryRow> = q.load(c)?;
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let attempts: Vec<AttemptRow> = delivery_attempts::table
                    .filter(delivery_attempts::account_id.eq(account_id))
                    .filter(delivery_attempts::delivery_id.eq_any(ids))
                    .order(delivery_attempts::id.asc())
                    .select(AttemptRow::as_select())
                    .load(c)?;
                let mut by: HashMap<i64, Vec<AttemptRow>> = HashMap::new();
                for a in attempts {
                    by.entry(a.delivery_id).or_default().push(a);
                }
                Ok((rows, by))
            })
        })
    }

    /// One delivery with its event payload and attempts.
    pub fn delivery(&self, account_id: i64, id: i64) -> StoreResult<(DeliveryRow, String, Vec<AttemptRow>)> {
        self.read(|conn| {
            on_conn!(conn, |c| {
                let row: Option<(DeliveryRow, String)> = deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::id.eq(id))
                    .select((DeliveryRow::as_select(), deliveries::payload))
                    .first(c)
                    .optional()?;
                let (row, payload) = row.ok_or(StoreError::NotFound)?;
                let attempts = delivery_attempts::table
                    .filter(delivery_attempts::account_id.eq(account_id))
                    .filter(delivery_attempts::delivery_id.eq(id))
                    .order(delivery_attempts::id.asc())
                    .select(AttemptRow::as_select())
                    .load(c)?;
                Ok((row, payload, attempts))
            })
        })
    }

    /// Sends a delivery again (whatever its state): pending, due now, with a
    /// fresh retry schedule. NotFound for unknown or foreign ids.
    pub fn retry_delivery(&self, account_id: i64, id: i64) -> StoreResult<()> {
        let now = now_ms();
        let n = self.write(|conn| {
            Ok(on_conn!(conn, |c| diesel::update(
                deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::id.eq(id))
                    .filter(deliveries::claimed_by.is_null())
            )
            .set((
                deliveries::status.eq(PENDING),
                deliveries::attempts.eq(0),
                deliveries::next_at.eq(now),
                deliveries::updated_at.eq(now),
            ))
            .execute(c))?)
        })?;
        if n == 0 {
            // Either unknown, or in flight right now (which is a conflict).
            self.delivery(account_id, id)?;
            return Err(StoreError::Conflict("the delivery is being sent right now".into()));
        }
        Ok(())
    }

    /// Puts every dead delivery of a trigger back in the queue.
    pub fn retry_dead(&self, account_id: i64, trigger: Trigger) -> StoreResult<usize> {
        let now = now_ms();
        self.write(|conn| {
            Ok(on_conn!(conn, |c| diesel::update(
                deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::trigger.eq(trigger.as_str()))
                    .filter(deliveries::status.eq(DEAD))
            )
            .set((
                deliveries::status.eq(PENDING),
                deliveries::attempts.eq(0),
                deliveries::next_at.eq(now),
                deliveries::updated_at.eq(now),
            ))
            .execute(c))?)
        })
    }
}

/// The current secret, then the previous one while its overlap lasts.
fn secrets(current: String, previous: Option<String>, until: Option<i64>, now: i64) -> Vec<String> {
    let mut out = vec![current];
    if let (Some(p), Some(u)) = (previous, until) {
        if u > now {
            out.push(p);
        }
    }
    out
}

/// Worker bookkeeping (claims, results) need not wait for the WAL flush on
/// PostgreSQL: a crash loses at most the last moments of it, which only
/// means a lease that did not happen (the rows are claimable) or a delivery
/// sent again (at-least-once, as for any webhook). Events themselves are
/// always committed durably at ingest.
fn relaxed_commit(conn: &mut DbConn) -> StoreResult<()> {
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(c)?;
    }
    Ok(())
}

fn resume_destination(conn: &mut DbConn, account_id: i64, trigger: &str, now: i64) -> StoreResult<usize> {
    Ok(on_conn!(conn, |c| diesel::update(
        push_destinations::table
            .filter(push_destinations::account_id.eq(account_id))
            .filter(push_destinations::trigger.eq(trigger))
    )
    .set((
        push_destinations::state.eq(ACTIVE),
        push_destinations::consecutive_failures.eq(0),
        push_destinations::paused_until.eq(0),
        push_destinations::suspended_at.eq(None::<i64>),
        push_destinations::updated_at.eq(now),
        push_destinations::config_version.eq(push_destinations::config_version + 1),
    ))
    .execute(c))?)
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
