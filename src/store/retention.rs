//! Retention: prunes the event history, old batch records and (optionally)
//! unread pull events past a maximum age. Every statement deletes at most
//! `limit` rows through an index, so no statement holds locks for long.

use diesel::prelude::*;
use diesel::sql_types::Text;

use std::collections::BTreeMap;

use super::leases;
use super::push::DELIVERED;
use super::queue_rows::{open_pieces, seq_in, SeqTrigger, ACKED, OPEN};
use super::queue_status::adjust_depth;
use super::schema::{accounts, activity, batches, events};
use super::{DbConn, Store, StoreResult};
use crate::on_conn;

/// The smallest UUIDv7 (as text) of an instant: ids below it are older.
fn uuid_v7_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64 & 0xFFFF_FFFF_FFFF;
    format!("{:08x}-{:04x}-7000-8000-000000000000", ms >> 16, ms & 0xFFFF)
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    trigger: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    received_at: i64,
}

/// Who takes the history guard of an account (PostgreSQL; SQLite's writes
/// are serialised already).
#[derive(Clone, Copy)]
pub(crate) enum HistoryGuard {
    /// A statement that deletes history rows no pending delivery needs
    /// (retention, the sweep). Deleters share the guard.
    Delete,
    /// A delivered delivery made pending again: its event must not leave
    /// between the check that it is there and the commit. Exclusive.
    Keep,
}

/// Takes the account's history guard for the rest of the transaction.
///
/// A delete decides, in its statement's snapshot, that no delivery still
/// needs an event; a retry that commits meanwhile would make a delivered
/// delivery pending again with its event deleted under it (PostgreSQL's
/// row locks cannot close this: the delete does not re-read the
/// deliveries after waiting). With the guard, a retry waits for the
/// deletes in flight and the next deletes' statements start after it
/// committed, so they see the delivery pending.
pub(crate) fn history_guard(conn: &mut DbConn, account_id: i64, who: HistoryGuard) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        let f = match who {
            HistoryGuard::Delete => "pg_advisory_xact_lock_shared",
            HistoryGuard::Keep => "pg_advisory_xact_lock",
        };
        // Its own key space (3710 serialises claims).
        diesel::sql_query(format!(
            "SELECT {f}(3711, {})",
            account_id.rem_euclid(i64::from(i32::MAX))
        ))
        .execute(c)?;
    }
    Ok(())
}

impl HeadRow {
    fn mask(&self) -> leases::Mask {
        self.trigger
            .parse::<crate::domain::Trigger>()
            .map(leases::bit)
            .unwrap_or(leases::ALL)
    }
}

impl Store {
    fn account_ids(&self) -> StoreResult<Vec<i64>> {
        self.read(|conn| on_conn!(conn, |c| Ok(accounts::table.select(accounts::id).load(c)?)))
    }

    /// Deletes history events received before `cutoff_ms` that no queue
    /// row and no delivery refers to (their payload is stored only there),
    /// walking the account's history in id (time) order, `limit` ids per
    /// statement. Returns how many were deleted.
    pub fn prune_history(&self, cutoff_ms: i64, limit: i64) -> StoreResult<u64> {
        let floor = uuid_v7_floor(cutoff_ms);
        let mut total = 0u64;
        for account in self.account_ids()? {
            // Ids above `after` are still to be examined ("" is below all).
            let mut after = String::new();
            loop {
                let (n, next) = self.write(|conn| {
                    history_guard(conn, account, HistoryGuard::Delete)?;
                    let [p1, p2, p3] = match conn {
                        DbConn::Pg(_) => ["$1", "$2", "$3"],
                        DbConn::Sqlite(_) => ["?"; 3],
                    };
                    on_conn!(conn, |c| {
                        // The limit-th id of the window: examine up to it.
                        let bound: Option<String> = events::table
                            .filter(events::account_id.eq(account))
                            .filter(events::id.gt(&after))
                            .filter(events::id.lt(&floor))
                            .order(events::id)
                            .select(events::id)
                            .offset(limit - 1)
                            .first(c)
                            .optional()?;
                        let upto = bound.clone().unwrap_or_else(|| floor.clone());
                        // A queued event's row names it by seq and id (SQLite
                        // may give a seq again once the queue's tail is gone).
                        let n = diesel::sql_query(format!(
                            "DELETE FROM events WHERE account_id = {account} AND id > {p1} AND id <= {p2} AND id < {p3} \
                             AND (seq IS NULL OR NOT EXISTS (SELECT 1 FROM pull_queue q WHERE q.account_id = {account} \
                             AND q.seq = events.seq AND q.event_id = events.id)) \
                             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.account_id = {account} \
                             AND d.event_id = events.id AND d.status <> '{DELIVERED}')"
                        ))
                        .bind::<Text, _>(&after)
                        .bind::<Text, _>(&upto)
                        .bind::<Text, _>(&floor)
                        .execute(c)?;
                        Ok((n, bound))
                    })
                })?;
                total += n as u64;
                match next {
                    Some(id) => after = id,
                    None => break,
                }
            }
        }
        Ok(total)
    }

