//! Operating eventd: metrics, retention, logs without secrets, graceful
//! shutdown of the real binary.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fresh_database, opens, recipients, spawn_app, spawn_app_with, Backend, ADMIN};
use serde_json::{json, Value};

both!(
    metrics_count_what_happened,
    retention_prunes_history_and_expires_old_queue_events,
    logs_never_show_secrets,
    sigterm_drains_and_exits_zero
);

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_count_what_happened(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(3)).await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "external_id": "e1"}),
    )
    .await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "external_id": "e1"}),
    )
    .await;
    let batch = app.fetch(&key, &json!({"size": 2})).await;
    let id = batch["batch_id"].as_str().unwrap();
    app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert_eq!(metric(&text, "eventd_events_ingested_total{trigger=\"OPEN\"}"), 3.0);
    assert_eq!(metric(&text, "eventd_events_ingested_total{trigger=\"CLICK\"}"), 1.0);
    assert_eq!(metric(&text, "eventd_events_duplicate_total"), 1.0);
    assert_eq!(metric(&text, "eventd_batches_total{outcome=\"fetched\"}"), 1.0);
    assert_eq!(metric(&text, "eventd_batches_total{outcome=\"read\"}"), 1.0);
    assert_eq!(metric(&text, "eventd_events_deleted_total"), 2.0);
    assert_eq!(metric(&text, "eventd_queue_depth"), 2.0);
    assert!(text
        .contains("eventd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/events\",status=\"2xx\""));
    assert!(text.contains("eventd_db_pool_connections{state=\"open\"}"));
    assert!(!text.contains("acme"), "no per-account labels");
}

async fn retention_prunes_history_and_expires_old_queue_events(b: Backend) {
    let app = spawn_app_with(
        b,
        &[
            "--history-days",
            "0",
            "--queue-max-age",
            "1s",
            "--maintenance-interval",
            "200ms",
        ],
    )
    .await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(5)).await;
    // One batch stays open: its events are not expired while leased.
    let open = app.fetch(&key, &json!({"size": 2, "lease_seconds": 60})).await;
    assert_eq!(recipients(&open).len(), 2);
    let mut text = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = app.get_text("/metrics").await;
        if metric(&text, "eventd_queue_expired_total") >= 3.0 && metric(&text, "eventd_history_pruned_total") >= 5.0 {
            break;
        }
    }
    assert_eq!(metric(&text, "eventd_queue_expired_total"), 3.0, "{text}");
    assert_eq!(metric(&text, "eventd_history_pruned_total"), 5.0);
    let q = app.queue(&key).await;
    assert_eq!(q["pending"], 0);
    assert_eq!(q["in_flight"], 2);
    // The same external_id can be used again once its event left the history.
    let id = open["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);
}

/// Starts the release-or-debug `eventd` binary; returns (child, base url).
fn start_binary(db_url: &str, port: u16, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_eventd"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db_url,
            "--http-workers",
            "2",
        ])
        .args(extra)
        .env("EVENTD_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "trace")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eventd binary starts")
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Starts the binary on a fresh database and creates an account `acme`:
/// (child, base url, client, its key, the database's guard).
async fn start_with_account(
    b: Backend,
    extra: &[&str],
) -> (std::process::Child, String, reqwest::Client, String, impl Sized) {
    let (db_url, tmp) = fresh_database(b);
    let pg = common::drop_pg_later(b, &db_url);
    let port = free_port();
    let child = start_binary(&db_url, port, extra);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let key = v["api_key"].as_str().unwrap().to_string();
    (child, base, client, key, (tmp, pg))
}

async fn logs_never_show_secrets(b: Backend) {
    let (mut child, base, client, key, _db) = start_with_account(b, &["--log-format", "json"]).await;
    client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&opens(1))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/v1/batches"))
        .basic_auth("acme", Some(&key))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/v1/queue"))
        .bearer_auth("evk_not_a_real_key_but_secret")
        .send()
        .await
        .unwrap();
    // The key in a WS-Security header, in a PAINT login; the PAINT context id.
    let soap = |path: &'static str, body: String| {
        client
            .post(format!("{base}{path}"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">{body}</s:Envelope>"#
            ))
            .send()
    };
    let ws = format!(
        r#"<s:Header><w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
        <w:UsernameToken><w:Username>acme</w:Username><w:Password>{key}</w:Password></w:UsernameToken></w:Security>
        </s:Header><s:Body><getQueueStatus xmlns="urn:eventd:eventNotification"/></s:Body>"#
    );
    assert_eq!(soap("/soap/eventNotification", ws).await.unwrap().status(), 200);
    let paint = |ctx: &str, class: &str, process: &str, data: &str| {
        format!(
            r#"<s:Body><p:handleRequest xmlns:p="urn:localhost-paint"><contextId>{ctx}</contextId>
            <className>{class}</className><processName>{process}</processName>{data}</p:handleRequest></s:Body>"#
        )
    };
    let login = format!(
        "<entityData><item><key>userName</key><value>acme</value></item>\
         <item><key>password</key><value>{key}</value></item></entityData>"
    );
    let r = soap("/soap/paint", paint("", "bus_facade_context", "login", &login))
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let env = eventd::soapxml::envelope::parse_envelope(text.as_bytes()).unwrap();
    let answer = eventd::soapxml::map::decode(&env.body.children[0]).unwrap();
    let ctx = answer
        .get("resultData")
        .and_then(|d| d.get("bus_entity_context"))
        .and_then(|c| c.get("beanId"))
        .and_then(|id| id.as_text())
        .unwrap_or_else(|| panic!("no context id: {text}"))
        .into_owned();
    let get = "<processData><item><key>markAsReadInd</key><value>N</value></item></processData>";
    let r = soap(
        "/soap/paint",
        paint(&ctx, "bus_facade_eventNotification", "getBatch", get),
    )
    .await;
    assert!(r.unwrap().text().await.unwrap().contains("success"));
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("/v1/events"), "requests are logged: {log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("request_id") && l.contains("/v1/batches")),
        "request lines carry a request id"
    );
    let ctx_secret = ctx.split_once('-').unwrap().1;
    for secret in [key.as_str(), ADMIN, "evk_not_a_real_key_but_secret", ctx_secret] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("acme:{key}"));
    assert!(!log.contains(&basic));
}

async fn sigterm_drains_and_exits_zero(b: Backend) {
    let (mut child, base, client, key, _db) = start_with_account(b, &[]).await;
    // A long poll is in flight when the signal arrives: it is answered
    // (empty) rather than cut off, then the process exits 0.
    let (c2, b2, k2) = (client.clone(), base.clone(), key.clone());
    let poll = tokio::spawn(async move {
        c2.post(format!("{b2}/v1/batches"))
            .bearer_auth(k2)
            .json(&json!({"wait_seconds": 20}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    let answered = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("long poll answered")
        .unwrap();
    assert_eq!(answered.unwrap(), 200);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
