//! The delivery loop. One dispatcher asks the database which destinations
//! have due deliveries, claims a bounded number of requests' worth for each
//! (so a destination that hangs holds at most its own share), and spawns a
//! task per request; tasks wait for a per-destination and a global permit,
//! send, and report to a completer that writes results in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::completer;
use super::lease::Leases;
use super::request::{self, Request, Shared};
use super::schedule::{parse_duration, parse_schedule};
use crate::activity::Activity;
use crate::config::PushSettings;
use crate::domain::keys::random_id;
use crate::domain::time::{cutoff, now_ms};
use crate::domain::DeliverySettings;
use crate::store::push::{AttemptOutcome, Claim, ClaimedRow, DestinationKey};
use crate::store::{Store, StoreError, StoreResult};
use crate::transport::{TransportSettings, Transports};

/// Requests' worth claimed ahead per destination, as a multiple of its
/// concurrency (keeps the pipe full between claims). The dispatcher claims
/// again when half of it is sent, so half is the runway a claim has to
/// land in: at 4 (64 requests, 3 ms at 20k/s) the pipe ran dry under load
/// and the machine idled at 40 % (push end to end 18-20k/s on both
/// backends); at 16, 21-25k/s; at 32, no better (docs/PERFORMANCE.md,
/// eleventh session).
const CLAIM_AHEAD: usize = 16;
/// How long a destination found suspended or paused at claim time is
/// not asked for again.
const SKIP_MS: i64 = 1000;
/// Per-destination state is forgotten past this many idle destinations.
const MAX_IDLE_DESTINATIONS: usize = 10_000;
/// Finished deliveries deleted per pruning pass.
const PRUNE_LIMIT: i64 = 10_000;
/// Destinations looked at per round.
const DUE_LIMIT: i64 = 1000;
/// While some destination's last claim got all it asked for, the due probe
/// runs at most this often; in between only those destinations are claimed
/// for (the probe cost about as much as the claim itself).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Deliveries a worker holds claimed and not yet sent, over all its
/// destinations, past which a destination that already has requests
/// outstanding claims no more (one with none always may, so none starves).
/// With 16 requests' worth claimed ahead per unit of concurrency, a
/// thousand busy destinations would otherwise hold half a million events'
/// payloads in memory, and one destination with `batch_size` 1,000 half a
/// million on its own; this keeps it to about 13 MB of payloads at 400
/// bytes an event, and 32 requests of 1,000 in flight still fit in it.
const MAX_HELD_ROWS: usize = 32_768;

/// Whether a destination with `outstanding` requests may claim more while
/// the worker holds `held` rows.
fn may_claim(held: usize, outstanding: usize) -> bool {
    outstanding == 0 || held < MAX_HELD_ROWS
}

/// A destination's claims start after the last delivery it claimed (not at
/// the head of its pending deliveries, which this worker holds) until one
/// comes back short, and at the head at least this often, for what became
/// due behind: retries, lost leases, late commits.
const RESCAN_MS: i64 = 500;

#[derive(Clone)]
pub struct WorkerConfig {
    pub schedule_ms: Vec<i64>,
    pub suspend_after: i64,
    pub poll: Duration,
    pub concurrency: usize,
    pub per_destination: usize,
    /// How long a stopping worker lets requests in flight finish.
    pub stop_grace: Duration,
    /// How long a claim holds its deliveries without renewal (`lease.rs`).
    pub lease: Duration,
    /// Finished deliveries older than this are pruned.
    pub log_retention: Duration,
    /// Counts deliveries (requests' events, mails, files) per outcome and
    /// transport (`eventd_deliveries_total`).
    pub outcomes: Option<prometheus::IntCounterVec>,
    /// Counts written results for `GET /v1/stats`.
    pub activity: Option<Activity>,
    /// Counts the events they carried (`eventd_delivery_events_total`).
    pub events: Option<prometheus::IntCounterVec>,
}

impl WorkerConfig {
    pub fn from_settings(s: &PushSettings) -> anyhow::Result<WorkerConfig> {
        let schedule = parse_schedule(&s.push_retry_schedule)?;
        Ok(WorkerConfig {
            schedule_ms: schedule
                .iter()
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .collect(),
            suspend_after: s.push_suspend_after,
            poll: parse_duration(&s.push_poll_interval)?.max(Duration::from_millis(1)),
            concurrency: s.push_concurrency as usize,
            per_destination: s.push_destination_concurrency as usize,
            stop_grace: parse_duration(&s.push_stop_grace)?,
            lease: parse_duration(&s.push_lease)?.max(Duration::from_millis(100)),
            log_retention: parse_duration(&s.push_log_retention)?,
            outcomes: None,
            activity: None,
            events: None,
        })
    }
}

