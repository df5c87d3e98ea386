//! Email and FTP destinations across changes: eventd killed (SIGKILL) in
//! the middle of a digest and an FTP period and started again on the same
//! database loses and repeats nothing; a trigger switched between
//! destinations (http → email → ftp → pull → http → none → email) leaves
//! every event accepted before a change where it was (SPEC §6). Against
//! real SMTP and FTP servers (tests/mail_ftp/servers.py).

mod common;

use std::time::Duration;

use common::mail_ftp::{
    self, app_for, attachment_rows, events, flags, in_period, period_start_of, rows_by_external_id, same_event, Relay,
    RowsById, Servers, PASSWORD, USER,
};
use common::process::ServerProcess;
use common::push::{get_json, push_to, Mode, Receiver};
use common::{drop_pg_later, fresh_database, until, Backend, TestApp};
use serde_json::{json, Value};

both!(
    a_kill_inside_a_period_loses_and_repeats_nothing,
    switching_destinations_leaves_accepted_events_where_they_were,
);

/// Digest and FTP period of the restart test.
const PERIOD_MS: i64 = 3000;

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until(what, Duration::from_secs(90), check).await
}

fn ftp_settings(s: &Servers, every_seconds: i64) -> Value {
    json!({"host": "127.0.0.1", "port": s.ftp, "username": USER, "password": PASSWORD,
        "directory": "/", "every_seconds": every_seconds, "format": "csv", "tls": "none"})
}

async fn put_ok(app: &TestApp, key: &str, trigger: &str, body: Value) -> Value {
    let r = app.put(&format!("/v1/triggers/{trigger}"), key, &body).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

/// The sum of `event_count` over a trigger's delivered deliveries.
async fn delivered_events(app: &TestApp, key: &str, trigger: &str) -> i64 {
    let l = get_json(
        app,
        key,
        &format!("/v1/deliveries?status=delivered&trigger={trigger}&limit=1000"),
    )
    .await;
    l["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_count"].as_i64().unwrap())
        .sum()
}

async fn ingest(app: &TestApp, key: &str, evs: &[Value]) {
    app.ingest(key, &Value::Array(evs.to_vec())).await;
}

/// The events carried by the delivered deliveries of one transport.
async fn delivered(app: &TestApp, key: &str, transport: &str) -> i64 {
    let l = get_json(app, key, "/v1/deliveries?status=delivered&limit=1000").await;
    l["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["transport"] == transport)
        .map(|d| d["event_count"].as_i64().unwrap())
        .sum()
}

/// Every CSV row of the digest mails (by external_id: the rows and the
/// attachment names they are in), and the Message-IDs of those mails.
fn digest_rows(mails: &[Value]) -> (RowsById, Vec<String>) {
    let mut rows = RowsById::new();
    let mut ids = Vec::new();
    for m in mails
        .iter()
        .filter(|m| !m["attachments"].as_array().unwrap().is_empty())
    {
        ids.push(m["message_id"].as_str().unwrap().to_string());
        let name = m["attachments"][0]["filename"].as_str().unwrap().to_string();
        for row in attachment_rows(m) {
            rows.entry(row["external_id"].clone())
                .or_default()
                .push((row, name.clone()));
        }
    }
    (rows, ids)
}

/// Asserts that `rows` holds exactly `sent`, each event once, shown as
/// ingested, in the file or attachment of the period it was received in.
fn exactly_once_in_its_period(rows: &RowsById, sent: &[Value]) {
    let ids: Vec<&str> = sent.iter().map(|e| e["external_id"].as_str().unwrap()).collect();
    let extra: Vec<&String> = rows.keys().filter(|k| !ids.contains(&k.as_str())).collect();
    assert!(extra.is_empty(), "events that were not sent there: {extra:?}");
    for ev in sent {
        let id = ev["external_id"].as_str().unwrap();
        let got = rows.get(id).unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(got.len(), 1, "{id} delivered {} times", got.len());
        let (row, name) = &got[0];
        same_event(row, ev);
        in_period(row, period_start_of(name), PERIOD_MS, name);
    }
}

/// Waits until the wall clock is in the first third of a period, so that
/// what is ingested next is still in an open period a second later.
async fn start_of_a_period() {
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        let into = now.rem_euclid(PERIOD_MS);
        if into < PERIOD_MS / 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis((PERIOD_MS - into) as u64 + 20)).await;
    }
}

