//! PAINT login contexts (see `src/paint`): created at login, touched by each
//! call, ended by logout or by staying idle longer than the configured
//! period. Kept in the database so that any node can serve any call.

use diesel::prelude::*;

use super::schema::paint_contexts;
use super::{Store, StoreResult};
use crate::on_conn;

impl Store {
    /// Records a new context (and drops the account's expired ones).
    pub fn create_paint_context(&self, account_id: i64, id_hash: &str, now: i64, idle_ms: i64) -> StoreResult<()> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                diesel::delete(
                    paint_contexts::table
                        .filter(paint_contexts::account_id.eq(account_id))
                        .filter(paint_contexts::last_used_at.le(now - idle_ms)),
                )
                .execute(c)?;
                diesel::insert_into(paint_contexts::table)
                    .values((
                        paint_contexts::account_id.eq(account_id),
                        paint_contexts::id.eq(id_hash),
                        paint_contexts::created_at.eq(now),
                        paint_contexts::last_used_at.eq(now),
                    ))
                    .execute(c)?;
                Ok(())
            })
        })
    }

    /// Marks a live context used now; false if it is unknown or expired.
    pub fn touch_paint_context(&self, account_id: i64, id_hash: &str, now: i64, idle_ms: i64) -> StoreResult<bool> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                let n = diesel::update(
                    paint_contexts::table
                        .filter(paint_contexts::account_id.eq(account_id))
                        .filter(paint_contexts::id.eq(id_hash))
                        .filter(paint_contexts::last_used_at.gt(now - idle_ms)),
                )
                .set(paint_contexts::last_used_at.eq(now))
                .execute(c)?;
                Ok(n == 1)
            })
        })
    }

    /// Ends a context; false if there was none.
    pub fn delete_paint_context(&self, account_id: i64, id_hash: &str) -> StoreResult<bool> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                let n = diesel::delete(
                    paint_contexts::table
                        .filter(paint_contexts::account_id.eq(account_id))
                        .filter(paint_contexts::id.eq(id_hash)),
                )
                .execute(c)?;
                Ok(n == 1)
            })
        })
    }
}
