//! Server-wide push figures for /metrics: suspended destinations and dead
//! deliveries. Dead ones are counted per destination through the
//! `deliveries_listing` index (account, trigger, status), never by a scan of
//! every delivery.

use diesel::prelude::*;

use super::push::{DEAD, SUSPENDED};
use super::schema::{deliveries, push_destinations};
use super::{Store, StoreResult};
use crate::on_conn;

impl Store {
    /// (suspended destinations, dead deliveries) over every account.
    pub fn push_totals(&self) -> StoreResult<(i64, i64)> {
        self.read(|conn| {
            on_conn!(conn, |c| {
                let destinations: Vec<(i64, String, String)> = push_destinations::table
                    .select((
                        push_destinations::account_id,
                        push_destinations::trigger,
                        push_destinations::state,
                    ))
                    .load(c)?;
                let suspended = destinations.iter().filter(|(_, _, s)| s == SUSPENDED).count() as i64;
                let mut dead = 0i64;
                for (account, trigger, _) in &destinations {
                    let n: i64 = deliveries::table
                        .filter(deliveries::account_id.eq(account))
                        .filter(deliveries::trigger.eq(trigger))
                        .filter(deliveries::status.eq(DEAD))
                        .count()
                        .get_result(c)?;
                    dead += n;
                }
                Ok((suspended, dead))
            })
        })
    }
}
