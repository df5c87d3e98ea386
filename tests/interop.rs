//! Interop with real third-party SOAP clients: Python zeep against the
//! eventNotification service, PHP's SoapClient against both services, on
//! both backends. The scripts live in tests/interop/. With CI set to
//! anything truthy (`1`, `true`…) a missing client fails the test;
//! elsewhere it is skipped with a note (`.ci/run` installs them).

mod common;

use std::path::{Path, PathBuf};

use common::{in_ci, opens, spawn_app, Backend, TestApp};
use serde_json::{json, Value};

both!(
    zeep_fetches_reads_and_faults,
    php_soapclient_decodes_event_maps,
    php_soapclient_speaks_paint
);

/// A client tool, or None (skip) when it is missing outside CI.
fn tool(what: &str, program: PathBuf, probe: &[&str], how: &str) -> Option<PathBuf> {
    let ok = common::clean_command(&program)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(program);
    }
    let note = format!("{what} is not available ({} {:?}); {how}", program.display(), probe);
    if in_ci() {
        panic!("{note}");
    }
    eprintln!("SKIPPED interop test: {note}");
    None
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(name)
}

/// An OPEN for r0@x.test, then a CLICK for c@x.test (a URL with `&`) with `data`.
async fn ingest_open_and_click(app: &TestApp, key: &str, data: Value) {
    app.ingest(key, &json!({"trigger": "OPEN", "recipient": "r0@x.test"}))
        .await;
    let click = json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a?b=1&c=2", "data": data});
    app.ingest(key, &click).await;
}

/// Runs a client script (off the async runtime) with `args`, then checks
/// that the account's queue is empty: the client marked what it read.
async fn run_then_queue_is_empty(app: &TestApp, key: &str, program: PathBuf, name: &str, args: Vec<String>) {
    let script = script(name);
    tokio::task::spawn_blocking(move || {
        let mut all = vec![script.to_string_lossy().to_string()];
        all.extend(args);
        run(&program, &all)
    })
    .await
    .unwrap();
    let q = app.queue(key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(0)));
}

fn run(program: &Path, args: &[String]) {
    let out = common::clean_command(program)
        .args(args)
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {:?} failed:\n{stdout}\n{stderr}",
        program.display(),
        args
    );
    println!("{stdout}");
}

async fn zeep_fetches_reads_and_faults(b: Backend) {
    let python = std::env::var("EVENTD_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let Some(python) = tool(
        "Python with zeep",
        python,
        &["-c", "import zeep"],
        "create .venv and `pip install zeep` (see .ci/run) or set EVENTD_INTEROP_PYTHON",
    ) else {
        return;
    };
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(2)).await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a?b=1&c=2", "data": {"geo": "FR"}}),
    )
    .await;
    // zeep marks its batch read: the queue is empty after.
    run_then_queue_is_empty(
        &app,
        &key,
        python,
        "zeep_client.py",
        vec![app.base.clone(), key.clone()],
    )
    .await;
}

fn php() -> Option<PathBuf> {
    let php = std::env::var("EVENTD_INTEROP_PHP").unwrap_or_else(|_| "php".to_string());
    tool(
        "PHP with the soap and dom extensions",
        PathBuf::from(php),
        &[
            "-r",
            "exit(extension_loaded('soap') && extension_loaded('dom') ? 0 : 1);",
        ],
        "install Debian's php-cli php-soap php-xml (see .ci/run) or set EVENTD_INTEROP_PHP",
    )
}

async fn php_soapclient_decodes_event_maps(b: Backend) {
    let Some(php) = php() else {
        return;
    };
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    ingest_open_and_click(&app, &key, json!({"geo": "FR"})).await;
    let args = vec![app.base.clone(), key.clone()];
    run_then_queue_is_empty(&app, &key, php, "event_notification_client.php", args).await;
}

async fn php_soapclient_speaks_paint(b: Backend) {
    let Some(php) = php() else {
        return;
    };
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    ingest_open_and_click(&app, &key, json!({"name": "Smith, \"Jo\"\nx", "city": "Zürich"})).await;
    // The `Y` calls delete what they return.
    let args = vec![app.base.clone(), "acme".to_string(), key.clone()];
    run_then_queue_is_empty(&app, &key, php, "paint_client.php", args).await;
}
