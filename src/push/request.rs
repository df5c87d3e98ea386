//! One request of the push worker: waits for its destination's and the
//! global permit, sends (unless the worker is stopping or the destination
//! was stopped meanwhile), counts the outcome, and hands it to the
//! completer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::lease::Leases;
use super::worker::{refill_now, DestState};
use crate::domain::time::now_ms;
use crate::domain::DeliverySettings;
use crate::store::push::{AttemptOutcome, ClaimedRow, DestinationKey, MemberRow, OutcomeKind};
use crate::transport::{Parcel, Transports, Unit};

/// One request's worth of a claim.
pub(super) struct Request {
    pub(super) dest: DestinationKey,
    pub(super) rows: Vec<ClaimedRow>,
    /// A parcel's (digest mail, FTP file) events; None: the rows' own.
    pub(super) members: Option<Vec<MemberRow>>,
    pub(super) settings: Arc<DeliverySettings>,
    pub(super) secrets: Arc<[String]>,
    pub(super) config_version: i64,
}

/// What every request of a worker shares.
pub(super) struct Shared {
    /// The worker's overall concurrency.
    pub(super) global: Semaphore,
    pub(super) transports: Transports,
    /// To the completer.
    pub(super) tx: mpsc::UnboundedSender<AttemptOutcome>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) leases: Arc<Leases>,
    /// Wakes the dispatcher.
    pub(super) wake: Arc<Notify>,
    pub(super) outcomes: Option<prometheus::IntCounterVec>,
    pub(super) events: Option<prometheus::IntCounterVec>,
    /// Rows (deliveries) claimed by the worker and not yet sent, over all
    /// destinations (see `MAX_HELD_ROWS`).
    pub(super) held_rows: AtomicUsize,
}

/// Sends one request of the destination whose state is `st` (`cap`: the
/// requests it may have claimed at once) and reports the outcome.
pub(super) async fn send(req: Request, st: Arc<DestState>, cap: usize, shared: Arc<Shared>) {
    let Request {
        dest,
        rows,
        members,
        settings,
        secrets,
        config_version,
    } = req;
    let deliveries: Vec<(i64, i64)> = rows.iter().map(|r| (r.id, r.failures)).collect();
    let _dest_permit = st.permits.acquire().await;
    let _permit = shared.global.acquire().await;
    let stopped = *shared.stop.borrow() || st.stopped_until.load(Ordering::Relaxed) > now_ms();
    let events: Vec<(&str, &str)> = match &members {
        Some(m) => m.iter().map(|m| (m.event_id.as_str(), m.payload.as_str())).collect(),
        None => rows.iter().map(|r| (r.event_id.as_str(), r.payload.as_str())).collect(),
    };
    let event_count = events.len() as u64;
    let parcel = match rows.as_slice() {
        [row] => row.label.as_deref().map(|label| Parcel {
            trigger: dest.trigger.as_str(),
            label,
            period_start_ms: row.period_start.unwrap_or_default(),
        }),
        _ => None,
    };
    let ids: Vec<i64> = deliveries.iter().map(|(id, _)| *id).collect();
    let sent = if stopped {
        None
    } else {
        let attempted_at = now_ms();
        let unit = Unit {
            events: &events,
            parcel,
        };
        let send = shared.transports.send(&settings, &secrets, unit);
        let sent = shared.leases.guard(dest.account_id, &ids, send).await;
        if sent.is_none() {
            tracing::warn!(deliveries = ?ids, "push lease not renewed in time; request abandoned");
        }
        sent.map(|s| (attempted_at, s))
    };
    let outcome = match sent {
        Some((attempted_at, sent)) => AttemptOutcome {
            dest,
            deliveries,
            url: sent.target,
            attempted_at,
            latency_ms: sent.latency_ms,
            status_code: sent.status_code,
            error: sent.error,
            response: sent.response,
            kind: sent.kind,
            config_version,
        },
        // Not sent: given back untouched.
        None => AttemptOutcome {
            dest,
            deliveries,
            url: String::new(),
            attempted_at: now_ms(),
            latency_ms: 0,
            status_code: None,
            error: None,
            response: None,
            kind: OutcomeKind::Released,
            config_version,
        },
    };
    let label = match outcome.kind {
        OutcomeKind::Success => "success",
        OutcomeKind::Failure => "failure",
        OutcomeKind::Transient => "transient",
        OutcomeKind::RetryAfter(_) => "retry_after",
        OutcomeKind::Gone => "gone",
        OutcomeKind::Released => "released",
    };
    let transport = outcome.dest.transport.as_str();
    if let Some(counter) = &shared.outcomes {
        counter
            .with_label_values(&[label, transport])
            .inc_by(outcome.deliveries.len() as u64);
    }
    if let Some(counter) = &shared.events {
        counter.with_label_values(&[label, transport]).inc_by(event_count);
    }
    let _ = shared.tx.send(outcome);
    shared.held_rows.fetch_sub(ids.len(), Ordering::Relaxed);
    if refill_now(st.outstanding.fetch_sub(1, Ordering::Relaxed), cap) {
        // Claim more before the destination's pipe runs dry.
        shared.wake.notify_one();
    }
}
