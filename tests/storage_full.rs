//! Storage watermarks (issue 11, item 8: on a full disk, ingest answered 500
//! and so did fetching, so consumers could not drain the queue to free
//! space). Above `--max-db-size` or under `--min-free-disk`, ingest answers
//! 507 `storage_full` with `Retry-After`, fetch / mark-read / release go on,
//! `/readyz` says `storage_full` (still 200: consumers must reach the node)
//! and `eventd_storage_full` is 1. A tiny limit makes it deterministic.

mod common;

use common::{metric, opens, recipients, spawn_app, spawn_app_on, Backend, TestApp, ADMIN};
use serde_json::{json, Value};

both!(over_the_watermark_ingest_is_507_and_consumers_drain);

async fn refused(app: &TestApp, path: &str, key: &str) {
    let r = app.post(path, key, &opens(1)).await;
    assert_eq!(r.status(), 507, "{path}");
    assert!(r.headers().get("retry-after").is_some(), "{path}: Retry-After");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "storage_full", "{v}");
}

async fn readyz(app: &TestApp) -> Value {
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still ready: consumers drain through it");
    r.json().await.unwrap()
}

async fn over_the_watermark_ingest_is_507_and_consumers_drain(b: Backend) {
    let plain = spawn_app(b).await;
    let (id, key) = plain.create_account("acme").await;
    plain.ingest(&key, &opens(5)).await;
    assert_eq!(readyz(&plain).await["status"], "ready");

    // A node on the same database whose limit the database is over.
    let full = spawn_app_on(b, &plain.db_url, &["--max-db-size", "1k"]).await;
    refused(&full, "/v1/events", &key).await;
    refused(&full, &format!("/v1/accounts/{id}/events"), ADMIN).await;
    let ready = readyz(&full).await;
    assert_eq!(ready["status"], "storage_full", "{ready}");
    assert!(ready["message"].as_str().unwrap().contains("--max-db-size"), "{ready}");
    assert_eq!(metric(&full.metrics().await, "eventd_storage_full"), 1.0);
    assert_eq!(metric(&plain.metrics().await, "eventd_storage_full"), 0.0);

    // Consumers drain through it: fetch, release, fetch again, mark read.
    let first = full.fetch(&key, &json!({"size": 2})).await;
    assert_eq!(recipients(&first).len(), 2);
    let id1 = first["batch_id"].as_str().unwrap();
    let r = full.post_empty(&format!("/v1/batches/{id1}/release"), &key).await;
    assert_eq!(r.status(), 200);
    let all = full.fetch(&key, &json!({"size": 10})).await;
    assert_eq!(recipients(&all).len(), 5);
    let id2 = all["batch_id"].as_str().unwrap();
    let r = full.post_empty(&format!("/v1/batches/{id2}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(full.queue(&key).await["pending"], 0);
    refused(&full, "/v1/events", &key).await;
    // The node without the limit accepts.
    plain.ingest(&key, &opens(1)).await;

    // --min-free-disk: the SQLite file's filesystem (a share of it no
    // filesystem in use has free); PostgreSQL's disk is the server's.
    let disk = spawn_app_on(b, &plain.db_url, &["--min-free-disk", "99.999%"]).await;
    match b {
        Backend::Sqlite => {
            refused(&disk, "/v1/events", &key).await;
            let ready = readyz(&disk).await;
            assert!(
                ready["message"].as_str().unwrap().contains("--min-free-disk"),
                "{ready}"
            );
        }
        Backend::Postgres => {
            disk.ingest(&key, &opens(1)).await;
            assert_eq!(readyz(&disk).await["status"], "ready");
        }
    }
}
