//! Client-pull operations shared by every face (JSON, SOAP, PAINT): ingest
//! (which wakes long-pollers), fetch with long poll, mark read, release,
//! status. The faces only translate their formats to and from these calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::activity::Activity;
use crate::domain::time::{cutoff, now_ms};
use crate::domain::NewEvent;
use crate::metrics::Metrics;
use crate::store::events::IngestOutcome;
use crate::store::group::GroupCommit;
use crate::store::listen::Wake;
use crate::store::queue::{Batch, FetchRequest, QueueStatus};
use crate::store::{Store, StoreError, StoreResult};
use crate::watermark::Watermarks;

/// While a long poll waits, it also re-checks the database this often: on
/// SQLite for events committed by another process; on PostgreSQL, where
/// other nodes' ingests wake it through the queue listener
/// (`store::listen`), for what the listener cannot report (a lease that
/// ran out, a wake-up lost while it reconnected or its node died).
const POLL_FALLBACK: Duration = Duration::from_millis(1000);
const POLL_FALLBACK_LISTENING: Duration = Duration::from_secs(5);

/// When the rows of a batch marked read are deleted (`delay` after the
/// answer), and how long the history keeps their events (`history`: on
/// PostgreSQL older ones are deleted with them).
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub delay: Duration,
    pub history: Duration,
}

/// Starts the sweeper, which deletes the rows of batches marked read
/// (`Store::sweep_read_batches`): a notification of the answer starts a
/// round `delay` later, so that a consumer's next fetch goes first (on
/// SQLite the two would queue for the one writer). Batches marked read
/// before a restart, or whose sweep failed, are swept by maintenance.
fn start_sweeper(
    store: Store,
    sweep: Sweep,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Arc<Notify> {
    let kick = Arc::new(Notify::new());
    let kicked = kick.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = kicked.notified() => tokio::time::sleep(sweep.delay).await,
                _ = shutdown.changed() => return,
            }
            let s = store.clone();
            let before = cutoff(now_ms(), sweep.history);
            match blocking(move || s.sweep_read_batches(before)).await {
                Ok(history) => metrics.history_pruned.inc_by(history),
                Err(e) => tracing::warn!(error = %e, "sweeping read batches failed; maintenance will retry"),
            }
        }
    });
    kick
}

/// In-process wake-ups for long polls, one channel per account with waiters.
#[derive(Default)]
struct Waiters {
    channels: Mutex<HashMap<i64, watch::Sender<u64>>>,
}

impl Waiters {
    fn subscribe(&self, account_id: i64) -> watch::Receiver<u64> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account_id).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    fn wake_all(&self) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn wake(&self, account_id: i64) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&account_id) {
            if tx.receiver_count() == 0 {
                map.remove(&account_id);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

#[derive(Clone)]
pub struct Pull {
    store: Store,
    /// Every ingest goes through here: concurrent requests share a commit.
    ingest: GroupCommit,
    waiters: Arc<Waiters>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    activity: Activity,
    /// Long polls waiting now, and the most allowed at once.
    waiting: Arc<AtomicUsize>,
    max_waiters: usize,
    /// How often a waiting long poll re-checks the database.
    fallback: Duration,
    /// Ingest stops while storage is above its watermarks.
    watermarks: Watermarks,
    /// Starts a sweep of the rows of batches marked read.
    sweep: Arc<Notify>,
}

/// Counts one waiting long poll for as long as it lives.
struct WaitSlot<'a>(&'a Pull);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.long_poll_waiters.dec();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Connect(format!("worker thread failed: {e}")))?
}

