//! `GET /v1/queue`: what it reports while batches lease parts of the queue,
//! and what marking a batch read leaves in it, on both backends.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_app, Backend};
use serde_json::{json, Value};

both!(
    oldest_pending_age_skips_leased_events_of_each_trigger,
    marking_a_one_trigger_batch_read_deletes_only_its_members,
);

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

/// A batch of one trigger among others has members in many separate runs
/// of the queue: marking it read deletes those and nothing between them,
/// with a few runs (one range each) and with many (one member list).
async fn marking_a_one_trigger_batch_read_deletes_only_its_members(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    for runs in [3usize, 20] {
        // OPEN, CLICK, CLICK, OPEN, CLICK, CLICK, ...: `runs` runs of CLICKs.
        let events: Vec<Value> = (0..runs)
            .flat_map(|i| {
                [
                    json!({"trigger": "OPEN", "recipient": format!("o{i}")}),
                    json!({"trigger": "CLICK", "recipient": format!("c{i}a")}),
                    json!({"trigger": "CLICK", "recipient": format!("c{i}b")}),
                ]
            })
            .collect();
        app.ingest(&key, &Value::Array(events)).await;
        let clicks = app
            .fetch(&key, &json!({"size": 1000, "consumer": "c", "triggers": ["CLICK"]}))
            .await;
        assert_eq!(clicks["count"], 2 * runs);
        let id = clicks["batch_id"].as_str().unwrap();
        let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
        assert_eq!(r.status(), 200);
        let read: Value = r.json().await.unwrap();
        assert_eq!(read["deleted"], 2 * runs, "{read}");

        let q = app.queue(&key).await;
        assert_eq!(
            (q["pending"].as_i64(), q["in_flight"].as_i64()),
            (Some(runs as i64), Some(0))
        );
        let rest = app.fetch(&key, &json!({"size": 1000, "consumer": "o"})).await;
        let got: Vec<&str> = rest["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["recipient"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..runs).map(|i| format!("o{i}")).collect();
        assert_eq!(
            got, want,
            "{runs} runs: the OPEN events between the CLICK runs stay queued"
        );
        let id = rest["batch_id"].as_str().unwrap();
        assert_eq!(
            app.post_empty(&format!("/v1/batches/{id}/read"), &key).await.status(),
            200
        );
    }
}
