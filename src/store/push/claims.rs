//! Finding destinations with due deliveries and leasing those deliveries
//! to a worker, for every transport: http requests, mails, FTP files. For
//! email digests and FTP, ended periods are first closed into parcels
//! (`parcels.rs`), which are then claimed one at a time, oldest first.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::destinations::{secrets, DestinationKey, ACTIVE};
use super::log::PENDING;
use super::parcels::{close_periods, members, MemberRow, PeriodDest, OPEN};
use crate::domain::time::now_ms;
use crate::domain::{DeliverySettings, Trigger};
use crate::on_conn;
use crate::store::cached::Cached;
use crate::store::payloads;
use crate::store::schema::{deliveries, push_destinations};
use crate::store::{DbConn, Store, StoreResult};

/// Most deliveries claimed at once (unless one batch is larger).
const MAX_CLAIM: i64 = 2000;
/// Most periods closed into parcels per claim.
const MAX_PARCELS_PER_CLAIM: usize = 16;
/// Period used to close the open rows left by a digest configuration that
/// has since become one mail per event.
const FALLBACK_PERIOD_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct ClaimedRow {
    pub id: i64,
    pub event_id: String,
    /// The event's stored JSON (read from the history); empty for a parcel.
    pub payload: String,
    /// Failed tries so far (the retry schedule's position).
    pub failures: i64,
    /// A parcel's (period mail or file's) fixed name; None for one event.
    pub label: Option<String>,
    pub period_start: Option<i64>,
}

/// A claimed row as the claiming UPDATE returns it.
#[derive(QueryableByName)]
struct Leased {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = BigInt)]
    failures: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    label: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    period_start: Option<i64>,
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

/// Rows claimed for one destination, with what is needed to send them.
#[derive(Debug, Clone)]
pub struct Claim {
    pub settings: DeliverySettings,
    /// The signing secrets: the current one, then the previous one while a
    /// rotation's overlap lasts.
    pub secrets: Vec<String>,
    /// In id (event) order.
    pub rows: Vec<ClaimedRow>,
    /// The events of each claimed parcel, by its id, oldest first.
    pub members: HashMap<i64, Vec<MemberRow>>,
    /// The destination's configuration version when claimed; reported back
    /// in [`AttemptOutcome::config_version`](super::AttemptOutcome::config_version).
    pub config_version: i64,
}

impl Store {
    /// Destinations (account, trigger, transport) with due, unclaimed
    /// deliveries, or with a period to close, that are neither suspended nor
    /// paused by a Retry-After.
    pub fn due_destinations(&self, limit: i64) -> StoreResult<Vec<DestinationKey>> {
        let now = now_ms();
        // Walks the (small) destinations table and probes each one's
        // pending index, rather than scanning every pending delivery. The
        // time and the limit are parameters: one prepared statement per
        // connection, parsed once (PostgreSQL still plans it per call: its
        // generic plan, which cannot see that `now` is the present, walked
        // the since-dropped `deliveries_due` from the start, far slower).
        let sql = [
            format!(
                "SELECT p.account_id, p.trigger, p.transport FROM push_destinations p \
                 WHERE p.state = '{ACTIVE}' AND p.paused_until <= "
            ),
            format!(
                " AND (EXISTS (SELECT 1 FROM deliveries d WHERE d.account_id = p.account_id \
                 AND d.trigger = p.trigger AND d.transport = p.transport AND d.status = '{PENDING}' \
                 AND d.next_at <= "
            ),
            " AND (d.lease_until IS NULL OR d.lease_until <= ".to_string(),
            format!(
                ")) OR (p.transport <> 'http' AND EXISTS (SELECT 1 FROM deliveries o WHERE o.account_id = p.account_id \
                 AND o.trigger = p.trigger AND o.transport = p.transport AND o.status = '{OPEN}' \
                 AND o.next_at <= "
            ),
            "))) LIMIT ".to_string(),
        ];
        let query = Cached::new()
            .sql(&sql[0])
            .int(now)
            .sql(&sql[1])
            .int(now)
            .sql(&sql[2])
            .int(now)
            .sql(&sql[3])
            .int(now)
            .sql(&sql[4])
            .int(limit);
        self.read(|conn| Ok(on_conn!(conn, |c| query.load(c))?))
    }