impl Pull {
    /// `shutdown` turns true when the server stops: long polls answer at once.
    /// At most `max_waiters` fetches wait at once; beyond that a fetch on an
    /// empty queue answers at once (empty), as if `wait_seconds` were 0.
    /// Every committed ingest and mark-read is counted in `activity`. The
    /// rows of a batch marked read are deleted `sweep.delay` later.
    pub fn new(
        store: Store,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        activity: Activity,
        max_waiters: usize,
        watermarks: Watermarks,
        sweep: Sweep,
    ) -> Self {
        let waiters: Arc<Waiters> = Arc::default();
        let listening = listen(&store, &waiters, shutdown.clone());
        let sweep = start_sweeper(store.clone(), sweep, metrics.clone(), shutdown.clone());
        Pull {
            ingest: GroupCommit::start(store.clone()),
            store,
            waiters,
            shutdown,
            metrics,
            activity,
            waiting: Arc::default(),
            max_waiters,
            fallback: if listening {
                POLL_FALLBACK_LISTENING
            } else {
                POLL_FALLBACK
            },
            watermarks,
            sweep,
        }
    }

    fn take_wait_slot(&self) -> Option<WaitSlot<'_>> {
        let prev = self.waiting.fetch_add(1, Ordering::SeqCst);
        if prev >= self.max_waiters {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        self.metrics.long_poll_waiters.inc();
        Some(WaitSlot(self))
    }

    /// The one entry point of ingest for every face: answers after the
    /// commit that holds the events (shared with concurrent requests).
    /// `key_hash`: the API key the events came with, checked live in the
    /// same transaction (if it is not, nothing is stored and the outcome
    /// says `key_revoked`).
    pub async fn ingest(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
        key_hash: Option<String>,
    ) -> StoreResult<IngestOutcome> {
        self.watermarks.admit().await?;
        let outcome = self.ingest.ingest(account_id, events, key_hash).await?;
        for (trigger, n) in &outcome.by_trigger {
            self.metrics
                .events_ingested
                .with_label_values(&[trigger.as_str()])
                .inc_by(*n as u64);
        }
        self.metrics.events_duplicate.inc_by(outcome.duplicates as u64);
        self.activity.ingested(account_id, &outcome.by_trigger);
        if outcome.queued > 0 {
            self.waiters.wake(account_id);
        }
        Ok(outcome)
    }

    /// Why storage is full now (a watermark, or the database recently out
    /// of space), if it is; sets the `eventd_storage_full` gauge.
    pub async fn storage_full(&self) -> Option<String> {
        self.watermarks.state().await
    }

