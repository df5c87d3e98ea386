//! `GET /v1/stats`: per-minute activity counters over HTTP, on both backends.

mod common;

use std::time::{Duration, Instant};

use common::push::{push_to, Mode, Receiver, FAST};
use common::{opens, spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};

both!(
    counts_ingest_and_mark_read_per_trigger,
    counts_push_results_per_trigger,
    bad_ranges_are_refused
);

async fn app(b: Backend) -> TestApp {
    spawn_app_with(b, &["--stats-flush-interval", "100ms"]).await
}

fn sum(buckets: &Value, field: &str) -> i64 {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[field].as_i64().unwrap())
        .sum()
}

/// Polls the last hour's stats until `done` accepts them (the counters are
/// written every 100 ms), or fails after 30 s with the last answer.
async fn stats_until(app: &TestApp, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get("/v1/stats", key).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if done(&v) {
            return v;
        }
        let totals: Vec<(&str, i64)> = ["ingested", "pulled", "delivered", "failed"]
            .into_iter()
            .map(|f| (f, sum(&v["buckets"], f)))
            .collect();
        assert!(Instant::now() < deadline, "stats never matched; totals {totals:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn counts_ingest_and_mark_read_per_trigger(b: Backend) {
    let app = app(b).await;
    let (_, key) = app.create_account("acme").await;
    let (_, other) = app.create_account("globex").await;
    app.ingest(&key, &opens(3)).await;
    let clicks = json!([
        {"trigger": "CLICK", "recipient": "a@x.test", "external_id": "c1"},
        {"trigger": "CLICK", "recipient": "b@x.test", "external_id": "c2"},
    ]);
    app.ingest(&key, &clicks).await;
    // Duplicates are not counted.
    assert_eq!(app.ingest(&key, &clicks).await["duplicates"], 2);
    app.ingest(&other, &opens(1)).await;
    let batch = app.fetch(&key, &json!({"size": 4})).await;
    let id = batch["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 200);
    // Marking it read again deletes (and counts) nothing more.
    app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;

    let v = stats_until(&app, &key, |v| {
        sum(&v["buckets"], "ingested") == 5 && sum(&v["buckets"], "pulled") == 4
    })
    .await;
    assert_eq!(v["step_seconds"], 60);
    assert_eq!(v["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(sum(&v["triggers"]["OPEN"], "ingested"), 3);
    assert_eq!(sum(&v["triggers"]["OPEN"], "pulled"), 3);
    assert_eq!(sum(&v["triggers"]["CLICK"], "ingested"), 2);
    assert_eq!(sum(&v["triggers"]["CLICK"], "pulled"), 1);
    assert_eq!(sum(&v["buckets"], "delivered") + sum(&v["buckets"], "failed"), 0);
    let triggers: Vec<&String> = v["triggers"].as_object().unwrap().keys().collect();
    assert_eq!(triggers, ["CLICK", "OPEN"], "only triggers with activity");

    // Each account sees its own counts only.
    let o = stats_until(&app, &other, |v| sum(&v["buckets"], "ingested") == 1).await;
    assert_eq!(sum(&o["buckets"], "pulled"), 0);

    // Larger buckets sum the minutes; a range in the past is empty.
    let r = app.get("/v1/stats?step=3600", &key).await;
    let hourly: Value = r.json().await.unwrap();
    assert_eq!(sum(&hourly["buckets"], "ingested"), 5);
    assert_eq!(hourly["buckets"].as_array().unwrap().len(), 1);
    let r = app
        .get("/v1/stats?from=2020-01-01T00:00:00Z&to=2020-01-01T01:00:00Z", &key)
        .await;
    let past: Value = r.json().await.unwrap();
    assert_eq!(sum(&past["buckets"], "ingested"), 0);
    assert_eq!(past["from"], "2020-01-01T00:00:00.000Z");
}

/// Pushed events count as delivered when their request succeeded and as
/// failed for each failed request, under their trigger.
async fn counts_push_results_per_trigger(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("down", Mode::Status(500));
    let mut flags = FAST.to_vec();
    flags.extend(["--stats-flush-interval", "100ms"]);
    let app = spawn_app_with(b, &flags).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("up")})).await;
    push_to(&app, &key, "CLICK", json!({"url": rx.url("down")})).await;
    app.ingest(&key, &opens(3)).await;
    app.ingest(&key, &json!([{"trigger": "CLICK", "recipient": "a@x.test"}]))
        .await;
    // The click fails four times (first try and three retries), then dies.
    let v = stats_until(&app, &key, |v| {
        sum(&v["buckets"], "delivered") == 3 && sum(&v["buckets"], "failed") == 4
    })
    .await;
    assert_eq!(sum(&v["triggers"]["OPEN"], "delivered"), 3);
    assert_eq!(sum(&v["triggers"]["OPEN"], "failed"), 0);
    assert_eq!(sum(&v["triggers"]["CLICK"], "delivered"), 0);
    assert_eq!(sum(&v["triggers"]["CLICK"], "failed"), 4);
    assert_eq!(rx.hits("down").len(), 4);
}

async fn bad_ranges_are_refused(b: Backend) {
    let app = app(b).await;
    let (_, key) = app.create_account("acme").await;
    for q in [
        "step=90",
        "step=0",
        "step=-60",
        "step=99999999999999",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2020-01-01T00:00:00Z&to=2021-01-01T00:00:00Z",
        "colour=blue",
    ] {
        let r = app.get(&format!("/v1/stats?{q}"), &key).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_query", "{q}: {v}");
    }
    let r = app.get("/v1/stats", "evk_nope").await;
    assert_eq!(r.status(), 401);
    let r = app.get("/v1/stats", common::ADMIN).await;
    assert_eq!(r.status(), 403);
}
