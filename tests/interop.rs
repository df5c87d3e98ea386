//! Interop with real third-party SOAP clients: Python zeep against the
//! eventNotification service, PHP's SoapClient against both services. The scripts live in tests/interop/. Under
//! CI=true a missing client fails the test; elsewhere it is skipped with a
//! note (`.ci/run` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{opens, spawn_app, Backend};
use serde_json::json;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A client tool, or None (skip) when it is missing outside CI.
fn tool(what: &str, program: PathBuf, probe: &[&str], how: &str) -> Option<PathBuf> {
    let ok = Command::new(&program)
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

fn run(program: &Path, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("the client runs");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_fetches_reads_and_faults() {
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
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(2)).await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a?b=1&c=2", "data": {"geo": "FR"}}),
    )
    .await;
    let base = app.base.clone();
    let script = script("zeep_client.py");
    let k = key.clone();
    tokio::task::spawn_blocking(move || run(&python, &[script.to_str().unwrap(), &base, &k]))
        .await
        .unwrap();
    // zeep marked its batch read: the queue is empty.
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(0)));
}

fn php() -> Option<PathBuf> {
    let php = std::env::var("EVENTD_INTEROP_PHP").unwrap_or_else(|_| "php".to_string());
    tool(
        "PHP with the soap extension",
        PathBuf::from(php),
        &["-r", "exit(extension_loaded('soap') ? 0 : 1);"],
        "install Debian's php-cli php-soap (see .ci/run) or set EVENTD_INTEROP_PHP",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapclient_decodes_event_maps() {
    let Some(php) = php() else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "r0@x.test"}))
        .await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a?b=1&c=2", "data": {"geo": "FR"}}),
    )
    .await;
    let base = app.base.clone();
    let script = script("event_notification_client.php");
    let k = key.clone();
    tokio::task::spawn_blocking(move || run(&php, &[script.to_str().unwrap(), &base, &k]))
        .await
        .unwrap();
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapclient_speaks_paint() {
    let Some(php) = php() else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "r0@x.test"}))
        .await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a?b=1&c=2",
                "data": {"name": "Smith, \"Jo\"\nx", "city": "Zürich"}}),
    )
    .await;
    let base = app.base.clone();
    let script = script("paint_client.php");
    let k = key.clone();
    tokio::task::spawn_blocking(move || run(&php, &[script.to_str().unwrap(), &base, "acme", &k]))
        .await
        .unwrap();
    // The `Y` calls deleted what they returned.
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(0)));
}
