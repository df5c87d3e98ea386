//! Prometheus metrics. One registry per application (tests run several
//! servers in one process). Labels are bounded: triggers, outcomes, route
//! templates and status classes; never accounts.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub events_ingested: IntCounterVec,
    pub events_duplicate: IntCounter,
    pub batches: IntCounterVec,
    pub events_fetched: IntCounter,
    pub events_deleted: IntCounter,
    pub queue_expired: IntCounter,
    pub history_pruned: IntCounter,
    pub deliveries: IntCounterVec,
    pub delivery_events: IntCounterVec,
    pub http_requests: HistogramVec,
    pub queue_depth: IntGauge,
    pub queue_oldest_age: Gauge,
    pub open_batches: IntGauge,
    pub long_poll_waiters: IntGauge,
    pub db_pool: IntGaugeVec,
    pub db_pool_max: IntGauge,
    pub push_suspended: IntGauge,
    pub push_dead: IntGauge,
    pub storage_full: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let http_requests = HistogramVec::new(
            HistogramOpts::new("eventd_http_request_duration_seconds", "HTTP request latency by route").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        r.register(Box::new(http_requests.clone())).expect("registered once");
        let queue_oldest_age = Gauge::new(
            "eventd_queue_oldest_pending_age_seconds",
            "Age of the oldest pull event not in an open batch",
        )
        .expect("valid metric");
        r.register(Box::new(queue_oldest_age.clone())).expect("registered once");
        let db_pool = IntGaugeVec::new(
            Opts::new("eventd_db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("valid metric");
        r.register(Box::new(db_pool.clone())).expect("registered once");
        Metrics {
            events_ingested: counter_vec(&r, "eventd_events_ingested_total", "Events accepted", &["trigger"]),
            events_duplicate: counter(
                &r,
                "eventd_events_duplicate_total",
                "Events dropped as duplicate external_id",
            ),
            batches: counter_vec(
                &r,
                "eventd_batches_total",
                "Pull batches by outcome (fetched, read, released, expired)",
                &["outcome"],
            ),
            events_fetched: counter(&r, "eventd_events_fetched_total", "Events handed out in new batches"),
            events_deleted: counter(&r, "eventd_events_deleted_total", "Events deleted by mark-read"),
            queue_expired: counter(
                &r,
                "eventd_queue_expired_total",
                "Unread pull events deleted for exceeding --queue-max-age",
            ),
            history_pruned: counter(
                &r,
                "eventd_history_pruned_total",
                "History events pruned after retention",
            ),
            deliveries: counter_vec(
                &r,
                "eventd_deliveries_total",
                "Delivery attempts (http requests' events, mails, FTP files) by outcome and transport",
                &["outcome", "transport"],
            ),
            delivery_events: counter_vec(
                &r,
                "eventd_delivery_events_total",
                "Events carried by delivery attempts, by outcome and transport",
                &["outcome", "transport"],
            ),
            queue_depth: gauge(&r, "eventd_queue_depth", "Pull events stored (pending and in flight)"),
            open_batches: gauge(&r, "eventd_open_batches", "Batches whose lease has not run out"),
            long_poll_waiters: gauge(&r, "eventd_long_poll_waiters", "Fetches waiting for events"),
            db_pool_max: gauge(
                &r,
                "eventd_db_pool_max_connections",
                "Most database connections the pool opens",
            ),
            push_suspended: gauge(
                &r,
                "eventd_push_destinations_suspended",
                "Push destinations suspended (410 or too many consecutive failures)",
            ),
            push_dead: gauge(
                &r,
                "eventd_push_deliveries_dead",
                "Push deliveries that used up their retries, still in the log",
            ),
            storage_full: gauge(
                &r,
                "eventd_storage_full",
                "1 while storage is full: a storage watermark is reached (ingest is refused, 507 storage_full), or the database failed a write for lack of space in the last minute",
            ),
            queue_oldest_age,
            http_requests,
            db_pool,
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
