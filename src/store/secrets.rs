//! Secrets of the installation (`server_secrets`): made once by whichever
//! node asks first, then read by every node.

use diesel::prelude::*;

use super::schema::server_secrets;
use super::{Store, StoreResult};
use crate::domain::time::now_ms;
use crate::on_conn;

impl Store {
    /// The secret named `name`; `make` gives its value if none exists yet
    /// (when several nodes start at once, the first insert wins and every
    /// node reads that one).
    pub fn server_secret(&self, name: &str, make: impl FnOnce() -> String) -> StoreResult<String> {
        let value = make();
        self.write(|conn| {
            on_conn!(conn, |c| {
                diesel::insert_into(server_secrets::table)
                    .values((
                        server_secrets::name.eq(name),
                        server_secrets::value.eq(&value),
                        server_secrets::created_at.eq(now_ms()),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)?;
                Ok(server_secrets::table
                    .find(name)
                    .select(server_secrets::value)
                    .first(c)?)
            })
        })
    }
}