/// eventd in a process of its own, OPEN mailed as 3-second digests and
/// CLICK uploaded in 3-second FTP files. Events are delivered, then more
/// are accepted and eventd is killed while their period is open; after the
/// restart on the same database (SQLite file or PostgreSQL) more come.
/// Every event arrives once, in the mail or file of its period, and no
/// mail is sent twice.
async fn a_kill_inside_a_period_loses_and_repeats_nothing(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let (db, _tmp) = fresh_database(b);
    let _pg = drop_pg_later(b, &db);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("eventd.log");
    let flags = flags(&s, Relay::Plain, 3);
    let (server, app) = ServerProcess::start(b, &db, &flags, &log).await;
    let (_, key) = app.create_account("acme").await;
    let period_s = PERIOD_MS / 1000;
    put_ok(
        &app,
        &key,
        "OPEN",
        json!({"destination": "email", "email": {"to": ["ops@example.com"], "digest_seconds": period_s}}),
    )
    .await;
    put_ok(
        &app,
        &key,
        "CLICK",
        json!({"destination": "ftp", "ftp": ftp_settings(&s, period_s)}),
    )
    .await;
    let batch = |tag: &str| {
        let opens = events(15, &format!("{tag}o"), "OPEN");
        let clicks = events(15, &format!("{tag}c"), "CLICK");
        (opens, clicks)
    };
    let together = |opens: &Vec<Value>, clicks: &Vec<Value>| {
        let all: Vec<Value> = opens.iter().chain(clicks).cloned().collect();
        Value::Array(all)
    };

    // Before: delivered and recorded, so nothing is in flight at the kill.
    let (a_open, a_click) = batch("a");
    app.ingest(&key, &together(&a_open, &a_click)).await;
    eventually("the first events delivered and recorded", || async {
        let done =
            delivered_events(&app, &key, "OPEN").await == 15 && delivered_events(&app, &key, "CLICK").await == 15;
        done.then_some(())
    })
    .await;

    // Accepted early in a period; killed while that period is still open.
    start_of_a_period().await;
    let (b_open, b_click) = batch("b");
    app.ingest(&key, &together(&b_open, &b_click)).await;
    for trigger in ["OPEN", "CLICK"] {
        let t = get_json(&app, &key, &format!("/v1/triggers/{trigger}")).await;
        assert_eq!(t["push"]["collecting"], 15, "waiting for their period: {t}");
    }
    server.kill();

    // Started again on the same database; more events come.
    let (_server, app) = ServerProcess::start(b, &db, &flags, &log).await;
    let (c_open, c_click) = batch("c");
    app.ingest(&key, &together(&c_open, &c_click)).await;
    let opens: Vec<Value> = [a_open, b_open, c_open].concat();
    let clicks: Vec<Value> = [a_click, b_click, c_click].concat();
    eventually("every event delivered and recorded", || async {
        let done = delivered_events(&app, &key, "OPEN").await == opens.len() as i64
            && delivered_events(&app, &key, "CLICK").await == clicks.len() as i64;
        done.then_some(())
    })
    .await;
    let (mail_rows, message_ids) = digest_rows(&s.mails());
    exactly_once_in_its_period(&mail_rows, &opens);
    let mut distinct = message_ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        message_ids.len(),
        "a digest mailed twice: {message_ids:?}"
    );
    exactly_once_in_its_period(&rows_by_external_id(&s.files("/")), &clicks);
}