/// Per destination, in this process.
pub(super) struct DestState {
    pub(super) permits: Semaphore,
    /// Requests claimed and not yet reported.
    pub(super) outstanding: AtomicUsize,
    /// Not to be sent to before this time (i64::MAX: suspended).
    pub(super) stopped_until: AtomicI64,
    /// Not to be claimed for before this time (it was suspended or paused
    /// when last tried; the database is asked again after).
    skip_until: AtomicI64,
    /// The largest delivery id claimed since the last claim from the head.
    claim_after: AtomicI64,
    /// When the next claim starts at the head again.
    rescan_at: AtomicI64,
}

/// Per-destination state the completer updates (suspensions, pauses).
pub(super) type DestMap = Arc<std::sync::Mutex<HashMap<DestinationKey, Arc<DestState>>>>;

/// A running worker (on its own threads, so a busy API does not slow it).
pub struct PushWorker {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl PushWorker {
    pub fn spawn(store: Store, transports: TransportSettings, config: WorkerConfig) -> anyhow::Result<PushWorker> {
        let (stop, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eventd-push")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new().name("eventd-push".into()).spawn(move || {
            runtime.block_on(async move {
                match transports.build() {
                    Ok(t) => run(store, t, config, stop_rx).await,
                    Err(e) => tracing::error!(error = %e, "delivery worker cannot build its transports"),
                }
            })
        })?;
        Ok(PushWorker { stop, thread })
    }

    /// Stops claiming, lets requests in flight finish (or gives their
    /// deliveries back), and waits for the worker to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Connect(format!("worker thread failed: {e}")))?
}