    /// Deletes activity counts (`GET /v1/stats`) of minutes before
    /// `cutoff_ms`, one account at a time through the primary key.
    pub fn prune_activity(&self, cutoff_ms: i64) -> StoreResult<u64> {
        let mut total = 0u64;
        for account in self.account_ids()? {
            let n = self.write(|conn| {
                on_conn!(conn, |c| Ok(diesel::delete(
                    activity::table
                        .filter(activity::account_id.eq(account))
                        .filter(activity::minute.lt(cutoff_ms))
                )
                .execute(c)?))
            })?;
            total += n as u64;
        }
        Ok(total)
    }

    /// Deletes unread pull events received before `cutoff_ms` that no open
    /// batch leases. Only the head of each account's queue is examined
    /// (oldest first, `limit` rows per statement), so the cost is bounded by
    /// what is deleted.
    pub fn expire_queue(&self, cutoff_ms: i64, now_ms: i64, limit: i64) -> StoreResult<u64> {
        let mut total = 0u64;
        for account in self.account_ids()? {
            let mut after = 0i64;
            loop {
                let (n, last) = self.write(|conn| {
                    let others = open_pieces(conn, account, now_ms, None)?;
                    // The next `limit` rows of the head, whatever their age.
                    let head: Vec<HeadRow> = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                        "SELECT seq, trigger, received_at FROM pull_queue WHERE account_id = {account} \
                         AND seq > {after} ORDER BY seq LIMIT {limit}"
                    ))
                    .load(c))?;
                    // Younger rows follow younger rows: stop at a head with none old.
                    let last = head
                        .iter()
                        .any(|r| r.received_at < cutoff_ms)
                        .then(|| head.last().map(|r| r.seq))
                        .flatten();
                    let old: Vec<i64> = head
                        .iter()
                        .filter(|r| r.received_at < cutoff_ms)
                        .filter(|r| !leases::covered(&others, r.seq, r.mask()))
                        .map(|r| r.seq)
                        .collect();
                    if old.is_empty() {
                        return Ok((0, last));
                    }
                    let sql = format!(
                        "DELETE FROM pull_queue WHERE account_id = {account} AND {} RETURNING seq, trigger",
                        seq_in(conn, &old)
                    );
                    let gone: Vec<SeqTrigger> = on_conn!(&mut *conn, |c| diesel::sql_query(&sql).load(c))?;
                    let mut delta: BTreeMap<String, i64> = BTreeMap::new();
                    for r in &gone {
                        *delta.entry(r.trigger.clone()).or_default() -= 1;
                    }
                    adjust_depth(conn, account, &delta)?;
                    Ok((gone.len(), last))
                })?;
                total += n as u64;
                match last {
                    Some(seq) => after = seq,
                    None => break,
                }
            }
        }
        Ok(total)
    }

    /// Forgets closed batches created before `cutoff_ms` (and open ones whose
    /// lease ran out before it), but not one marked read and not swept yet. Marking such a batch read later answers as
    /// an unknown batch.
    pub fn prune_batches(&self, cutoff_ms: i64) -> StoreResult<u64> {
        let n = self.write(|conn| {
            on_conn!(conn, |c| Ok(diesel::delete(
                batches::table
                    .filter(
                        batches::state
                            .ne(OPEN)
                            .and(batches::created_at.lt(cutoff_ms))
                            .or(batches::expires_at.lt(cutoff_ms))
                    )
                    // Its rows are still there, leased to it, until swept.
                    .filter(batches::state.ne(ACKED))
            )
            .execute(c)?))
        })?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_orders_like_v7_ids() {
        let ms = 1_764_000_000_000i64;
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, (ms / 1000) as u64, 0)).to_string();
        assert!(uuid_v7_floor(ms - 1) < id);
        assert!(uuid_v7_floor(ms + 1) > id);
    }
}
