//! Periods of email digests and FTP files. An event for such a destination
//! is stored at ingest as an `open` delivery row whose `next_at` is the end
//! of its period. Once a period has ended, its rows (at most
//! [`MAX_EVENTS_PER_FILE`] at a time) become the members (`batched`,
//! `parcel_id`) of one new pending delivery: the mail or file, with its
//! event count, period start and fixed name (`label`). That delivery then
//! goes through the pipeline like any other (lease, retry schedule, dead,
//! replay), always with the same members, so a retry sends the same
//! content under the same name. Closing a period is one transaction: a
//! crash before it leaves the rows open, after it leaves a pending parcel;
//! no event is lost or put in two files.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::log::PENDING;
use crate::domain::export::{file_name, MAX_EVENTS_PER_FILE};
use crate::on_conn;
use crate::store::schema::deliveries;
use crate::store::{DbConn, StoreResult};

/// An event waiting for its period to end.
pub const OPEN: &str = "open";
/// An event carried by a parcel (the mail or file of its period).
pub const BATCHED: &str = "batched";

/// A period is closed this long after its end, so that events received
/// just before the end and committed just after still make it (a later
/// one would go into a further file of the same period, never lost).
pub fn grace_ms(period_ms: i64) -> i64 {
    (period_ms / 10).min(1000)
}

/// The end of the period holding `received_at_ms`: the `next_at` of an open row.
pub fn period_end(received_at_ms: i64, period_ms: i64) -> i64 {
    let p = period_ms.max(1);
    (received_at_ms.div_euclid(p) + 1) * p
}

/// One destination, for [`close_periods`].
pub(crate) struct PeriodDest<'a> {
    pub account_id: i64,
    pub trigger: &'a str,
    pub transport: &'a str,
    pub period_ms: i64,
    /// File (or attachment) extension.
    pub ext: &'a str,
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    next_at: i64,
}

#[derive(QueryableByName)]
struct Member {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A parcel's member: (event id, stored event JSON).
#[derive(Debug, Clone, QueryableByName)]
pub struct MemberRow {
    #[diesel(sql_type = Text)]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
}

/// Closes up to `max_parcels` ended periods of one destination into
/// parcels; returns how many were made. Runs inside the caller's write
/// transaction, which must hold the destination (PostgreSQL: its row locked).
pub(crate) fn close_periods(conn: &mut DbConn, d: &PeriodDest, now: i64, max_parcels: usize) -> StoreResult<usize> {
    let PeriodDest {
        account_id,
        trigger,
        transport,
        period_ms,
        ext,
    } = *d;
    // Trigger and transport names are closed sets; the rest are integers.
    let base = format!("account_id = {account_id} AND trigger = '{trigger}' AND transport = '{transport}'");
    let due = now - grace_ms(period_ms);
    let mut made = 0;
    while made < max_parcels {
        let sql = format!(
            "SELECT next_at FROM deliveries WHERE {base} AND status = '{OPEN}' AND next_at <= {due} \
             ORDER BY next_at, id LIMIT 1"
        );
        let head: Vec<Head> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
        let Some(end) = head.first().map(|h| h.next_at) else {
            break;
        };
        let sql = format!(
            "SELECT id, event_id, created_at FROM deliveries WHERE {base} AND status = '{OPEN}' \
             AND next_at = {end} ORDER BY id LIMIT {MAX_EVENTS_PER_FILE}"
        );
        let members: Vec<Member> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
        let (Some(first), Some(last)) = (members.first(), members.last()) else {
            break;
        };
        let earliest = members.iter().map(|m| m.created_at).min().unwrap_or(first.created_at);
        let start = earliest.div_euclid(period_ms.max(1)) * period_ms.max(1);
        let sql = format!("SELECT COUNT(*) AS n FROM deliveries WHERE {base} AND period_start = {start}");
        let before: Vec<Count> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
        let part = before.first().map_or(0, |c| c.n) + 1;
        let label = file_name(account_id, trigger, start, part, ext);
        let values = (
            deliveries::account_id.eq(account_id),
            deliveries::trigger.eq(trigger),
            deliveries::transport.eq(transport),
            deliveries::event_id.eq(&first.event_id),
            deliveries::status.eq(PENDING),
            deliveries::attempts.eq(0),
            deliveries::next_at.eq(now),
            deliveries::created_at.eq(now),
            deliveries::updated_at.eq(now),
            deliveries::event_count.eq(members.len() as i64),
            deliveries::period_start.eq(Some(start)),
            deliveries::label.eq(Some(&label)),
        );
        let parcel: i64 = on_conn!(&mut *conn, |c| diesel::insert_into(deliveries::table)
            .values(values)
            .returning(deliveries::id)
            .get_result(c))?;
        let sql = format!(
            "UPDATE deliveries SET status = '{BATCHED}', parcel_id = {parcel}, updated_at = {now} \
             WHERE {base} AND status = '{OPEN}' AND next_at = {end} AND id >= {} AND id <= {}",
            first.id, last.id
        );
        on_conn!(&mut *conn, |c| diesel::sql_query(&sql).execute(c))?;
        made += 1;
    }
    Ok(made)
}

/// The members of parcels, oldest first.
pub(crate) fn members(conn: &mut DbConn, account_id: i64, parcel: i64) -> StoreResult<Vec<MemberRow>> {
    let sql = format!(
        "SELECT d.event_id, e.payload FROM deliveries d JOIN events e ON e.account_id = d.account_id \
         AND e.id = d.event_id WHERE d.account_id = {account_id} AND d.parcel_id = {parcel} ORDER BY d.id"
    );
    Ok(on_conn!(conn, |c| diesel::sql_query(&sql).load(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(period_end(0, 60_000), 60_000);
        assert_eq!(period_end(59_999, 60_000), 60_000);
        assert_eq!(period_end(60_000, 60_000), 120_000);
        assert_eq!(grace_ms(86_400_000), 1000);
        assert_eq!(grace_ms(1000), 100);
    }
}