async fn run(store: Store, transports: Transports, config: WorkerConfig, mut stop: watch::Receiver<bool>) {
    let worker_id = random_id("wrk");
    tracing::info!(worker = %worker_id, "push worker started");
    let mut dests: HashMap<DestinationKey, Arc<DestState>> = HashMap::new();
    let dest_map: DestMap = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel::<AttemptOutcome>();
    let wake = Arc::new(Notify::new());
    let leases = Arc::new(Leases::new(config.lease));
    let (stop_heartbeat, heartbeat_rx) = watch::channel(false);
    let heartbeat = {
        let (leases, store, worker_id) = (leases.clone(), store.clone(), worker_id.clone());
        tokio::spawn(async move { leases.heartbeat(store, worker_id, heartbeat_rx).await })
    };
    let completer = tokio::spawn(completer::complete_loop(
        store.clone(),
        worker_id.clone(),
        config.clone(),
        rx,
        wake.clone(),
        (dest_map.clone(), leases.clone()),
    ));
    let shared = Arc::new(Shared {
        global: Semaphore::new(config.concurrency),
        transports,
        tx,
        stop: stop.clone(),
        leases: leases.clone(),
        wake: wake.clone(),
        outcomes: config.outcomes.clone(),
        events: config.events.clone(),
        held_rows: AtomicUsize::new(0),
    });
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut backoff = config.poll;
    // Pruning runs at most once a minute (sooner with a shorter retention).
    let prune_every = config
        .log_retention
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(100));
    let mut last_prune = std::time::Instant::now();
    // Destinations to claim for again without probing (see PROBE_EVERY).
    let mut hot: Vec<DestinationKey> = Vec::new();
    let mut last_probe = std::time::Instant::now();
    while !*stop.borrow() {
        if last_prune.elapsed() >= prune_every {
            last_prune = std::time::Instant::now();
            let before = cutoff(now_ms(), config.log_retention);
            let store = store.clone();
            match blocking(move || store.prune_deliveries(before, PRUNE_LIMIT)).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(pruned = n, "pruned finished deliveries"),
                Err(e) => tracing::warn!(error = %e, "cannot prune finished deliveries"),
            }
        }
        while tasks.try_join_next().is_some() {}
        let due = if !hot.is_empty() && last_probe.elapsed() < PROBE_EVERY {
            Ok(std::mem::take(&mut hot))
        } else {
            hot.clear();
            last_probe = std::time::Instant::now();
            let store = store.clone();
            blocking(move || store.due_destinations(DUE_LIMIT)).await
        };
        let due = match due {
            Ok(d) => {
                backoff = config.poll;
                d
            }
            Err(e) => {
                tracing::warn!(error = %e, "push worker cannot read due deliveries");
                backoff = (backoff * 2).min(Duration::from_secs(10));
                wait(&mut stop, &wake, backoff).await;
                continue;
            }
        };
        let mut claimed_any = false;
        for dest in due {
            let st = dests
                .entry(dest.clone())
                .or_insert_with(|| {
                    let st = Arc::new(DestState {
                        permits: Semaphore::new(config.per_destination),
                        outstanding: AtomicUsize::new(0),
                        stopped_until: AtomicI64::new(0),
                        skip_until: AtomicI64::new(0),
                        claim_after: AtomicI64::new(0),
                        rescan_at: AtomicI64::new(0),
                    });
                    lock(&dest_map).insert(dest.clone(), st.clone());
                    st
                })
                .clone();
            if st.skip_until.load(Ordering::Relaxed) > now_ms() {
                continue;
            }
            let cap = config.per_destination * CLAIM_AHEAD;
            let outstanding = st.outstanding.load(Ordering::Relaxed);
            if outstanding >= cap {
                // Claimed for again once half of that is sent.
                hot.push(dest);
                continue;
            }
            if !may_claim(shared.held_rows.load(Ordering::Relaxed), outstanding) {
                hot.push(dest);
                continue;
            }
            let want = (cap - outstanding) as i64;
            // Short, renewed by the heartbeat while the rows are held.
            let lease_until = leases.for_claim();
            let claimed_at = now_ms();
            let after = claim_start(&st, claimed_at);
            let claim = {
                let store = store.clone();
                let dest = dest.clone();
                let worker_id = worker_id.clone();
                blocking(move || store.claim_deliveries(&dest, after, want, lease_until, &worker_id)).await
            };
            let mut claim: Claim = match claim {
                Ok(Some(c)) => c,
                Ok(None) => {
                    st.skip_until.store(skip_deadline(now_ms()), Ordering::Relaxed);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "push worker cannot claim deliveries");
                    continue;
                }
            };
            claimed(&st, after, claimed_at, &claim.rows, want);
            if claim.rows.is_empty() {
                continue;
            }
            claimed_any = true;
            shared.held_rows.fetch_add(claim.rows.len(), Ordering::Relaxed);
            if claim.rows.len() as i64 >= want {
                // Probably more to claim.
                hot.push(dest.clone());
            }
            leases.hold(dest.account_id, claim.rows.iter().map(|r| r.id), lease_until);
            st.stopped_until.store(0, Ordering::Relaxed);
            let config_version = claim.config_version;
            let size = match &claim.settings {
                DeliverySettings::Http(h) => h.batch_size.max(1) as usize,
                _ => 1,
            };
            let settings = Arc::new(claim.settings);
            let secret: Arc<[String]> = claim.secrets.into();
            for chunk in claim.rows.chunks(size) {
                st.outstanding.fetch_add(1, Ordering::Relaxed);
                let rows = chunk.to_vec();
                // A parcel (digest mail, FTP file) carries its period's events.
                let members = match rows.as_slice() {
                    [row] if row.label.is_some() => claim.members.remove(&row.id),
                    _ => None,
                };
                let request = Request {
                    dest: dest.clone(),
                    rows,
                    members,
                    settings: settings.clone(),
                    secrets: secret.clone(),
                    config_version,
                };
                tasks.spawn(request::send(request, st.clone(), cap, shared.clone()));
            }
        }
        if dests.len() > MAX_IDLE_DESTINATIONS {
            dests.retain(|_, st| st.outstanding.load(Ordering::Relaxed) > 0);
            lock(&dest_map).retain(|k, _| dests.contains_key(k));
        }
        if !claimed_any {
            wait(&mut stop, &wake, config.poll).await;
        }
    }
    // Stopping: requests in flight finish (those still waiting for a permit
    // give their deliveries back), then the last results are written.
    tracing::info!(worker = %worker_id, in_flight = tasks.len(), "push worker stopping");
    let drained = tokio::time::timeout(config.stop_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
    }
    // The completer ends once the last sender to it is gone.
    drop(shared);
    let _ = completer.await;
    let _ = stop_heartbeat.send(true);
    let _ = heartbeat.await;
    match blocking(move || store.release_deliveries(&worker_id)).await {
        Ok(n) if n > 0 => tracing::info!(released = n, "push worker gave back unfinished deliveries"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "push worker could not give back its deliveries; their leases will expire")
        }
    }
}

