//! FTP destinations against a real FTP server (pyftpdlib, see
//! tests/mail_ftp/): period files over explicit FTPS, compared field by
//! field with the events; the server down and back (every event once, in
//! its period's file); a wrong password logged, suspending, and resumed.

mod common;

use std::time::Duration;

use common::mail_ftp::{
    self, app_for, events, file_events, in_period, period_start_of, rows_by_external_id, same_event, Relay, Servers,
    PASSWORD, USER,
};
use common::push::get_json as json_of;
use common::{until, Backend, TestApp};
use serde_json::{json, Value};

fn ftp(s: &Servers, tls: bool, extra: Value) -> Value {
    let mut v = json!({
        "host": "127.0.0.1",
        "port": if tls { s.ftps } else { s.ftp },
        "username": USER,
        "password": PASSWORD,
        "directory": "/",
        "every_seconds": 1,
        "format": "csv",
        "tls": if tls { "explicit" } else { "none" },
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

async fn eventually<T, F, Fut>(what: &str, secs: u64, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until(what, Duration::from_secs(secs), check).await
}

async fn period_files_over_ftps_through_an_outage(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let mut s = Servers::start();
    // Every failed upload counts toward suspension: the outage must stay under it.
    let app = app_for(b, &s, Relay::Plain, 1000, &[]).await;
    let (account, key) = app.create_account("acme").await;
    let r = app
        .put(
            "/v1/triggers/OPEN",
            &key,
            &json!({"destination": "ftp", "ftp": ftp(&s, true, json!({}))}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["ftp"]["password_set"], true);
    assert!(shown["ftp"].get("password").is_none() && !shown.to_string().contains(PASSWORD));
    let first = events(25, "a", "OPEN");
    app.ingest(&key, &Value::Array(first.clone())).await;
    s.wait_file_events("/", 25, 30).await;
    // The server goes down for a few periods; events keep coming.
    s.stop();
    let second = events(20, "b", "OPEN");
    app.ingest(&key, &Value::Array(second[..10].to_vec())).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.ingest(&key, &Value::Array(second[10..].to_vec())).await;
    eventually("a failed upload logged", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=pending").await;
        l["deliveries"][0]["last_error"].as_str().map(|_| ())
    })
    .await;
    s.restart();
    let all: Vec<Value> = first.iter().chain(second.iter()).cloned().collect();
    let files = s.wait_file_events("/", all.len(), 60).await;
    // Names sort by time and say what they hold; every event once.
    let prefix = format!("eventd_{account}_OPEN_");
    assert!(
        files.iter().all(|(n, _)| n.starts_with(&prefix) && n.ends_with(".csv")),
        "{files:?}"
    );
    assert!(files.len() >= 3, "at least three periods: {files:?}");
    let rows = rows_by_external_id(&files);
    assert_eq!(rows.len(), all.len());
    for ev in &all {
        let got = &rows[ev["external_id"].as_str().unwrap()];
        assert_eq!(got.len(), 1, "{} in two files", ev["external_id"]);
        let (row, name) = &got[0];
        same_event(row, ev);
        // In the file of the period it was received in, also the events
        // received while the server was down (not the period of the upload).
        in_period(row, period_start_of(name), 1000, name);
    }
    let l = eventually("every file recorded as delivered", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=delivered").await;
        (l["deliveries"].as_array().unwrap().len() == files.len()).then_some(l)
    })
    .await;
    let entries = l["deliveries"].as_array().unwrap();
    assert_eq!(entries.len(), files.len(), "one delivery per file");
    for d in entries {
        assert_eq!(d["transport"], "ftp");
        let name = d["name"].as_str().unwrap();
        let (_, body) = files.iter().find(|(n, _)| n == name).expect("the delivery's file");
        assert_eq!(d["event_count"].as_u64().unwrap() as usize, file_events(name, body));
        assert!(d["attempt_log"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("ftps://eventd@127.0.0.1:"));
    }
    // No half file is ever left behind.
    assert!(std::fs::read_dir(s.ftp_home()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".part")));
}

async fn wrong_password_suspends_and_resume_works(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let app = app_for(b, &s, Relay::Plain, 3, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let bad = ftp(&s, false, json!({"password": "wrong", "format": "jsonl"}));
    let r = app
        .put("/v1/triggers/OPEN", &key, &json!({"destination": "ftp", "ftp": bad}))
        .await;
    assert_eq!(r.status(), 200);
    app.ingest(&key, &Value::Array(events(5, "w", "OPEN"))).await;
    let t = eventually("suspended after 3 failed logins", 30, || async {
        let t = json_of(&app, &key, "/v1/triggers/OPEN").await;
        (t["push"]["state"] == "suspended").then_some(t)
    })
    .await;
    assert!(t["push"]["last_error"].as_str().unwrap().contains("login"), "{t}");
    let l = json_of(&app, &key, "/v1/deliveries").await;
    let attempt = &l["deliveries"][0]["attempt_log"][0];
    assert_eq!(attempt["status_code"], 530);
    assert!(!l.to_string().contains("wrong"), "the password is never logged");
    // Suspended, it keeps collecting what comes in.
    app.ingest(&key, &Value::Array(events(3, "s", "OPEN"))).await;
    // The test endpoint reports the server's answer.
    let r = app.post_empty("/v1/triggers/OPEN/test", &key).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["success"].as_bool(), v["status_code"].as_i64()),
        (Some(false), Some(530))
    );
    // Fixed password: resumed by the PUT; the waiting file is uploaded.
    let good = ftp(&s, false, json!({"format": "jsonl"}));
    let r = app
        .put("/v1/triggers/OPEN", &key, &json!({"destination": "ftp", "ftp": good}))
        .await;
    assert_eq!(r.status(), 200);
    let files = s.wait_file_events("/", 8, 30).await;
    let mut uploaded: Vec<String> = files
        .iter()
        .flat_map(|(_, body)| {
            body.lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["external_id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    uploaded.sort();
    assert_eq!(
        uploaded,
        ["s-0", "s-1", "s-2", "w-0", "w-1", "w-2", "w-3", "w-4"],
        "each event once"
    );
    // A PUT without the password keeps it (same host and user).
    let mut shown = json_of(&app, &key, "/v1/triggers/OPEN").await["ftp"].clone();
    shown.as_object_mut().unwrap().remove("password_set");
    let r = app
        .put("/v1/triggers/OPEN", &key, &json!({"destination": "ftp", "ftp": shown}))
        .await;
    assert_eq!(r.status(), 200);
    let r = app.post_empty("/v1/triggers/OPEN/test", &key).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
}

/// A server with `extra` flags, and an account (id, key) whose OPEN events
/// go to `s`'s plain FTP server every second.
async fn open_to_plain_ftp(b: Backend, s: &Servers, extra: &[&str]) -> (TestApp, i64, String) {
    let app = app_for(b, s, Relay::Plain, 3, extra).await;
    let (account, key) = app.create_account("acme").await;
    let r = app
        .put(
            "/v1/triggers/OPEN",
            &key,
            &json!({"destination": "ftp", "ftp": ftp(s, false, json!({}))}),
        )
        .await;
    assert_eq!(r.status(), 200);
    (app, account, key)
}

/// A period of more than 10,000 events makes several files of at most
/// 10,000 rows (`…_0002.csv` for the second), every event in one of them.
async fn a_period_of_more_than_10000_events_makes_several_files(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    // One request: one received_at, so one period for all of them.
    let (app, account, key) = open_to_plain_ftp(b, &s, &["--max-events-per-request", "20000"]).await;
    let sent = events(10_250, "big", "OPEN");
    app.ingest(&key, &Value::Array(sent.clone())).await;
    let files = s.wait_file_events("/", sent.len(), 120).await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with(&format!("eventd_{account}_OPEN_")), "{names:?}");
    assert_eq!(
        names[1],
        names[0].replace(".csv", "_0002.csv"),
        "the same period's second part"
    );
    let sizes: Vec<usize> = files.iter().map(|(n, body)| file_events(n, body)).collect();
    assert_eq!(sizes, [10_000, 250]);
    let rows = rows_by_external_id(&files);
    assert_eq!(rows.len(), sent.len(), "every event uploaded");
    for ev in &sent {
        let got = &rows[ev["external_id"].as_str().unwrap()];
        assert_eq!(got.len(), 1, "{} in two files", ev["external_id"]);
        same_event(&got[0].0, ev);
    }
}

/// A file's delivery is pruned after `--push-log-retention` like any
/// other, and the rows of the events it carried go with it.
async fn a_sent_files_rows_leave_with_the_push_log(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let (app, _, key) = open_to_plain_ftp(b, &s, &["--push-log-retention", "1500ms"]).await;
    let sent = events(5, "pruned", "OPEN");
    app.ingest(&key, &Value::Array(sent)).await;
    s.wait_file_events("/", 5, 60).await;
    let sql = "SELECT COUNT(*) AS n FROM deliveries";
    eventually("the file and its events' rows pruned", 60, || async {
        (common::sql_count(b, &app.db_url, sql) == 0).then_some(())
    })
    .await;
}

both!(
    period_files_over_ftps_through_an_outage,
    a_sent_files_rows_leave_with_the_push_log,
    wrong_password_suspends_and_resume_works,
    a_period_of_more_than_10000_events_makes_several_files,
);
