//! The completer: writes the push worker's results (`AttemptOutcome`s) to
//! the database in batches, updates the destinations' suspensions and pauses
//! the dispatcher sees, counts the results for the activity view, and lets
//! go of the leases.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::lease::Leases;
use super::worker::{blocking, lock, DestMap, WorkerConfig};
use crate::activity::Activity;
use crate::store::push::{AttemptOutcome, OutcomeKind};
use crate::store::Store;

/// Results written per transaction, at most.
const FLUSH_MAX: usize = 2000;

/// Writes results in batches; retries a failed write rather than losing it
/// (until the leases run out, after which another worker sends again).
pub(super) async fn complete_loop(
    store: Store,
    worker_id: String,
    config: WorkerConfig,
    mut rx: mpsc::UnboundedReceiver<AttemptOutcome>,
    wake: Arc<Notify>,
    (dests, leases): (DestMap, Arc<Leases>),
) {
    let schedule: Arc<[i64]> = config.schedule_ms.clone().into();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < FLUSH_MAX {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let batch = Arc::new(batch);
        let mut delay = Duration::from_millis(100);
        for attempt in 0..20 {
            let (store, worker_id, results, schedule) =
                (store.clone(), worker_id.clone(), batch.clone(), schedule.clone());
            let suspend_after = config.suspend_after;
            let r = blocking(move || store.complete_deliveries(&worker_id, &results, &schedule, suspend_after)).await;
            match r {
                Ok(stopped) => {
                    if let Some(activity) = &config.activity {
                        count_results(activity, &batch);
                    }
                    let map = lock(&dests);
                    for (dest, until) in stopped {
                        if let Some(st) = map.get(&dest) {
                            st.stopped_until.store(until, Ordering::Relaxed);
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "push worker cannot record delivery results; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Written (or given up on: the leases then run out).
        for o in batch.iter() {
            leases.forget(o.dest.account_id, o.deliveries.iter().map(|(id, _)| *id));
        }
        wake.notify_one();
    }
}

/// Adds written results to the activity counters: each delivery of a
/// successful request is delivered, each of a failed one failed (a
/// Retry-After or 410 answer is a failed request too).
fn count_results(activity: &Activity, batch: &[AttemptOutcome]) {
    for o in batch {
        let n = o.deliveries.len() as i64;
        let (delivered, failed) = match o.kind {
            OutcomeKind::Success => (n, 0),
            OutcomeKind::Failure | OutcomeKind::Transient | OutcomeKind::Gone | OutcomeKind::RetryAfter(_) => (0, n),
            OutcomeKind::Released => (0, 0),
        };
        activity.pushed(o.dest.account_id, &o.dest.trigger, delivered, failed);
    }
}
