//! Retention: prunes the event history, old batch records and (optionally)
//! unread pull events past a maximum age. Every statement deletes at most
//! `limit` rows through an index, so no statement holds locks for long.

use diesel::prelude::*;

use super::schema::{accounts, batches, events, pull_queue};
use super::{Store, StoreResult};
use crate::on_conn;

/// The smallest UUIDv7 (as text) of an instant: ids below it are older.
fn uuid_v7_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64 & 0xFFFF_FFFF_FFFF;
    format!("{:08x}-{:04x}-7000-8000-000000000000", ms >> 16, ms & 0xFFFF)
}

impl Store {
    fn account_ids(&self) -> StoreResult<Vec<i64>> {
        self.read(|conn| on_conn!(conn, |c| Ok(accounts::table.select(accounts::id).load(c)?)))
    }

    /// Deletes history events received before `cutoff_ms`, at most `limit`
    /// per statement. Returns how many were deleted.
    pub fn prune_history(&self, cutoff_ms: i64, limit: i64) -> StoreResult<u64> {
        let floor = uuid_v7_floor(cutoff_ms);
        let mut total = 0u64;
        for account in self.account_ids()? {
            loop {
                let n = self.write(|conn| {
                    on_conn!(conn, |c| {
                        // The id of the limit-th oldest: delete up to it.
                        let bound: Option<String> = events::table
                            .filter(events::account_id.eq(account))
                            .filter(events::id.lt(&floor))
                            .order(events::id)
                            .select(events::id)
                            .offset(limit - 1)
                            .first(c)
                            .optional()?;
                        let upto = bound.unwrap_or_else(|| floor.clone());
                        Ok(diesel::delete(
                            events::table
                                .filter(events::account_id.eq(account))
                                .filter(events::id.lt(&floor))
                                .filter(events::id.le(&upto)),
                        )
                        .execute(c)?)
                    })
                })?;
                total += n as u64;
                if (n as i64) < limit {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Deletes unread pull events received before `cutoff_ms` that are not
    /// in an open batch. Only the head of each account's queue is examined
    /// (oldest first), so the cost is bounded by what is deleted.
    pub fn expire_queue(&self, cutoff_ms: i64, now_ms: i64, limit: i64) -> StoreResult<u64> {
        let mut total = 0u64;
        for account in self.account_ids()? {
            loop {
                let n = self.write(|conn| {
                    // The seq of the limit-th oldest row: look no further.
                    let bound: Option<i64> = on_conn!(&mut *conn, |c| pull_queue::table
                        .filter(pull_queue::account_id.eq(account))
                        .order(pull_queue::seq)
                        .select(pull_queue::seq)
                        .offset(limit - 1)
                        .first(c)
                        .optional())?;
                    let sql = format!(
                        "DELETE FROM pull_queue WHERE account_id = {account} AND seq <= {} \
                         AND received_at < {cutoff_ms} AND seq NOT IN ({})",
                        bound.unwrap_or(i64::MAX),
                        super::queue::leased_sql(conn, account, now_ms)
                    );
                    Ok(on_conn!(&mut *conn, |c| diesel::sql_query(&sql).execute(c))?)
                })?;
                total += n as u64;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Forgets closed batches created before `cutoff_ms` (and open ones whose
    /// lease ran out before it). Marking such a batch read later answers as
    /// an unknown batch.
    pub fn prune_batches(&self, cutoff_ms: i64) -> StoreResult<u64> {
        let n = self.write(|conn| {
            on_conn!(conn, |c| Ok(diesel::delete(
                batches::table.filter(
                    batches::state
                        .ne("open")
                        .and(batches::created_at.lt(cutoff_ms))
                        .or(batches::expires_at.lt(cutoff_ms))
                )
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
