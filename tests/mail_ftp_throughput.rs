//! Measurements (ignored by default; they print figures, assert only
//! completeness): mails per second of a one-mail-per-event destination, and
//! events per second into FTP files.
//!
//! cargo test --release --test mail_ftp_throughput -- --ignored --nocapture

mod common;

use std::time::Instant;

use common::mail_ftp::{self, Servers, PASSWORD, USER};
use common::{opens, spawn_app_with, Backend};
use serde_json::json;

fn backend() -> Backend {
    match std::env::var("EVENTD_BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn mails_per_second_one_per_event() {
    assert!(mail_ftp::available());
    let s = Servers::start();
    let url = format!("smtp://127.0.0.1:{}", s.smtp);
    let app = spawn_app_with(backend(), &["--smtp-url", &url, "--smtp-from", "noreply@eventd.test"]).await;
    let (_, key) = app.create_account("acme").await;
    let r = app
        .put(
            "/v1/triggers/OPEN",
            &key,
            &json!({"destination": "email", "email": {"to": ["ops@example.com"]}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let n = 1000;
    let started = Instant::now();
    app.ingest(&key, &opens(n)).await;
    s.wait_mails(n, 600).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} mails (one per event) in {secs:.2} s: {:.0} mails/s ({:?})",
        n as f64 / secs,
        backend()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn events_per_second_into_ftp_files() {
    assert!(mail_ftp::available());
    let s = Servers::start();
    let app = spawn_app_with(backend(), &["--allow-private-targets", "--min-period-seconds", "1"]).await;
    let (_, key) = app.create_account("acme").await;
    let ftp = json!({"host": "127.0.0.1", "port": s.ftp, "username": USER, "password": PASSWORD,
        "every_seconds": 1, "tls": "none"});
    let r = app
        .put("/v1/triggers/OPEN", &key, &json!({"destination": "ftp", "ftp": ftp}))
        .await;
    assert_eq!(r.status(), 200);
    let n = 100_000;
    let started = Instant::now();
    for _ in 0..n / 10_000 {
        app.ingest(&key, &opens(10_000)).await;
    }
    let ingested = started.elapsed().as_secs_f64();
    let files = s.wait_file_events("/", n, 600).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} events into {} FTP files in {secs:.2} s (ingest {ingested:.2} s, 1 s periods): {:.0} events/s ({:?})",
        files.len(),
        n as f64 / secs,
        backend()
    );
}
