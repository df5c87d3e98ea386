//! Reading events' stored JSON. A payload is stored once, in the history
//! (`events`); a queue row or a delivery holds its event's id.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::schema::events;
use super::DbConn;
use crate::on_conn;

#[derive(QueryableByName)]
struct Payload {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    payload: String,
}

/// Ids per `IN (…)` lookup.
const LOOKUP_CHUNK: usize = 500;

/// `id` as an SQL string literal.
pub(super) fn quoted(id: &str) -> String {
    format!("'{}'", id.replace('\'', "''"))
}

/// The payloads of some events of one account, by id (point lookups
/// through the primary key). Unknown ids are left out.
pub(crate) fn by_ids(conn: &mut DbConn, account_id: i64, ids: &[&str]) -> QueryResult<HashMap<String, String>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let list: Vec<String> = chunk.iter().map(|id| quoted(id)).collect();
        // The ids' range bounds what any plan reads: with stale statistics
        // PostgreSQL otherwise read every event of the account through a
        // bitmap of `account_id` alone (12,000 rows for 99 ids).
        let (lo, hi) = (chunk.iter().min().unwrap(), chunk.iter().max().unwrap());
        let sql = format!(
            "SELECT id, payload FROM events WHERE account_id = {account_id} AND id >= {} AND id <= {} AND id IN ({})",
            quoted(lo),
            quoted(hi),
            list.join(",")
        );
        let rows: Vec<Payload> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
        out.extend(rows.into_iter().map(|r| (r.id, r.payload)));
    }
    Ok(out)
}

/// The payloads of `ids` (events of one account), in the order given.
///
/// Event ids are UUIDv7, so an account's history is in time order and the
/// events of a claim are (nearly) consecutive in it: one range read over
/// the primary key from the smallest to the largest id fetches them all,
/// as fast as a read of the queue itself, where a lookup per event costs
/// 5-10 times more (measured on both backends). The read stops after twice
/// as many rows as wanted, so a sparse range (a one-trigger claim among
/// other triggers' events) falls back to point lookups for the rest.
pub(crate) fn in_order(conn: &mut DbConn, account_id: i64, ids: &[&str]) -> QueryResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted: Vec<&str> = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let (lo, hi) = (wanted[0], wanted[wanted.len() - 1]);
    let cap = 2 * wanted.len() as i64 + 64;
    // A typed statement (prepared once per connection, columns by position)
    // rather than a new SQL text whose columns are looked up by name on
    // every row.
    let range = events::table
        .filter(events::account_id.eq(account_id))
        .filter(events::id.ge(lo))
        .filter(events::id.le(hi))
        .order(events::id)
        .limit(cap)
        .select((events::id, events::payload));
    let mut rows: Vec<(String, String)> = match &mut *conn {
        // Row by row: each row is decoded while PostgreSQL sends the next.
        DbConn::Pg(c) => range
            .load_iter::<(String, String), diesel::pg::PgRowByRowLoadingMode>(c)?
            .collect::<QueryResult<_>>()?,
        DbConn::Sqlite(c) => range.load(c)?,
    };
    // Both sorted by id: keep the rows that are wanted, in one merge.
    let mut w = 0;
    rows.retain(|(id, _)| {
        while w < wanted.len() && wanted[w] < id.as_str() {
            w += 1;
        }
        w < wanted.len() && wanted[w] == id.as_str()
    });
    if rows.len() < wanted.len() {
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|id| rows.binary_search_by(|(r, _)| r.as_str().cmp(id)).is_err())
            .collect();
        rows.extend(by_ids(conn, account_id, &missing)?);
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    // `rows` is in id order; `ids` (seq order) nearly always is too, so
    // each id is usually the next row: a merge, with a binary search when
    // it is not (no hashing of 10,000 ids).
    let mut next = 0;
    Ok(ids
        .iter()
        .map(|id| {
            let at = match rows.get(next) {
                Some((r, _)) if r == id => Some(next),
                _ => rows.binary_search_by(|(r, _)| r.as_str().cmp(id)).ok(),
            };
            match at {
                // (Empty: already handed out for an earlier copy of the id.)
                Some(i) if !rows[i].1.is_empty() => {
                    next = i + 1;
                    std::mem::take(&mut rows[i].1)
                }
                _ => missing_payload(id),
            }
        })
        .collect())
}

/// What is sent for an event whose history row is gone (never expected:
/// retention keeps every event a queue row or a delivery refers to), so
/// that one lost row cannot block a queue forever.
pub(crate) fn missing_payload(id: &str) -> String {
    tracing::error!(
        event_id = id,
        "an event referred to by the queue or a delivery is missing from the history"
    );
    serde_json::json!({ "id": id }).to_string()
}