/// One trigger through every destination. Each change leaves the events
/// accepted before it where they were: http deliveries still failing go
/// to the old URL once it answers, an email digest period and an FTP period
/// still open are mailed and uploaded with the settings they were accepted
/// under, pulled events stay in the queue (and a second http
/// configuration backfills nothing), `none` keeps events out of all of
/// them.
async fn switching_destinations_leaves_accepted_events_where_they_were(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let rx = Receiver::start().await;
    let app = app_for(b, &s, Relay::Plain, 1000, &[]).await;
    let (_, key) = app.create_account("acme").await;

    // http, first of all (nothing to backfill); its receiver fails for now.
    rx.set("first", Mode::Status(503));
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("first")})).await;
    assert_eq!(v["backfilled"], 0);
    let h1 = events(4, "h1", "OPEN");
    ingest(&app, &key, &h1).await;
    eventually("the http deliveries tried and failed", || async {
        let l = get_json(&app, &key, "/v1/deliveries?status=pending").await;
        let tried = l["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["attempts"].as_i64() > Some(0))
            .count();
        (tried == h1.len()).then_some(())
    })
    .await;

    // → email digests; the old URL starts answering.
    put_ok(
        &app,
        &key,
        "OPEN",
        json!({"destination": "email", "email": {"to": ["first@example.com"], "digest_seconds": 2}}),
    )
    .await;
    rx.set("first", Mode::Status(200));
    let e = events(4, "e", "OPEN");
    ingest(&app, &key, &e).await;
    // → ftp, while the digest period is (most likely) open.
    put_ok(
        &app,
        &key,
        "OPEN",
        json!({"destination": "ftp", "ftp": ftp_settings(&s, 2)}),
    )
    .await;
    let f = events(4, "f", "OPEN");
    ingest(&app, &key, &f).await;
    // → pull, while the FTP period is (most likely) open.
    put_ok(&app, &key, "OPEN", json!({"destination": "pull"})).await;
    let p = events(4, "p", "OPEN");
    ingest(&app, &key, &p).await;
    // A new configuration of a transport applies to what still waits for
    // it (as a new URL does): let the first URL have its deliveries first.
    eventually("the http deliveries sent to the first URL", || async {
        (delivered(&app, &key, "http").await == h1.len() as i64).then_some(())
    })
    .await;
    // → http again, at another URL: no second backfill.
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("second")})).await;
    assert!(v.get("backfilled").is_none(), "{v}");
    let h2 = events(4, "h2", "OPEN");
    ingest(&app, &key, &h2).await;
    // → none: kept in the history only.
    put_ok(&app, &key, "OPEN", json!({"destination": "none"})).await;
    let n = events(4, "n", "OPEN");
    ingest(&app, &key, &n).await;
    // The digest and the file of the earlier periods went out...
    eventually("the digest mailed and the file uploaded", || async {
        let done = delivered(&app, &key, "email").await == e.len() as i64
            && delivered(&app, &key, "ftp").await == f.len() as i64;
        done.then_some(())
    })
    .await;
    // → email again, one mail per event, to someone else.
    put_ok(
        &app,
        &key,
        "OPEN",
        json!({"destination": "email", "email": {"to": ["second@example.com"]}}),
    )
    .await;
    let m = events(4, "m", "OPEN");
    ingest(&app, &key, &m).await;

    let ids = |evs: &[&Vec<Value>]| -> Vec<String> {
        let mut out: Vec<String> = evs
            .iter()
            .flat_map(|v| v.iter().map(|e| e["external_id"].as_str().unwrap().to_string()))
            .collect();
        out.sort();
        out
    };
    // Everything sent is recorded: h1 and h2 one by one, e and f in their
    // mail and file, m one by one.
    let expected = (h1.len() + e.len() + f.len() + h2.len() + m.len()) as i64;
    eventually("every delivery recorded", || async {
        (delivered_events(&app, &key, "OPEN").await == expected).then_some(())
    })
    .await;
    let delivered_to = |path: &str| {
        let mut got: Vec<String> = rx
            .hits(path)
            .iter()
            .map(|h| h.json()["external_id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        got.dedup();
        got
    };
    assert_eq!(
        delivered_to("first"),
        ids(&[&h1]),
        "accepted for http, sent to the old URL"
    );
    assert_eq!(delivered_to("second"), ids(&[&h2]));
    let mails = s.mails();
    let (digested, _) = digest_rows(&mails);
    let mut digested: Vec<String> = digested.into_keys().collect();
    digested.sort();
    assert_eq!(digested, ids(&[&e]), "accepted for the digest, mailed in one");
    let singles: Vec<&Value> = mails
        .iter()
        .filter(|m| m["attachments"].as_array().unwrap().is_empty())
        .collect();
    let mut single_ids: Vec<String> = singles
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap();
            let line = text.lines().find(|l| l.starts_with("external_id: ")).unwrap();
            line["external_id: ".len()..].to_string()
        })
        .collect();
    single_ids.sort();
    assert_eq!(single_ids, ids(&[&m]));
    for mail in &mails {
        let digest = !mail["attachments"].as_array().unwrap().is_empty();
        let to = if digest {
            "first@example.com"
        } else {
            "second@example.com"
        };
        assert_eq!(mail["rcpt_tos"], json!([to]));
    }
    let mut uploaded: Vec<String> = rows_by_external_id(&s.files("/")).into_keys().collect();
    uploaded.sort();
    assert_eq!(uploaded, ids(&[&f]), "accepted for FTP, uploaded");
    let batch = app.fetch(&key, &json!({"size": 100})).await;
    let mut pulled: Vec<String> = batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["external_id"].as_str().unwrap().to_string())
        .collect();
    pulled.sort();
    assert_eq!(pulled, ids(&[&p]), "accepted for pull, still queued");
    // `n` went nowhere: the history has every event, the deliveries all but n.
    let all = get_json(&app, &key, "/v1/deliveries?limit=1000").await;
    let sent_somewhere: i64 = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_count"].as_i64().unwrap())
        .sum();
    assert_eq!(sent_somewhere, expected);
}
