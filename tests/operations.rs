//! Operating eventd: metrics, retention, logs without secrets, graceful
//! shutdown of the real binary.

mod common;

use std::time::Duration;

use common::{
    free_port, fresh_database, metric, opens, recipients, sigterm, spawn_app, spawn_app_with, start_binary_logged,
    until, wait_up, Backend, ADMIN,
};
use serde_json::{json, Value};

both!(
    metrics_count_what_happened,
    retention_prunes_history_and_expires_old_queue_events,
    a_read_batchs_events_leave_a_zero_day_history_at_the_sweep,
    logs_never_show_secrets,
    sigterm_drains_and_exits_zero,
    sigterm_finishes_deliveries_in_flight,
    readyz_follows_the_database,
);

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

    let r = app.get("/metrics", ADMIN).await;
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
    let once = json!({"trigger": "CLICK", "recipient": "c@x.test", "external_id": "once"});
    assert_eq!(app.ingest(&key, &once).await["accepted"], 1);
    // One batch stays open: its events are not expired while leased.
    let open = app.fetch(&key, &json!({"size": 2, "lease_seconds": 60})).await;
    assert_eq!(recipients(&open).len(), 2);
    // The history keeps what the queue still refers to: the open batch's
    // two events stay until it is marked read.
    let text = until("expiry and pruning", Duration::from_secs(30), || async {
        let text = app.metrics().await;
        (metric(&text, "eventd_queue_expired_total") >= 4.0 && metric(&text, "eventd_history_pruned_total") >= 4.0)
            .then_some(text)
    })
    .await;
    assert_eq!(metric(&text, "eventd_queue_expired_total"), 4.0, "{text}");
    assert_eq!(metric(&text, "eventd_history_pruned_total"), 4.0);
    let q = app.queue(&key).await;
    assert_eq!(q["pending"], 0);
    assert_eq!(q["in_flight"], 2);
    // The open batch can still be marked read, with its events.
    let again = app.fetch(&key, &json!({"size": 2, "lease_seconds": 60})).await;
    assert_eq!(recipients(&again), recipients(&open));
    let id = open["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);
    until("the read events pruned", Duration::from_secs(30), || async {
        (metric(&app.metrics().await, "eventd_history_pruned_total") >= 6.0).then_some(())
    })
    .await;
    // The same external_id can be used again once its event left the history.
    assert_eq!(app.ingest(&key, &once).await, json!({"accepted": 1, "duplicates": 0}));
    if b == Backend::Postgres {
        // Maintenance vacuums the tables it deletes from, whatever the
        // server's autovacuum settings (off on the test server), so their
        // space is reused (src/store/vacuum.rs).
        let sql = "SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'pull_queue'";
        until("maintenance vacuums pull_queue", Duration::from_secs(30), || async {
            (common::pg_count(&app.db_url, sql) > 0).then_some(())
        })
        .await;
    }
}

/// On PostgreSQL the sweeper deletes a read batch's events from the history
/// too when they are past `--history-days` (here 0), without waiting for
/// maintenance (an hour away here): such a history holds only what is
/// queued, and an `external_id` can be used again once its event was read.
/// With 7 days, or on SQLite (where maintenance does it), the history keeps
/// them after the sweep.
async fn a_read_batchs_events_leave_a_zero_day_history_at_the_sweep(b: Backend) {
    for days in ["0", "7"] {
        let at_sweep = days == "0" && b == Backend::Postgres;
        let app = spawn_app_with(b, &["--history-days", days, "--maintenance-interval", "1h"]).await;
        let (_, key) = app.create_account("acme").await;
        app.ingest(&key, &opens(2)).await;
        let once = json!({"trigger": "CLICK", "recipient": "c@x.test", "external_id": "once"});
        assert_eq!(app.ingest(&key, &once).await["accepted"], 1);
        let batch = app.fetch(&key, &json!({"size": 10})).await;
        let id = batch["batch_id"].as_str().unwrap();
        let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
        assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 3);
        // (The metric counts after the sweep's commit.)
        let pruned = until("the batch swept", Duration::from_secs(30), || async {
            let pruned = metric(&app.metrics().await, "eventd_history_pruned_total");
            let swept = common::sql_count(b, &app.db_url, "SELECT COUNT(*) AS n FROM pull_queue") == 0;
            (swept && (!at_sweep || pruned > 0.0)).then_some(pruned)
        })
        .await;
        let history = common::sql_count(b, &app.db_url, "SELECT COUNT(*) AS n FROM events");
        let again = app.ingest(&key, &once).await;
        if at_sweep {
            assert_eq!((history, pruned), (0, 3.0));
            assert_eq!(again, json!({"accepted": 1, "duplicates": 0}));
        } else {
            assert_eq!((history, pruned), (3, 0.0));
            assert_eq!(again, json!({"accepted": 0, "duplicates": 1}));
        }
    }
}

