//! Destinations of the delivery pipeline, one per (account, trigger,
//! transport): the transport's last settings (http, email or ftp), the
//! signing secret of http (and the previous one during a rotation) and
//! health. Deliveries keep the transport they were accepted for, so a
//! trigger switched to another destination still sends what it had.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::log::{DEAD, PENDING};
use super::parcels::OPEN;
use crate::domain::time::now_ms;
use crate::domain::{Trigger, TriggerConfig};
use crate::on_conn;
use crate::store::schema::{deliveries, push_destinations};
use crate::store::triggers::upsert_config;
use crate::store::{DbConn, Store, StoreError, StoreResult};

pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";
/// Shown (never stored) for an active destination inside a Retry-After pause.
pub const PAUSED: &str = "paused";

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    #[diesel(sql_type = Text)]
    pub trigger: String,
    /// `http`, `email` or `ftp`.
    #[diesel(sql_type = Text)]
    pub transport: String,
}

const HTTP: &str = "http";

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
    /// Events waiting for their period's mail or file to be made.
    pub collecting: i64,
}

impl Store {
    /// Saves a configuration other than http. As any change of the
    /// configuration, it resumes the trigger's push destination if it has
    /// one (SPEC §6): its pending deliveries keep going to its last http
    /// settings.
    pub fn put_trigger_config(&self, account_id: i64, trigger: Trigger, config: &TriggerConfig) -> StoreResult<()> {
        let now = now_ms();
        self.write(|conn| {
            upsert_config(conn, account_id, trigger, config)?;
            resume_destination(conn, account_id, trigger.as_str(), None, now)?;
            Ok(())
        })
    }

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
                .filter(push_destinations::transport.eq(HTTP))
                .select(push_destinations::secret)
                .first(c)
                .optional())?;
            let settings = config.settings.to_string();
            if existing.is_some() {
                resume_destination(conn, account_id, trigger.as_str(), Some(HTTP), now)?;
                on_conn!(&mut *conn, |c| diesel::update(
                    push_destinations::table
                        .filter(push_destinations::account_id.eq(account_id))
                        .filter(push_destinations::trigger.eq(trigger.as_str()))
                        .filter(push_destinations::transport.eq(HTTP))
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
                    push_destinations::transport.eq(HTTP),
                    push_destinations::settings.eq(&settings),
                    push_destinations::secret.eq(fresh_secret),
                    push_destinations::state.eq(ACTIVE),
                    push_destinations::created_at.eq(now),
                    push_destinations::updated_at.eq(now),
                ))
                .execute(c))?;
            // Trigger names are a closed set and the rest are integers.
            let sql = format!(
                "INSERT INTO deliveries (account_id, trigger, event_id, status, attempts, next_at, \
                 created_at, updated_at) \
                 SELECT account_id, trigger, id, '{PENDING}', 0, {now}, {now}, {now} FROM events \
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

    /// Saves an email or ftp configuration and its destination (created the
    /// first time, resumed and given the new settings after). Events
    /// accepted before are not re-sent: there is no backfill.
    pub fn put_delivered_config(&self, account_id: i64, trigger: Trigger, config: &TriggerConfig) -> StoreResult<()> {
        let now = now_ms();
        let transport = config.destination.as_str();
        let settings = config.settings.to_string();
        self.write(|conn| {
            upsert_config(conn, account_id, trigger, config)?;
            let n = resume_destination(conn, account_id, trigger.as_str(), Some(transport), now)?;
            if n > 0 {
                on_conn!(&mut *conn, |c| diesel::update(
                    push_destinations::table
                        .filter(push_destinations::account_id.eq(account_id))
                        .filter(push_destinations::trigger.eq(trigger.as_str()))
                        .filter(push_destinations::transport.eq(transport))
                )
                .set(push_destinations::settings.eq(&settings))
                .execute(c))?;
                return Ok(());
            }
            on_conn!(&mut *conn, |c| diesel::insert_into(push_destinations::table)
                .values((
                    push_destinations::account_id.eq(account_id),
                    push_destinations::trigger.eq(trigger.as_str()),
                    push_destinations::transport.eq(transport),
                    push_destinations::settings.eq(&settings),
                    push_destinations::secret.eq(""),
                    push_destinations::state.eq(ACTIVE),
                    push_destinations::created_at.eq(now),
                    push_destinations::updated_at.eq(now),
                ))
                .execute(c))?;
            Ok(())
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
                    .filter(push_destinations::transport.eq(HTTP))
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

    /// The signing secrets of a trigger's destination (see [`Claim::secrets`](super::Claim::secrets)),
    /// if it ever had one.
    pub fn push_secrets(&self, account_id: i64, trigger: Trigger) -> StoreResult<Option<Vec<String>>> {
        let now = now_ms();
        self.read(|conn| {
            let row: Option<(String, Option<String>, Option<i64>)> = on_conn!(conn, |c| push_destinations::table
                .filter(push_destinations::account_id.eq(account_id))
                .filter(push_destinations::trigger.eq(trigger.as_str()))
                .filter(push_destinations::transport.eq(HTTP))
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

    /// Resumes a trigger's suspended (or paused) destinations, of every
    /// transport. NotFound if none.
    pub fn resume_push(&self, account_id: i64, trigger: Trigger) -> StoreResult<()> {
        let now = now_ms();
        let n = self.write(|conn| resume_destination(conn, account_id, trigger.as_str(), None, now))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The health of a trigger's destination of one transport, if it ever had one.
    pub fn push_status(&self, account_id: i64, trigger: Trigger, transport: &str) -> StoreResult<Option<PushStatus>> {
        let now = now_ms();
        self.read(|conn| {
            on_conn!(conn, |c| {
                type Row = (String, i64, i64, Option<String>, Option<i64>, Option<i64>);
                let row: Option<Row> = push_destinations::table
                    .filter(push_destinations::account_id.eq(account_id))
                    .filter(push_destinations::trigger.eq(trigger.as_str()))
                    .filter(push_destinations::transport.eq(transport))
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
                        .filter(deliveries::transport.eq(transport))
                        .filter(deliveries::status.eq(status))
                        .count()
                        .get_result(c)
                };
                let paused = paused_until > now;
                Ok(Some(PushStatus {
                    state: if state == ACTIVE && paused {
                        PAUSED.to_string()
                    } else {
                        state
                    },
                    consecutive_failures,
                    paused_until: paused.then_some(paused_until),
                    last_error,
                    last_error_at,
                    suspended_at,
                    pending: count(PENDING, c)?,
                    dead: count(DEAD, c)?,
                    collecting: count(OPEN, c)?,
                }))
            })
        })
    }
}

/// The current secret, then the previous one while its overlap lasts.
pub(super) fn secrets(current: String, previous: Option<String>, until: Option<i64>, now: i64) -> Vec<String> {
    let mut out = vec![current];
    if let (Some(p), Some(u)) = (previous, until) {
        if u > now {
            out.push(p);
        }
    }
    out
}

/// Resumes a destination (active, no failure streak, no pause) and makes its
/// pending deliveries due now: those waiting for a Retry-After or a retry
/// step are sent at once. The configuration version changes, so requests in
/// flight with the old one do not count against it.
/// With `transport` None, all of the trigger's destinations.
pub(super) fn resume_destination(
    conn: &mut DbConn,
    account_id: i64,
    trigger: &str,
    transport: Option<&str>,
    now: i64,
) -> StoreResult<usize> {
    let transports: Vec<&str> = match transport {
        Some(t) => vec![t],
        None => vec!["http", "email", "ftp"],
    };
    let n = on_conn!(&mut *conn, |c| diesel::update(
        push_destinations::table
            .filter(push_destinations::account_id.eq(account_id))
            .filter(push_destinations::trigger.eq(trigger))
            .filter(push_destinations::transport.eq_any(&transports))
    )
    .set((
        push_destinations::state.eq(ACTIVE),
        push_destinations::consecutive_failures.eq(0),
        push_destinations::paused_until.eq(0),
        push_destinations::suspended_at.eq(None::<i64>),
        push_destinations::updated_at.eq(now),
        push_destinations::config_version.eq(push_destinations::config_version + 1),
    ))
    .execute(c))?;
    if n > 0 {
        on_conn!(&mut *conn, |c| diesel::update(
            deliveries::table
                .filter(deliveries::account_id.eq(account_id))
                .filter(deliveries::trigger.eq(trigger))
                .filter(deliveries::transport.eq_any(&transports))
                .filter(deliveries::status.eq(PENDING))
                .filter(deliveries::next_at.gt(now))
        )
        .set(deliveries::next_at.eq(now))
        .execute(c))?;
    }
    Ok(n)
}
