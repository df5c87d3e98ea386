//! `GET /v1/queue`: what it reports while batches lease parts of the queue,
//! on both backends.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_app, Backend};
use serde_json::{json, Value};

both!(oldest_pending_age_skips_leased_events_of_each_trigger);

fn age(q: &Value) -> Option<f64> {
    q["oldest_pending_age_seconds"].as_f64()
}

/// The oldest pending event is the first one no open batch leases, also
/// when a batch of one trigger leases a stretch that holds events of
/// another trigger.
async fn oldest_pending_age_skips_leased_events_of_each_trigger(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let ev = |t: &str, r: &str| json!({"trigger": t, "recipient": r});
    // Queue order: c1, o1, c2 (old), then o2 (newer).
    app.ingest(&key, &json!([ev("CLICK", "c1"), ev("OPEN", "o1"), ev("CLICK", "c2")]))
        .await;
    // received_at has millisecond resolution: the old events must be
    // measurably older than o2, so the test lets 1.2 s pass between them.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let o2_sent = Instant::now();
    app.ingest(&key, &json!([ev("OPEN", "o2")])).await;
    let q = app.queue(&key).await;
    assert!(age(&q).unwrap() >= 1.2, "c1 is the oldest pending: {q}");

    // A CLICK batch leases c1..c2; o1, between them, is still pending.
    let clicks = app
        .fetch(&key, &json!({"size": 2, "consumer": "a", "triggers": ["CLICK"]}))
        .await;
    assert_eq!(clicks["count"], 2);
    let q = app.queue(&key).await;
    assert!(age(&q).unwrap() >= 1.2, "o1 is the oldest pending: {q}");

    // An OPEN batch takes o1: o2 is the oldest pending now.
    let opens = app
        .fetch(&key, &json!({"size": 1, "consumer": "b", "triggers": ["OPEN"]}))
        .await;
    assert_eq!(opens["events"][0]["recipient"], "o1");
    let q = app.queue(&key).await;
    let limit = o2_sent.elapsed().as_secs_f64() + 0.01;
    assert!(
        age(&q).unwrap() <= limit,
        "o2 is the oldest pending (age <= {limit}): {q}"
    );

    // Everything leased: no pending event.
    app.fetch(&key, &json!({"size": 10, "consumer": "c"})).await;
    let q = app.queue(&key).await;
    assert_eq!(q["oldest_pending_age_seconds"], Value::Null, "{q}");
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(4)));
}
