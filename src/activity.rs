//! Activity counters for `GET /v1/stats`: what was ingested, pulled
//! (deleted by a mark-read) and pushed (delivered, failed) per account,
//! trigger and minute. Counted in memory right after each operation's
//! commit (one map update per request, never a row update per event) and
//! added to the `activity` table by [`Activity::run`] every flush interval
//! and once more when the process stops. A failed flush keeps its counts
//! for the next one. Shared by the API process and the push worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::store::activity::ActivityRow;
use crate::store::{Store, StoreResult};

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    ingested: i64,
    pulled: i64,
    delivered: i64,
    failed: i64,
}

type Key = (i64, i64, Trigger);

/// The counts not yet flushed, shared by every clone.
#[derive(Clone)]
pub struct Activity {
    store: Store,
    pending: Arc<Mutex<HashMap<Key, Counts>>>,
}

impl Activity {
    pub fn new(store: Store) -> Self {
        Activity {
            store,
            pending: Arc::default(),
        }
    }

    fn add(&self, account_id: i64, trigger: Trigger, f: impl Fn(&mut Counts)) {
        let minute = now_ms().div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry((account_id, minute, trigger)).or_default());
    }

    /// Events committed by an ingest, per trigger.
    pub fn ingested(&self, account_id: i64, by_trigger: &[(Trigger, usize)]) {
        for (t, n) in by_trigger {
            self.add(account_id, *t, |c| c.ingested += *n as i64);
        }
    }

    /// Events deleted by a committed mark-read, per trigger.
    pub fn pulled(&self, account_id: i64, by_trigger: &[(Trigger, i64)]) {
        for (t, n) in by_trigger {
            self.add(account_id, *t, |c| c.pulled += *n);
        }
    }

    /// Push results written to the database: deliveries sent successfully,
    /// and deliveries whose request failed.
    pub fn pushed(&self, account_id: i64, trigger: &str, delivered: i64, failed: i64) {
        let Ok(trigger) = trigger.parse::<Trigger>() else {
            return;
        };
        if delivered != 0 || failed != 0 {
            self.add(account_id, trigger, |c| {
                c.delivered += delivered;
                c.failed += failed;
            });
        }
    }

    /// Writes the pending counts (blocking). On failure they are kept.
    pub fn flush(&self) -> StoreResult<usize> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return Ok(0);
        }
        let rows: Vec<ActivityRow> = taken
            .iter()
            .map(|((account_id, minute, trigger), c)| ActivityRow {
                account_id: *account_id,
                minute: *minute,
                trigger: trigger.as_str().to_string(),
                ingested: c.ingested,
                pulled: c.pulled,
                delivered: c.delivered,
                failed: c.failed,
            })
            .collect();
        match self.store.add_activity(&rows) {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (k, c) in taken {
                    let e = map.entry(k).or_default();
                    e.ingested += c.ingested;
                    e.pulled += c.pulled;
                    e.delivered += c.delivered;
                    e.failed += c.failed;
                }
                Err(e)
            }
        }
    }

    async fn flush_async(&self) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "activity counters not written; kept for the next flush"),
            Err(e) => tracing::warn!(error = %e, "activity flush panicked"),
        }
    }

    /// Flushes every `interval` until `shutdown` turns true. (The stopping
    /// process flushes once more after its last request and delivery.)
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.flush_async().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Activity")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(dir.path().join("t.db").to_str().unwrap(), 2).unwrap();
        store.migrate().unwrap();
        (store, dir)
    }

    fn totals(store: &Store, account: i64) -> (i64, i64, i64, i64) {
        let now = now_ms();
        store
            .activity(account, now - 3_600_000, now + MINUTE_MS, 7_200_000)
            .unwrap()
            .iter()
            .fold((0, 0, 0, 0), |t, b| {
                (t.0 + b.ingested, t.1 + b.pulled, t.2 + b.delivered, t.3 + b.failed)
            })
    }

    #[test]
    fn counts_add_up_in_memory_and_flushes_add_to_the_rows() {
        let (store, _dir) = store();
        let a = Activity::new(store.clone());
        a.ingested(1, &[(Trigger::Open, 3), (Trigger::Click, 2)]);
        a.ingested(1, &[(Trigger::Open, 1)]);
        a.pulled(1, &[(Trigger::Open, 4)]);
        a.pushed(1, "CLICK", 2, 1);
        a.ingested(2, &[(Trigger::Sent, 7)]);
        assert_eq!(totals(&store, 1), (0, 0, 0, 0), "nothing is written before a flush");
        // One row per account, minute and trigger (unless the minute turned meanwhile).
        assert!((3..=6).contains(&a.flush().unwrap()));
        assert_eq!(totals(&store, 1), (6, 4, 2, 1));
        assert_eq!(totals(&store, 2), (7, 0, 0, 0));
        assert_eq!(a.flush().unwrap(), 0, "a flush empties the map");
        // A second flush (or another node) adds to the same minute's rows.
        a.ingested(1, &[(Trigger::Open, 10)]);
        a.flush().unwrap();
        assert_eq!(totals(&store, 1), (16, 4, 2, 1));
    }

    /// What counting costs an ingest request: `cargo test --lib
    /// activity::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cost_of_counting() {
        let (store, _dir) = store();
        let a = Activity::new(store);
        let n = 1_000_000u32;
        for threads in [1u32, 4] {
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let a = a.clone();
                    s.spawn(move || {
                        for i in 0..n / threads {
                            a.ingested(i64::from(t * 100 + i % 100), &[(Trigger::Open, 1)]);
                        }
                    });
                }
            });
            println!(
                "{n} ingest countings on {threads} thread(s): {:?} each",
                started.elapsed() / n
            );
        }
    }
}
