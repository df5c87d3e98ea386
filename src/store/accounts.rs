//! Accounts and API keys.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::{accounts, api_keys};
use super::{Store, StoreError, StoreResult};
use crate::domain::keys;
use crate::domain::time::now_ms;
use crate::on_conn;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
    pub account_id: i64,
    pub id: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
struct NewKey {
    account_id: i64,
    id: String,
    key_hash: String,
    prefix: String,
    created_at: i64,
}

/// A freshly created key: the only time its secret is known (which its
/// `Debug` form leaves out).
#[derive(Clone)]
pub struct CreatedKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn new_key(account_id: i64) -> (NewKey, CreatedKey) {
    let k = keys::generate();
    let id = keys::random_id("key");
    let row = NewKey {
        account_id,
        id: id.clone(),
        key_hash: k.hash,
        prefix: k.display_prefix,
        created_at: now_ms(),
    };
    (row, CreatedKey { id, secret: k.secret })
}

impl Store {
    /// Creates an account with its first key.
    pub fn create_account(&self, name: &str) -> StoreResult<(Account, CreatedKey)> {
        let now = now_ms();
        self.write(|conn| {
            on_conn!(conn, |c| {
                let account: Account = diesel::insert_into(accounts::table)
                    .values((accounts::name.eq(name), accounts::created_at.eq(now)))
                    .returning(Account::as_returning())
                    .get_result(c)
                    .map_err(StoreError::from)
                    .map_err(|e| {
                        if e.is_unique_violation() {
                            StoreError::Conflict(format!("an account named '{name}' exists"))
                        } else {
                            e
                        }
                    })?;
                let (row, key) = new_key(account.id);
                diesel::insert_into(api_keys::table).values(&row).execute(c)?;
                Ok((account, key))
            })
        })
    }

    pub fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| Ok(accounts::table
            .select(Account::as_select())
            .order(accounts::id)
            .load(c)?))
    }

    pub fn account_count(&self) -> StoreResult<i64> {
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| Ok(accounts::table.count().get_result(c)?))
    }

    pub fn find_account(&self, id: i64) -> StoreResult<Account> {
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| accounts::table
            .find(id)
            .select(Account::as_select())
            .first(c)
            .optional()?
            .ok_or(StoreError::NotFound))
    }

    pub fn find_account_by_name(&self, name: &str) -> StoreResult<Account> {
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| accounts::table
            .filter(accounts::name.eq(name))
            .select(Account::as_select())
            .first(c)
            .optional()?
            .ok_or(StoreError::NotFound))
    }

    pub fn create_key(&self, account_id: i64) -> StoreResult<CreatedKey> {
        self.find_account(account_id)?;
        let mut conn = self.writer()?;
        let (row, key) = new_key(account_id);
        on_conn!(&mut *conn, |c| diesel::insert_into(api_keys::table)
            .values(&row)
            .execute(c))?;
        Ok(key)
    }

    pub fn list_keys(&self, account_id: i64) -> StoreResult<Vec<KeyRow>> {
        self.find_account(account_id)?;
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| Ok(api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .select(KeyRow::as_select())
            .order(api_keys::created_at)
            .load(c)?))
    }

    /// Revokes a key at once; revoking twice is not an error.
    pub fn revoke_key(&self, account_id: i64, key_id: &str) -> StoreResult<()> {
        let mut conn = self.writer()?;
        let n = on_conn!(&mut *conn, |c| diesel::update(
            api_keys::table
                .filter(api_keys::account_id.eq(account_id))
                .filter(api_keys::id.eq(key_id))
        )
        .set(api_keys::revoked_at.eq(
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(&format!(
                "COALESCE(revoked_at, {})",
                now_ms()
            ))
        ))
        .execute(c)?);
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The account a live key belongs to.
    pub fn account_for_key(&self, secret: &str) -> StoreResult<Option<Account>> {
        let hash = keys::hash(secret);
        let mut conn = self.reader()?;
        on_conn!(&mut *conn, |c| Ok(api_keys::table
            .inner_join(accounts::table)
            .filter(api_keys::key_hash.eq(&hash))
            .filter(api_keys::revoked_at.is_null())
            .select(Account::as_select())
            .first(c)
            .optional()?))
    }
}
