//! The deliveries as the API shows them: their states, the attempt log,
//! replay (`retry`) and pruning of finished ones. A delivery is one send:
//! an event (http, one mail per event) or a parcel (a digest mail, an FTP
//! file) with its event count; a parcel's member rows are not listed.

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::on_conn;
use crate::store::payloads;
use crate::store::push::account_term;
use crate::store::retention::{history_guard, HistoryGuard};
use crate::store::schema::{deliveries, delivery_attempts, push_destinations};
use crate::store::{relaxed_commit, Store, StoreError, StoreResult};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
pub const STATUSES: [&str; 3] = [PENDING, DELIVERED, DEAD];

#[derive(Insertable)]
#[diesel(table_name = deliveries)]
pub(crate) struct NewDelivery<'a> {
    pub account_id: i64,
    pub trigger: &'a str,
    pub transport: &'a str,
    pub event_id: &'a str,
    pub status: &'a str,
    pub attempts: i64,
    pub next_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub trigger: String,
    pub transport: String,
    pub event_count: i64,
    /// A parcel's file or attachment name.
    pub label: Option<String>,
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

impl Store {
    /// Deletes finished (delivered or dead) deliveries last touched before
    /// `cutoff_ms`, with a parcel's member rows, and attempts made before
    /// it; `limit` rows per transaction. Returns how many deliveries went.
    ///
    /// No index orders deliveries by finishing time (it would be one more
    /// entry for every delivered row): each (account, trigger)'s finished
    /// rows are walked in id order through `deliveries_listing` and the
    /// walk stops at the first row created after the cutoff, which cannot
    /// have finished before it. A row created before the cutoff but
    /// finished after it is passed over until it is old enough.
    pub fn prune_deliveries(&self, cutoff_ms: i64, limit: i64) -> StoreResult<usize> {
        let destinations: Vec<(i64, String)> = self.read(|conn| {
            on_conn!(conn, |c| Ok(push_destinations::table
                .select((push_destinations::account_id, push_destinations::trigger))
                .distinct()
                .load(c)?))
        })?;
        let mut total = 0;
        for (account_id, trigger) in &destinations {
            for status in [DELIVERED, DEAD] {
                let mut after = 0i64;
                loop {
                    let (n, next) = self.write(|conn| {
                        relaxed_commit(conn)?;
                        // The account's rows by id (see `of_account`), and the
                        // ids' range, which bounds any plan (see `claimed_rows!`).
                        let mine = account_term(conn, *account_id);
                        on_conn!(conn, |c| {
                            let rows: Vec<(i64, i64, i64)> = deliveries::table
                                .filter(deliveries::account_id.eq(account_id))
                                .filter(deliveries::trigger.eq(trigger))
                                .filter(deliveries::status.eq(status))
                                .filter(deliveries::id.gt(after))
                                .order(deliveries::id)
                                .select((deliveries::id, deliveries::created_at, deliveries::updated_at))
                                .limit(limit)
                                .load(c)?;
                            let young = rows.iter().position(|r| r.1 >= cutoff_ms);
                            let walked = &rows[..young.unwrap_or(rows.len())];
                            let old: Vec<i64> = walked.iter().filter(|r| r.2 < cutoff_ms).map(|r| r.0).collect();
                            if let (Some(&lo), Some(&hi)) = (old.first(), old.last()) {
                                diesel::delete(
                                    deliveries::table
                                        .filter(deliveries::account_id.eq(account_id))
                                        .filter(deliveries::parcel_id.between(lo, hi))
                                        .filter(deliveries::parcel_id.eq_any(&old)),
                                )
                                .execute(c)?;
                                diesel::delete(
                                    deliveries::table
                                        .filter(sql::<Bool>(&mine))
                                        .filter(deliveries::id.between(lo, hi))
                                        .filter(deliveries::id.eq_any(&old)),
                                )
                                .execute(c)?;
                            }
                            let next = (young.is_none() && rows.len() as i64 == limit).then(|| rows[rows.len() - 1].0);
                            Ok::<_, StoreError>((old.len(), next))
                        })
                    })?;
                    total += n;
                    match next {
                        Some(id) => after = id,
                        None => break,
                    }
                }
            }
        }
        let accounts: std::collections::BTreeSet<i64> = destinations.iter().map(|d| d.0).collect();
        for account_id in accounts {
            self.prune_attempts(account_id, cutoff_ms, limit)?;
        }
        Ok(total)
    }

