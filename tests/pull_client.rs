//! `eventd pull`, the ready-made pull client: the real binary against a real
//! server, on both backends.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{opens, Backend, TestApp};
use serde_json::{json, Value};

both!(
    drains_the_queue_to_stdout_then_stops,
    a_crash_between_write_and_mark_read_redelivers_the_same_batch,
    a_crash_appending_to_a_file_writes_the_batch_again_never_loses_it,
    follow_waits_for_new_events_and_stops_on_sigterm,
    a_wrong_key_fails_and_reads_nothing
);

fn pull_command(app: &TestApp, key: &str, args: &[&str]) -> Command {
    // No EVENTD_… variable of the test process reaches the client.
    let mut c = common::clean_command(env!("CARGO_BIN_EXE_eventd"));
    c.arg("pull")
        .args(["--server", &app.base])
        .args(args)
        .env("EVENTD_KEY", key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `eventd pull` to its end (off the async workers).
async fn pull(app: &TestApp, key: &str, args: &[&str], crash_after_write: bool) -> Output {
    let mut c = pull_command(app, key, args);
    if crash_after_write {
        c.env("EVENTD_PULL_TEST_CRASH_AFTER_WRITE", "1");
    }
    tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn pending_and_in_flight(app: &TestApp, key: &str) -> (i64, i64) {
    let q = app.queue(key).await;
    (q["pending"].as_i64().unwrap(), q["in_flight"].as_i64().unwrap())
}

/// The `recipient` of each JSON line.
fn line_recipients(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            v["recipient"].as_str().unwrap().to_string()
        })
        .collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r{i}@x.test")).collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn drains_the_queue_to_stdout_then_stops(b: Backend) {
    let app = common::spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(25)).await;
    app.ingest(
        &key,
        &json!([{"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/"}]),
    )
    .await;
    let out = pull(&app, &key, &["--size", "10", "--triggers", "open"], false).await;
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        line_recipients(&text(&out.stdout)),
        expected(0..25),
        "every OPEN, in order"
    );
    assert_eq!(log.matches("marked read").count(), 3, "three batches: {log}");
    assert!(
        log.contains("events/s") && log.contains("remaining "),
        "progress: {log}"
    );
    assert_eq!(
        pending_and_in_flight(&app, &key).await,
        (1, 0),
        "only the CLICK is left"
    );
}

async fn a_crash_between_write_and_mark_read_redelivers_the_same_batch(b: Backend) {
    let app = common::spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = format!("{}/events/", dir.path().display());
    let args = ["--consumer", "crm", "--out", &out_dir];

    let crashed = pull(&app, &key, &args, true).await;
    assert!(!crashed.status.success(), "the hook aborts: {crashed:?}");
    let written = files_in(&dir.path().join("events"));
    assert_eq!(written.len(), 1, "the batch was written before the crash: {written:?}");
    let batch_id = written[0].strip_suffix(".jsonl").unwrap().to_string();
    let first = std::fs::read_to_string(dir.path().join("events").join(&written[0])).unwrap();
    assert_eq!(line_recipients(&first), expected(0..5));
    assert_eq!(pending_and_in_flight(&app, &key).await, (0, 5), "not marked read");

    let rerun = pull(&app, &key, &args, false).await;
    let log = text(&rerun.stderr);
    assert!(rerun.status.success(), "{log}");
    assert!(
        log.contains(&format!("batch {batch_id}: 5 events")),
        "the same batch again: {log}"
    );
    assert_eq!(
        files_in(&dir.path().join("events")),
        written,
        "its file replaced, not duplicated"
    );
    let again = std::fs::read_to_string(dir.path().join("events").join(&written[0])).unwrap();
    assert_eq!(again, first);
    assert_eq!(pending_and_in_flight(&app, &key).await, (0, 0), "marked read now");
}

async fn a_crash_appending_to_a_file_writes_the_batch_again_never_loses_it(b: Backend) {
    let app = common::spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(4)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.csv");
    let args = ["--format", "csv", "--out", file.to_str().unwrap()];

    let crashed = pull(&app, &key, &args, true).await;
    assert!(!crashed.status.success());
    assert_eq!(pending_and_in_flight(&app, &key).await, (0, 4));
    app.ingest(&key, &json!([{"trigger": "OPEN", "recipient": "late@x.test"}]))
        .await;

    let rerun = pull(&app, &key, &args, false).await;
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    let mut rows = csv::Reader::from_path(&file).unwrap();
    let header = rows.headers().unwrap().clone();
    let first: Vec<&str> = header.iter().take(5).collect();
    assert_eq!(first, ["id", "trigger", "occurred_at", "received_at", "recipient"]);
    let recipients: Vec<String> = rows.records().map(|r| r.unwrap()[4].to_string()).collect();
    // At-least-once: the crashed batch is in the file twice (written again
    // after the rerun got it back), then the event that came later.
    let mut want = expected(0..4);
    want.extend(expected(0..4));
    want.push("late@x.test".into());
    assert_eq!(recipients, want);
    assert_eq!(pending_and_in_flight(&app, &key).await, (0, 0));
}

/// Waits until `file` has `n` lines, or panics at the deadline.
async fn wait_for_lines(file: &Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = std::fs::read_to_string(file).map(|t| t.lines().count()).unwrap_or(0);
        if have >= n {
            assert_eq!(have, n, "no more than expected");
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the client exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{have} lines of {n} after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn follow_waits_for_new_events_and_stops_on_sigterm(b: Backend) {
    let app = common::spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.jsonl");
    let mut child = pull_command(&app, &key, &["--follow", "--out", file.to_str().unwrap()])
        .spawn()
        .unwrap();
    app.ingest(&key, &opens(3)).await;
    wait_for_lines(&file, 3, &mut child).await;
    app.ingest(&key, &json!([{"trigger": "OPEN", "recipient": "r3@x.test"}]))
        .await;
    wait_for_lines(&file, 4, &mut child).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_and_in_flight(&app, &key).await != (0, 0) {
        assert!(Instant::now() < deadline, "the last batch is marked read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(status.status.success(), "SIGTERM ends a follow cleanly: {status:?}");
    assert!(
        text(&status.stderr).contains("done: 4 events"),
        "{}",
        text(&status.stderr)
    );
    assert_eq!(
        line_recipients(&std::fs::read_to_string(&file).unwrap()),
        expected(0..4)
    );
}

async fn a_wrong_key_fails_and_reads_nothing(b: Backend) {
    let app = common::spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(2)).await;
    let out = pull(&app, &key, &["--triggers", "NOPE"], false).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown trigger(s) NOPE"),
        "{}",
        text(&out.stderr)
    );
    let out = pull(&app, "evk_wrong", &[], false).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(pending_and_in_flight(&app, &key).await, (2, 0));
}
