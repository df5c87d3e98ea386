//! PAINT login contexts (see `src/paint`): created at login, touched by each
//! call, ended by logout or by staying idle longer than the configured
//! period. Kept in the database so that any node can serve any call.
//!
//! A context names the API key it was opened with, and every call checks
//! in the database that this key is still live: revoking the key ends its
//! contexts at once, on every node (nothing about keys is cached).

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use super::schema::{api_keys, paint_contexts};
use super::{Store, StoreResult};
use crate::on_conn;

impl Store {
    /// Records a new context opened with the key whose hash is `key_hash`
    /// (and drops the account's expired ones); false if that key is not a
    /// live key of the account (revoked meanwhile).
    pub fn create_paint_context(
        &self,
        account_id: i64,
        id_hash: &str,
        key_hash: &str,
        now: i64,
        idle_ms: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                diesel::delete(
                    paint_contexts::table
                        .filter(paint_contexts::account_id.eq(account_id))
                        .filter(paint_contexts::last_used_at.le(now - idle_ms)),
                )
                .execute(c)?;
                let key = api_keys::table
                    .filter(api_keys::account_id.eq(account_id))
                    .filter(api_keys::key_hash.eq(key_hash))
                    .filter(api_keys::revoked_at.is_null())
                    .select((
                        api_keys::account_id,
                        id_hash.into_sql::<diesel::sql_types::Text>(),
                        api_keys::id,
                        now.into_sql::<diesel::sql_types::BigInt>(),
                        now.into_sql::<diesel::sql_types::BigInt>(),
                    ));
                let n = diesel::insert_into(paint_contexts::table)
                    .values(key)
                    .into_columns((
                        paint_contexts::account_id,
                        paint_contexts::id,
                        paint_contexts::key_id,
                        paint_contexts::created_at,
                        paint_contexts::last_used_at,
                    ))
                    .execute(c)?;
                Ok(n == 1)
            })
        })
    }

    /// Marks a live context used now; false if it is unknown, expired, or
    /// its key was revoked.
    pub fn touch_paint_context(&self, account_id: i64, id_hash: &str, now: i64, idle_ms: i64) -> StoreResult<bool> {
        self.write(|conn| {
            on_conn!(conn, |c| {
                let n = diesel::update(
                    paint_contexts::table
                        .filter(paint_contexts::account_id.eq(account_id))
                        .filter(paint_contexts::id.eq(id_hash))
                        .filter(paint_contexts::last_used_at.gt(now - idle_ms))
                        .filter(sql::<Bool>(
                            "EXISTS (SELECT 1 FROM api_keys k WHERE k.account_id = paint_contexts.account_id \
                             AND k.id = paint_contexts.key_id AND k.revoked_at IS NULL)",
                        )),
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