/// Starts the binary on a fresh database and creates an account `acme`:
/// (child, base url, client, its key, the database's guard).
async fn start_with_account(b: Backend, extra: &[&str]) -> (std::process::Child, String, reqwest::Client, String, Db) {
    let (db_url, tmp) = fresh_database(b);
    let pg = common::drop_pg_later(b, &db_url);
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = start_binary_logged(&db_url, port, extra, log.path());
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
    let db = Db {
        db_url,
        _tmp: tmp,
        _pg: pg.map(|g| Box::new(g) as Box<dyn std::any::Any>),
        log,
    };
    (child, base, client, key, db)
}

/// A test database and what removes it at the end.
struct Db {
    db_url: String,
    _tmp: Option<tempfile::TempDir>,
    _pg: Option<Box<dyn std::any::Any>>,
    /// The server's log (trace level).
    log: tempfile::NamedTempFile,
}

async fn logs_never_show_secrets(b: Backend) {
    let (mut child, base, client, key, db) = start_with_account(b, &["--log-format", "json"]).await;
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
    let log = std::fs::read_to_string(db.log.path()).unwrap();
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
    // The signal comes once the poll is waiting on the server.
    until("the long poll waits", Duration::from_secs(30), || async {
        let text = client
            .get(format!("{base}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (metric(&text, "eventd_long_poll_waiters") == 1.0).then_some(())
    })
    .await;
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

async fn sigterm_finishes_deliveries_in_flight(b: Backend) {
    use common::push::{deliveries, Mode, Receiver};
    let rx = Receiver::start().await;
    rx.set("slow", Mode::Slow(1500));
    let (mut child, base, client, key, db) =
        start_with_account(b, &["--allow-private-targets", "--push-poll-interval", "20ms"]).await;
    let r = client
        .put(format!("{base}/v1/triggers/OPEN"))
        .bearer_auth(&key)
        .json(&json!({"destination": "http", "http": {"url": rx.url("slow")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&opens(1))
        .send()
        .await
        .unwrap();
    until("the request in flight", Duration::from_secs(30), || async {
        (!rx.hits("slow").is_empty()).then_some(())
    })
    .await;
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The answer that came after the signal was recorded before the exit.
    let app = common::spawn_app_on(b, &db.db_url, &["--no-worker"]).await;
    let list = deliveries(&app, &key, "").await;
    assert_eq!(list[0]["status"], "delivered", "{list:?}");
    assert_eq!(list[0]["attempts"], 1);
    assert_eq!(rx.hits("slow").len(), 1);
}

/// /readyz answers 200 while the database answers, 503 `not_ready` while it
/// does not, and 200 again after. Taking the database away is done on
/// PostgreSQL (refuse connections, end the server's sessions); an embedded
/// SQLite file cannot become unreachable while the process holds it open.
async fn readyz_follows_the_database(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    if b == Backend::Sqlite {
        return;
    }
    let name = app
        .db_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let admin = common::pg_url("postgres");
    common::exec_sql(
        b,
        &admin,
        &format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ),
    );
    // pg_terminate_backend only signals: a pooled connection may still
    // answer one ping before its backend exits. No new one can connect.
    let r = until("not ready", Duration::from_secs(10), || async {
        let r = app.client.get(app.url("/readyz")).send().await.ok()?;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_ready");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the process is still up");
    common::exec_sql(b, &admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true;"));
    until("ready again", Duration::from_secs(60), || async {
        let r = app.client.get(app.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

/// Without PostgreSQL, `cargo test` skips its variants, unless a truthy CI
/// or EVENTD_TEST_PG asks for them.
#[test]
fn postgres_tests_are_skipped_only_when_nothing_asks_for_them() {
    use common::pg_skip_policy;
    assert!(
        pg_skip_policy(false, false, || false),
        "skipped: unreachable, not asked for"
    );
    assert!(!pg_skip_policy(false, false, || true), "run: reachable");
    assert!(!pg_skip_policy(true, false, || false), "fail: CI asks for them");
    assert!(
        !pg_skip_policy(false, true, || false),
        "fail: EVENTD_TEST_PG asks for them"
    );
}