    /// Fetches a batch; if none is pending, waits up to `wait` for events
    /// to arrive and answers as soon as they do.
    pub async fn fetch(&self, account_id: i64, req: FetchRequest, wait: Duration) -> StoreResult<Option<Batch>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut wake = self.waiters.subscribe(account_id);
        let mut shutdown = self.shutdown.clone();
        let mut slot = None;
        loop {
            wake.borrow_and_update();
            let store = self.store.clone();
            let r = req.clone();
            if let Some(batch) = blocking(move || store.fetch_batch(account_id, &r)).await? {
                if batch.fresh {
                    self.metrics.batches.with_label_values(&["fetched"]).inc();
                    self.metrics.events_fetched.inc_by(batch.payloads.len() as u64);
                }
                return Ok(Some(batch));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline || *shutdown.borrow() {
                return Ok(None);
            }
            if slot.is_none() {
                slot = self.take_wait_slot();
                if slot.is_none() {
                    return Ok(None);
                }
            }
            let nap = (deadline - now).min(self.fallback);
            tokio::select! {
                _ = wake.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    pub async fn mark_read(&self, account_id: i64, batch_id: String) -> StoreResult<i64> {
        let store = self.store.clone();
        let by_trigger = blocking(move || store.mark_read(account_id, &batch_id)).await?;
        if !by_trigger.is_empty() {
            self.sweep.notify_one();
        }
        self.activity.pulled(account_id, &by_trigger);
        let deleted: i64 = by_trigger.iter().map(|(_, n)| n).sum();
        self.metrics.batches.with_label_values(&["read"]).inc();
        self.metrics.events_deleted.inc_by(deleted as u64);
        Ok(deleted)
    }

    pub async fn release(&self, account_id: i64, batch_id: String) -> StoreResult<i64> {
        let store = self.store.clone();
        let notifier = store.clone();
        let released = blocking(move || store.release(account_id, &batch_id)).await?;
        self.metrics.batches.with_label_values(&["released"]).inc();
        if released > 0 {
            // Its events are available again: to long polls here and on other nodes.
            self.waiters.wake(account_id);
            if let Err(e) = blocking(move || notifier.notify_queue(&[account_id])).await {
                tracing::debug!(error = %e, "queue wake-up not sent");
            }
        }
        Ok(released)
    }

    pub async fn status(&self, account_id: i64) -> StoreResult<QueueStatus> {
        let store = self.store.clone();
        blocking(move || store.queue_status(account_id)).await
    }
}

/// Starts the queue listener (PostgreSQL): wake-ups from other nodes'
/// ingests reach the long polls waiting here. It stops when the server
/// stops or every handle to `waiters` is gone. Whether it runs.
fn listen(store: &Store, waiters: &Arc<Waiters>, shutdown: watch::Receiver<bool>) -> bool {
    let waiters = Arc::downgrade(waiters);
    store
        .listen_queue(move |wake| {
            let Some(w) = waiters.upgrade() else {
                return false;
            };
            match wake {
                Wake::Accounts(ids) => ids.iter().for_each(|id| w.wake(*id)),
                Wake::All => w.wake_all(),
                Wake::Idle => {}
            }
            !*shutdown.borrow() && shutdown.has_changed().is_ok()
        })
        .is_some()
}

pub const MAX_BATCH: i64 = 10_000;
pub const DEFAULT_BATCH: i64 = 1_000;
pub const DEFAULT_LEASE_SECONDS: i64 = 300;
pub const MAX_LEASE_SECONDS: i64 = 43_200;
pub const MAX_WAIT_SECONDS: f64 = 20.0;
pub const DEFAULT_CONSUMER: &str = "default";

/// Fetch parameters as any face receives them, before validation.
#[derive(Debug, Clone, Default)]
pub struct FetchParams {
    pub size: Option<i64>,
    pub consumer: Option<String>,
    pub triggers: Option<Vec<String>>,
    pub lease_seconds: Option<i64>,
    pub wait_seconds: Option<f64>,
}

/// One invalid fetch parameter: (parameter name, reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
}

impl FetchParams {
    /// Validates and applies the defaults of SPEC §5.
    pub fn validate(self) -> Result<(FetchRequest, Duration), ParamError> {
        let bad = |field, message: String| Err(ParamError { field, message });
        let size = self.size.unwrap_or(DEFAULT_BATCH);
        if !(1..=MAX_BATCH).contains(&size) {
            return bad("size", format!("must be between 1 and {MAX_BATCH}"));
        }
        let consumer = self.consumer.unwrap_or_else(|| DEFAULT_CONSUMER.to_string());
        if consumer.is_empty()
            || consumer.len() > 100
            || !consumer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
        {
            return bad(
                "consumer",
                "must be 1 to 100 characters of letters, digits and - _ . : @".into(),
            );
        }
        let triggers = match self.triggers {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => match crate::domain::Trigger::parse_list(&list.join(",")) {
                Ok(t) => Some(t),
                Err(e) => return bad("triggers", e.to_string()),
            },
        };
        let lease = self.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
        if !(1..=MAX_LEASE_SECONDS).contains(&lease) {
            return bad("lease_seconds", format!("must be between 1 and {MAX_LEASE_SECONDS}"));
        }
        let wait = self.wait_seconds.unwrap_or(0.0);
        if !(0.0..=MAX_WAIT_SECONDS).contains(&wait) {
            return bad("wait_seconds", format!("must be between 0 and {MAX_WAIT_SECONDS}"));
        }
        Ok((
            FetchRequest {
                size,
                consumer,
                triggers,
                lease_ms: lease * 1000,
            },
            Duration::from_secs_f64(wait),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_applies_defaults_and_refuses_out_of_range_values() {
        let (req, wait) = FetchParams::default().validate().unwrap();
        assert_eq!(
            (req.size, req.consumer.as_str(), req.lease_ms),
            (1_000, "default", 300_000),
            "SPEC §5's defaults"
        );
        let lease = |s| FetchParams {
            lease_seconds: Some(s),
            ..Default::default()
        };
        assert_eq!(lease(43_200).validate().unwrap().0.lease_ms, 43_200_000);
        assert_eq!(lease(43_201).validate().unwrap_err().field, "lease_seconds");
        assert_eq!((req.triggers, wait), (None, Duration::ZERO));
        // Non-finite waits would panic in Duration::from_secs_f64: refused first.
        for w in [f64::NAN, f64::INFINITY, -0.5, 20.5] {
            let p = FetchParams {
                wait_seconds: Some(w),
                ..Default::default()
            };
            assert_eq!(p.validate().unwrap_err().field, "wait_seconds", "{w}");
        }
    }

    #[test]
    fn validate_takes_spec_ranges_and_consumer_names() {
        let p = |f: fn(&mut FetchParams)| {
            let mut p = FetchParams::default();
            f(&mut p);
            p.validate()
        };
        // SPEC §5: size 1..10,000.
        assert_eq!(p(|p| p.size = Some(1)).unwrap().0.size, 1);
        assert_eq!(p(|p| p.size = Some(10_000)).unwrap().0.size, 10_000);
        for size in [0, 10_001] {
            let params = FetchParams {
                size: Some(size),
                ..Default::default()
            };
            assert_eq!(params.validate().unwrap_err().field, "size", "{size}");
        }
        // lease_seconds from 1; wait_seconds 0..20 (20 included).
        assert_eq!(p(|p| p.lease_seconds = Some(1)).unwrap().0.lease_ms, 1_000);
        assert_eq!(p(|p| p.lease_seconds = Some(0)).unwrap_err().field, "lease_seconds");
        assert_eq!(p(|p| p.wait_seconds = Some(20.0)).unwrap().1, Duration::from_secs(20));
        // Consumer names: 1 to 100 of letters, digits and - _ . : @.
        let consumer = |name: &str| {
            FetchParams {
                consumer: Some(name.to_string()),
                ..Default::default()
            }
            .validate()
        };
        let max = "c".repeat(100);
        assert_eq!(consumer(&max).unwrap().0.consumer, max);
        assert_eq!(consumer("crm-1_a.b:c@d").unwrap().0.consumer, "crm-1_a.b:c@d");
        for bad in ["", &"c".repeat(101), "crm 1", "crm/1", "é"] {
            assert_eq!(consumer(bad).unwrap_err().field, "consumer", "{bad:?}");
        }
        // Triggers: any case; an empty list means all of them.
        let triggers = |t: &[&str]| {
            FetchParams {
                triggers: Some(t.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }
            .validate()
        };
        assert_eq!(
            triggers(&["open", "CLICK"]).unwrap().0.triggers,
            Some(vec![crate::domain::Trigger::Open, crate::domain::Trigger::Click])
        );
        assert_eq!(triggers(&[]).unwrap().0.triggers, None);
        assert_eq!(triggers(&["NOPE"]).unwrap_err().field, "triggers");
    }

    #[test]
    fn waiters_wake_their_account_and_forget_accounts_nobody_waits_on() {
        let w = Waiters::default();
        let mut a = w.subscribe(1);
        let b = w.subscribe(2);
        w.wake(1);
        assert!(a.has_changed().unwrap(), "account 1 woken");
        assert!(!b.has_changed().unwrap(), "account 2 left alone");
        a.borrow_and_update();
        // After the queue listener (re)connects: every account re-checks.
        w.wake_all();
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
        // Accounts whose waiters are gone are forgotten (memory stays bounded).
        drop(b);
        w.wake_all();
        let accounts = |w: &Waiters| w.channels.lock().unwrap().keys().copied().collect::<Vec<_>>();
        assert_eq!(accounts(&w), vec![1]);
        drop(a);
        w.wake(1);
        assert_eq!(accounts(&w), Vec::<i64>::new());
    }
}
