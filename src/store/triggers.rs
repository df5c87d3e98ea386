//! Per-trigger destination configuration.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::trigger_configs;
use super::{DbConn, Store, StoreResult};
use crate::domain::time::now_ms;
use crate::domain::{Destination, Trigger, TriggerConfig};
use crate::on_conn;

#[derive(Queryable)]
pub(crate) struct Row {
    trigger: String,
    destination: String,
    settings: String,
}

/// The configured triggers (a missing one has the default configuration).
pub(crate) fn to_map(rows: Vec<Row>) -> HashMap<Trigger, TriggerConfig> {
    rows.into_iter()
        .filter_map(|r| {
            let trigger = r.trigger.parse::<Trigger>().ok()?;
            let destination = r.destination.parse::<Destination>().ok()?;
            let settings = serde_json::from_str(&r.settings).unwrap_or_default();
            Some((trigger, TriggerConfig { destination, settings }))
        })
        .collect()
}

impl Store {
    pub fn trigger_configs(&self, account_id: i64) -> StoreResult<HashMap<Trigger, TriggerConfig>> {
        let mut conn = self.reader()?;
        let rows = on_conn!(&mut *conn, |c| trigger_configs::table
            .filter(trigger_configs::account_id.eq(account_id))
            .select((
                trigger_configs::trigger,
                trigger_configs::destination,
                trigger_configs::settings,
            ))
            .load::<Row>(c))?;
        Ok(to_map(rows))
    }
}

/// Saves a trigger's configuration on a connection (inside the caller's transaction).
pub(crate) fn upsert_config(
    conn: &mut DbConn,
    account_id: i64,
    trigger: Trigger,
    config: &TriggerConfig,
) -> StoreResult<()> {
    {
        let settings = config.settings.to_string();
        let now = now_ms();
        let values = (
            trigger_configs::account_id.eq(account_id),
            trigger_configs::trigger.eq(trigger.as_str()),
            trigger_configs::destination.eq(config.destination.as_str()),
            trigger_configs::settings.eq(&settings),
            trigger_configs::updated_at.eq(now),
        );
        on_conn!(conn, |c| diesel::insert_into(trigger_configs::table)
            .values(values)
            .on_conflict((trigger_configs::account_id, trigger_configs::trigger))
            .do_update()
            .set((
                trigger_configs::destination.eq(config.destination.as_str()),
                trigger_configs::settings.eq(&settings),
                trigger_configs::updated_at.eq(now),
            ))
            .execute(c))?;
        Ok(())
    }
}