    /// Claims due deliveries of one destination for `worker` until
    /// `lease_until`, enough for `max_requests` requests of the
    /// destination's batch size. With `ordered` settings only one request's
    /// worth is claimed, as a run starting at
    /// the destination's oldest pending delivery is claimed, and nothing
    /// while any of its deliveries is claimed elsewhere; email digests and
    /// FTP files are claimed that way, one parcel at a time, after closing
    /// the periods that ended. The destination's last settings of its
    /// transport are used even if the trigger has since switched to another
    /// destination (accepted events stay where they were).
    /// `Ok(None)` when the destination is suspended or paused.
    ///
    /// Unless the destination is `ordered`, only deliveries after the id
    /// `after` are looked at. A worker passes the last id it claimed, so a
    /// claim does not walk again the deliveries it holds (a claim that
    /// started at the head of the pending index read every row leased ahead
    /// of it, about as many as it claimed), and passes 0 now and then to
    /// pick up what is due behind it: retries, lost leases, a delivery whose
    /// ingest committed after a larger id's.
    pub fn claim_deliveries(
        &self,
        dest: &DestinationKey,
        after: i64,
        max_requests: i64,
        lease_until: i64,
        worker: &str,
    ) -> StoreResult<Option<Claim>> {
        let now = now_ms();
        let Ok(trigger) = dest.trigger.parse::<Trigger>() else {
            return Ok(None);
        };
        let account_id = dest.account_id;
        let transport = match dest.transport.as_str() {
            t @ ("http" | "email" | "ftp") => t,
            _ => return Ok(None),
        };
        self.write_relaxed(|conn| {
            type Health = (String, String, Option<String>, Option<i64>, String, i64, i64);
            let health: Option<Health> = on_conn!(&mut *conn, |c| push_destinations::table
                .filter(push_destinations::account_id.eq(account_id))
                .filter(push_destinations::trigger.eq(trigger.as_str()))
                .filter(push_destinations::transport.eq(transport))
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
                .and_then(|v| DeliverySettings::parse(transport, &v))
            else {
                return Ok(None);
            };
            let t = trigger.as_str();
            let (ordered, batch_size) = match &settings {
                DeliverySettings::Http(h) => (h.ordered, i64::from(h.batch_size)),
                DeliverySettings::Email(e) => (e.period_ms().is_some(), 1),
                DeliverySettings::Ftp(_) => (true, 1),
            };
            if transport != "http" {
                if let DbConn::Pg(c) = &mut *conn {
                    // One closer of this destination's periods at a time.
                    diesel::sql_query(format!(
                        "SELECT 1 FROM push_destinations WHERE account_id = {account_id} AND trigger = '{t}' \
                         AND transport = '{transport}' FOR UPDATE"
                    ))
                    .execute(c)?;
                }
                let ext = match &settings {
                    DeliverySettings::Ftp(f) => f.format.extension(),
                    _ => "csv",
                };
                let period = PeriodDest {
                    account_id,
                    trigger: t,
                    transport,
                    period_ms: settings.period_ms().unwrap_or(FALLBACK_PERIOD_MS),
                    ext,
                };
                close_periods(conn, &period, now, MAX_PARCELS_PER_CLAIM)?;
            }
            let requests = if ordered { 1 } else { max_requests.max(1) };
            let limit = (requests * batch_size).min(MAX_CLAIM.max(batch_size));
            // The destination, the time and the limit are parameters: one
            // prepared statement per connection (see `due_destinations`).
            let base = format!(" AND status = '{PENDING}'");
            let candidates = Cached::new()
                .sql(" FROM deliveries WHERE account_id = ")
                .int(account_id)
                .sql(" AND trigger = ")
                .text(t)
                .sql(" AND transport = ")
                .text(transport)
                .sql(&base);
            let pg = matches!(conn, DbConn::Pg(_));
            let mut leased: Vec<Leased> = if ordered {
                let query = Cached::new()
                    .sql("SELECT id, next_at, lease_until")
                    .append(candidates)
                    .sql(" ORDER BY id LIMIT ")
                    .int(limit)
                    .sql(if pg { " FOR UPDATE" } else { "" });
                let head: Vec<Candidate> = on_conn!(&mut *conn, |c| query.load(c))?;
                let ids: Vec<i64> = head
                    .iter()
                    .take_while(|r| r.next_at <= now && r.lease_until.is_none_or(|l| l <= now))
                    .map(|r| r.id)
                    .collect();
                lease(conn, account_id, &ids, lease_until, worker)?
            } else {
                let due = candidates
                    .sql(" AND id > ")
                    .int(after)
                    .sql(" AND next_at <= ")
                    .int(now)
                    .sql(" AND (lease_until IS NULL OR lease_until <= ")
                    .int(now)
                    .sql(") ORDER BY id LIMIT ")
                    .int(limit);
                match &mut *conn {
                    // Selected, locked and leased in one statement (one
                    // round trip): the ids as an array (an InitPlan), so
                    // the update looks them up by primary key whatever the
                    // generic plan guesses of the LIMIT.
                    DbConn::Pg(c) => Cached::new()
                        .sql("UPDATE deliveries SET lease_until = ")
                        .int(lease_until)
                        .sql(", claimed_by = ")
                        .text(worker)
                        .sql(" WHERE account_id = ")
                        .int(account_id)
                        .sql(" AND id = ANY(ARRAY(SELECT id")
                        .append(due)
                        .sql(
                            " FOR UPDATE SKIP LOCKED)) \
                             RETURNING id, event_id, failures, label, period_start",
                        )
                        .load(c)?,
                    DbConn::Sqlite(c) => {
                        let rows: Vec<Candidate> = Cached::new()
                            .sql("SELECT id, next_at, lease_until")
                            .append(due)
                            .load(c)?;
                        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                        lease(conn, account_id, &ids, lease_until, worker)?
                    }
                }
            };
            if leased.is_empty() {
                return Ok(Some(Claim {
                    settings,
                    secrets,
                    rows: Vec::new(),
                    members: HashMap::new(),
                    config_version,
                }));
            }
            leased.sort_by_key(|r| r.id);
            // Payloads are stored once, in the history. Event ids are
            // UUIDv7 and deliveries are made in ingest order, so the events
            // of a claim are (nearly) consecutive in the history: one range
            // read (`in_order`) rather than a lookup per event.
            let mut events: Vec<&str> = leased
                .iter()
                .filter(|r| r.label.is_none())
                .map(|r| r.event_id.as_str())
                .collect();
            events.sort_unstable();
            events.dedup();
            let payloads = payloads::in_order(conn, account_id, &events)?;
            let found: HashMap<String, String> = events.iter().map(|e| e.to_string()).zip(payloads).collect();
            let rows: Vec<ClaimedRow> = leased
                .into_iter()
                .map(|r| ClaimedRow {
                    payload: match r.label {
                        Some(_) => String::new(),
                        None => found
                            .get(r.event_id.as_str())
                            .cloned()
                            .unwrap_or_else(|| payloads::missing_payload(&r.event_id)),
                    },
                    id: r.id,
                    event_id: r.event_id,
                    failures: r.failures,
                    label: r.label,
                    period_start: r.period_start,
                })
                .collect();
            let mut parcels = HashMap::new();
            for r in rows.iter().filter(|r| r.label.is_some()) {
                parcels.insert(r.id, members(conn, account_id, r.id)?);
            }
            Ok(Some(Claim {
                settings,
                secrets,
                rows,
                members: parcels,
                config_version,
            }))
        })
    }

    /// Extends to `until` the lease of the rows of `held` (account → ids)
    /// that `worker` still holds and are still pending; returns them.
    pub fn renew_leases(
        &self,
        worker: &str,
        held: &HashMap<i64, Vec<i64>>,
        until: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.write_relaxed(|conn| {
            let mut renewed = Vec::new();
            for (account_id, ids) in held {
                for chunk in ids.chunks(1000) {
                    let account = super::of_account(conn, *account_id);
                    let done: Vec<i64> = on_conn!(&mut *conn, |c| diesel::update(
                        deliveries::table
                            .filter(account.clone())
                            .filter(deliveries::id.eq_any(chunk))
                            .filter(deliveries::claimed_by.eq(worker))
                            .filter(deliveries::status.eq(PENDING))
                    )
                    .set(deliveries::lease_until.eq(until))
                    .returning(deliveries::id)
                    .get_results(c))?;
                    renewed.extend(done.into_iter().map(|id| (*account_id, id)));
                }
            }
            Ok(renewed)
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
}

/// (id, event_id, failures, label, period_start) of a leased row.
type LeasedColumns = (i64, String, i64, Option<String>, Option<i64>);

/// Marks the rows `ids` of the account leased to `worker` until
/// `lease_until`; returns them. On PostgreSQL a typed statement (`id =
/// ANY($1)`), prepared once per connection; on SQLite the ids are literals
/// and the account term is `+account_id` ([`super::of_account`]).
fn lease(conn: &mut DbConn, account_id: i64, ids: &[i64], lease_until: i64, worker: &str) -> StoreResult<Vec<Leased>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        DbConn::Pg(c) => {
            let rows: Vec<LeasedColumns> = diesel::update(
                deliveries::table
                    .filter(deliveries::account_id.eq(account_id))
                    .filter(deliveries::id.eq_any(ids)),
            )
            .set((
                deliveries::lease_until.eq(lease_until),
                deliveries::claimed_by.eq(worker),
            ))
            .returning((
                deliveries::id,
                deliveries::event_id,
                deliveries::failures,
                deliveries::label,
                deliveries::period_start,
            ))
            .get_results(c)?;
            Ok(rows
                .into_iter()
                .map(|(id, event_id, failures, label, period_start)| Leased {
                    id,
                    event_id,
                    failures,
                    label,
                    period_start,
                })
                .collect())
        }
        DbConn::Sqlite(c) => {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            debug_assert!(worker.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let sql = format!(
                "UPDATE deliveries SET lease_until = {lease_until}, claimed_by = '{worker}' \
                 WHERE {} AND id IN ({}) RETURNING id, event_id, failures, label, period_start",
                super::sqlite_account_term(account_id),
                list.join(",")
            );
            Ok(diesel::sql_query(&sql).load(c)?)
        }
    }
}
