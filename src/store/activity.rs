//! Per-minute activity counters (`activity` table) behind `GET /v1/stats`:
//! events ingested, pulled (deleted by a mark-read), and pushed (delivered,
//! failed) per account, trigger and minute. Rows are added to by periodic
//! flushes of in-memory counters (see the `activity` module), never per event.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::upsert::excluded;

use super::schema::activity;
use super::{Store, StoreResult};
use crate::on_conn;

/// Counts of one account, trigger and minute (`minute`: epoch ms of its start).
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = activity)]
pub struct ActivityRow {
    pub account_id: i64,
    pub minute: i64,
    pub trigger: String,
    pub ingested: i64,
    pub pulled: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Sums of one trigger over one bucket of a query.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ActivityBucket {
    #[diesel(sql_type = Text)]
    pub trigger: String,
    /// Index of the bucket from the query's start.
    #[diesel(sql_type = BigInt)]
    pub bucket: i64,
    #[diesel(sql_type = BigInt)]
    pub ingested: i64,
    #[diesel(sql_type = BigInt)]
    pub pulled: i64,
    #[diesel(sql_type = BigInt)]
    pub delivered: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

impl Store {
    /// Adds counts to their minutes (several nodes may add to one row), in
    /// one transaction.
    pub fn add_activity(&self, rows: &[ActivityRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(|conn| {
            on_conn!(conn, |c| {
                for row in rows {
                    diesel::insert_into(activity::table)
                        .values(row)
                        .on_conflict((activity::account_id, activity::minute, activity::trigger))
                        .do_update()
                        .set((
                            activity::ingested.eq(activity::ingested + excluded(activity::ingested)),
                            activity::pulled.eq(activity::pulled + excluded(activity::pulled)),
                            activity::delivered.eq(activity::delivered + excluded(activity::delivered)),
                            activity::failed.eq(activity::failed + excluded(activity::failed)),
                        ))
                        .execute(c)?;
                }
                Ok(())
            })
        })
    }

    /// An account's counts from `from_ms` (inclusive) to `to_ms` (exclusive)
    /// summed per trigger and bucket of `step_ms`; empty buckets are absent.
    pub fn activity(
        &self,
        account_id: i64,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> StoreResult<Vec<ActivityBucket>> {
        let step = step_ms.max(1);
        // Integers only are formatted into the statement.
        let sql = format!(
            "SELECT trigger, CAST((minute - {from_ms}) / {step} AS BIGINT) AS bucket, \
             CAST(SUM(ingested) AS BIGINT) AS ingested, CAST(SUM(pulled) AS BIGINT) AS pulled, \
             CAST(SUM(delivered) AS BIGINT) AS delivered, CAST(SUM(failed) AS BIGINT) AS failed \
             FROM activity WHERE account_id = {account_id} AND minute >= {from_ms} AND minute < {to_ms} \
             GROUP BY trigger, bucket ORDER BY bucket, trigger"
        );
        self.read(|conn| on_conn!(conn, |c| Ok(diesel::sql_query(sql.as_str()).load(c)?)))
    }
}