/// Where a destination's next claim starts: after its last claimed id, or
/// at the head (0) when a rescan is due.
fn claim_start(st: &DestState, now: i64) -> i64 {
    if st.rescan_at.load(Ordering::Relaxed) <= now {
        0
    } else {
        st.claim_after.load(Ordering::Relaxed)
    }
}

/// Records a claim that started after `after` at `at`: a full claim moves
/// the start past its rows; a short one (the pending deliveries after the
/// start are used up) sends the next claim to the head.
fn claimed(st: &DestState, after: i64, at: i64, rows: &[ClaimedRow], want: i64) {
    if after == 0 {
        st.rescan_at.store(at + RESCAN_MS, Ordering::Relaxed);
    }
    match rows.iter().map(|r| r.id).max() {
        Some(last) if rows.len() as i64 >= want => st.claim_after.store(last.max(after), Ordering::Relaxed),
        _ => {
            st.claim_after.store(0, Ordering::Relaxed);
            st.rescan_at.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether the request that took a destination's outstanding requests from
/// `before` down by one left it half of `cap`: the dispatcher is woken to
/// claim more (once per crossing).
pub(super) fn refill_now(before: usize, cap: usize) -> bool {
    before == cap / 2 + 1
}

/// Until when a destination whose claim found nothing to send (it was
/// suspended after the due probe saw it) is left out of the claim rounds:
/// a moment, not for good.
fn skip_deadline(now_ms: i64) -> i64 {
    now_ms + SKIP_MS
}

/// Deliveries that finished before this time are pruned: a finished
/// delivery is kept for the retention period.
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait(stop: &mut watch::Receiver<bool>, wake: &Notify, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = wake.notified() => {}
        _ = stop.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_with_nothing_to_claim_is_skipped_for_a_second() {
        let now = 1_800_000_000_000;
        assert_eq!(skip_deadline(now), now + 1000);
    }

    fn dest_state() -> DestState {
        DestState {
            permits: Semaphore::new(1),
            outstanding: AtomicUsize::new(0),
            stopped_until: AtomicI64::new(0),
            skip_until: AtomicI64::new(0),
            claim_after: AtomicI64::new(0),
            rescan_at: AtomicI64::new(0),
        }
    }

    fn rows(ids: &[i64]) -> Vec<ClaimedRow> {
        ids.iter()
            .map(|&id| ClaimedRow {
                id,
                event_id: format!("evt_{id}"),
                payload: String::new(),
                failures: 0,
                label: None,
                period_start: None,
            })
            .collect()
    }

    #[test]
    fn claims_go_on_after_a_full_claim_and_back_to_the_head_after_a_short_one_or_in_time() {
        let st = dest_state();
        let t = 1_800_000_000_000;
        // The first claim starts at the head, and gets all it asked for.
        assert_eq!(claim_start(&st, t), 0);
        claimed(&st, 0, t, &rows(&[5, 6, 7]), 3);
        // The next one starts after it, while it is not yet time to rescan.
        assert_eq!(claim_start(&st, t + 1), 7);
        claimed(&st, 7, t + 1, &rows(&[8, 9, 10]), 3);
        assert_eq!(claim_start(&st, t + RESCAN_MS - 1), 10);
        // Full claims all along: the head again once RESCAN_MS have passed.
        assert_eq!(claim_start(&st, t + RESCAN_MS), 0);
        claimed(&st, 0, t + RESCAN_MS, &rows(&[2, 11, 12]), 3);
        assert_eq!(claim_start(&st, t + RESCAN_MS + 1), 12);
        // A short claim: the next one starts at the head at once.
        claimed(&st, 12, t + RESCAN_MS + 1, &rows(&[13]), 3);
        assert_eq!(claim_start(&st, t + RESCAN_MS + 2), 0);
        claimed(&st, 0, t + RESCAN_MS + 2, &[], 3);
        assert_eq!(claim_start(&st, t + RESCAN_MS + 3), 0);
    }

    #[test]
    fn a_destination_claims_past_the_held_rows_limit_only_with_nothing_outstanding() {
        assert!(may_claim(MAX_HELD_ROWS - 1, 5));
        assert!(!may_claim(MAX_HELD_ROWS, 5));
        assert!(may_claim(MAX_HELD_ROWS * 2, 0));
    }

    #[test]
    fn the_dispatcher_is_woken_once_when_half_the_claimed_requests_are_sent() {
        let woken: Vec<usize> = (1..=128).rev().filter(|&before| refill_now(before, 128)).collect();
        assert_eq!(woken, vec![65]);
        assert!(refill_now(1, 1));
    }
}