    /// Deletes an account's attempts made before `cutoff_ms`: a walk of
    /// the primary key (ids follow the time an attempt's result was
    /// written) that stops at the first younger attempt.
    fn prune_attempts(&self, account_id: i64, cutoff_ms: i64, limit: i64) -> StoreResult<()> {
        let mut after = 0i64;
        loop {
            let next = self.write(|conn| {
                relaxed_commit(conn)?;
                on_conn!(conn, |c| {
                    let rows: Vec<(i64, i64)> = delivery_attempts::table
                        .filter(delivery_attempts::account_id.eq(account_id))
                        .filter(delivery_attempts::id.gt(after))
                        .order(delivery_attempts::id)
                        .select((delivery_attempts::id, delivery_attempts::attempted_at))
                        .limit(limit)
                        .load(c)?;
                    let old = rows.iter().take_while(|r| r.1 < cutoff_ms).count();
                    if old > 0 {
                        diesel::delete(
                            delivery_attempts::table
                                .filter(delivery_attempts::account_id.eq(account_id))
                                .filter(delivery_attempts::id.gt(after))
                                .filter(delivery_attempts::id.le(rows[old - 1].0)),
                        )
                        .execute(c)?;
                    }
                    Ok::<_, StoreError>((old == rows.len() && old as i64 == limit).then(|| rows[old - 1].0))
                })
            })?;
            match next {
                Some(id) => after = id,
                None => return Ok(()),
            }
        }
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
                    .filter(deliveries::status.eq_any(STATUSES))
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

    /// One delivery with its event payload (empty for a parcel: its
    /// members' payloads are in their own rows; None for a delivered one
    /// whose event is past the history retention) and attempts.
    pub fn delivery(&self, account_id: i64, id: i64) -> StoreResult<(DeliveryRow, Option<String>, Vec<AttemptRow>)> {
        self.read(|conn| {
            let (row, attempts) = on_conn!(&mut *conn, |c| {
                let row: Option<DeliveryRow> = deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::id.eq(id))
                    .filter(deliveries::status.eq_any(STATUSES))
                    .select(DeliveryRow::as_select())
                    .first(c)
                    .optional()?;
                let row = row.ok_or(StoreError::NotFound)?;
                let attempts = delivery_attempts::table
                    .filter(delivery_attempts::account_id.eq(account_id))
                    .filter(delivery_attempts::delivery_id.eq(id))
                    .order(delivery_attempts::id.asc())
                    .select(AttemptRow::as_select())
                    .load(c)?;
                Ok::<_, StoreError>((row, attempts))
            })?;
            // A delivered delivery's event leaves with the history
            // (`--history-days`) even while its log entry stays.
            let payload = match row.label {
                Some(_) => Some(String::new()),
                None => {
                    let mut found = payloads::by_ids(conn, account_id, &[row.event_id.as_str()])?;
                    match found.remove(&row.event_id) {
                        None if row.status == DELIVERED => None,
                        p => Some(p.unwrap_or_else(|| payloads::missing_payload(&row.event_id))),
                    }
                }
            };
            Ok((row, payload, attempts))
        })
    }

    /// Sends a delivery again (whatever its state): pending, due now, with a
    /// fresh retry schedule (`attempts` still counts the earlier requests). NotFound for unknown or foreign ids.
    pub fn retry_delivery(&self, account_id: i64, id: i64) -> StoreResult<()> {
        let now = now_ms();
        let n = self.write(|conn| {
            history_guard(conn, account_id, HistoryGuard::Keep)?;
            // One statement checks and changes: a delivered delivery's event
            // may have left with the history (`--history-days`), and then
            // there is nothing to send (a parcel has no event row).
            let sendable = format!(
                "(status <> '{DELIVERED}' OR label IS NOT NULL OR EXISTS (SELECT 1 FROM events e \
                 WHERE e.account_id = deliveries.account_id AND e.id = deliveries.event_id))"
            );
            Ok(on_conn!(conn, |c| diesel::update(
                deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::id.eq(id))
                    .filter(deliveries::status.eq_any(STATUSES))
                    .filter(deliveries::claimed_by.is_null())
                    .filter(sql::<Bool>(&sendable))
            )
            .set((
                deliveries::status.eq(PENDING),
                deliveries::failures.eq(0),
                deliveries::next_at.eq(now),
                deliveries::updated_at.eq(now),
            ))
            .execute(c))?)
        })?;
        if n == 1 {
            return Ok(());
        }
        // Unknown (NotFound), its event gone, or in flight right now.
        match self.delivery(account_id, id)?.1 {
            None => Err(StoreError::Conflict(
                "the delivery's event is past the history retention (--history-days): there is nothing to send".into(),
            )),
            Some(_) => Err(StoreError::Conflict("the delivery is being sent right now".into())),
        }
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
                deliveries::failures.eq(0),
                deliveries::next_at.eq(now),
                deliveries::updated_at.eq(now),
            ))
            .execute(c))?)
        })
    }
}
