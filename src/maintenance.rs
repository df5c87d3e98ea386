//! Background upkeep: history retention, optional queue expiry, and batch
//! bookkeeping. Runs on every node; each step is idempotent and deletes in
//! small statements, so concurrent runs only share the work.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::time::{cutoff, now_ms};
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult};

/// Rows per delete statement.
const PRUNE_CHUNK: i64 = 5_000;
/// Closed batches are remembered this long (mark-read stays idempotent).
const BATCH_MEMORY_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Retention {
    pub history: Duration,
    pub queue_max_age: Option<Duration>,
    pub interval: Duration,
}

/// One round of the queue's upkeep: the rows of batches marked read that
/// the sweeper has not reached (it runs on its own after each mark-read;
/// this is the backstop), optional queue expiry, batch bookkeeping, and on
/// PostgreSQL a VACUUM of the queue's tables so that their dead rows'
/// space is reused. Cheap at any history size, so it runs on its own
/// timer, never behind the history's upkeep: the queue's tables stay
/// small while millions of events flow through them.
pub fn queue_once(store: &Store, metrics: &Metrics, r: &Retention) -> StoreResult<()> {
    let now = now_ms();
    let history = store.sweep_read_batches(cutoff(now, r.history))?;
    metrics.history_pruned.inc_by(history);
    if let Some(age) = r.queue_max_age {
        let expired = store.expire_queue(cutoff(now, age), now, PRUNE_CHUNK)?;
        if expired > 0 {
            tracing::warn!(expired, "unread pull events deleted for exceeding --queue-max-age");
        }
        metrics.queue_expired.inc_by(expired);
    }
    let expired_batches = store.mark_expired_batches(now)?;
    metrics.batches.with_label_values(&["expired"]).inc_by(expired_batches);
    store.prune_batches(now - BATCH_MEMORY_MS)?;
    // Last: the space of what this round and the sweeper deleted becomes
    // reusable (see `store/vacuum.rs`).
    store.vacuum_queue()?;
    Ok(())
}

/// One round of the history's upkeep: history and activity retention, then
/// on PostgreSQL a VACUUM of the history and push tables (which takes
/// longer as the history grows).
pub fn history_once(store: &Store, metrics: &Metrics, r: &Retention) -> StoreResult<()> {
    let before = cutoff(now_ms(), r.history);
    let pruned = store.prune_history(before, PRUNE_CHUNK)?;
    metrics.history_pruned.inc_by(pruned);
    store.prune_activity(before)?;
    store.vacuum_rest()?;
    Ok(())
}

/// Runs [`queue_once`] and [`history_once`], each every `interval` (a round
/// that took longer is followed by the next at once), until `shutdown`
/// turns true.
pub async fn run(store: Store, metrics: Arc<Metrics>, r: Retention, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        every(
            store.clone(),
            metrics.clone(),
            r.clone(),
            shutdown.clone(),
            "queue",
            queue_once
        ),
        every(store, metrics, r, shutdown, "history", history_once),
    );
}

async fn every(
    store: Store,
    metrics: Arc<Metrics>,
    r: Retention,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    round: fn(&Store, &Metrics, &Retention) -> StoreResult<()>,
) {
    let mut next = tokio::time::Instant::now() + r.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
        // Fixed rate: with a history that takes longer to prune and vacuum
        // than the interval, a pause after each round only let it grow
        // (PostgreSQL churn, docs/PERFORMANCE.md, eighth session).
        next = tokio::time::Instant::now().max(next) + r.interval;
        let (s, m, rr) = (store.clone(), metrics.clone(), r.clone());
        match tokio::task::spawn_blocking(move || round(&s, &m, &rr)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, what, "maintenance round failed; will retry"),
            Err(e) => tracing::warn!(error = %e, what, "maintenance round panicked"),
        }
    }
}
