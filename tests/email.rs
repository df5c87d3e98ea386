//! Email destinations against a real SMTP server (aiosmtpd, see
//! tests/mail_ftp/): one mail per event over STARTTLS with AUTH, digests
//! with a CSV attachment, the relay down and back, permanent rejections,
//! and the 409 of a server without a relay. Received mails are parsed by
//! Python's email package and compared field by field with the events.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::mail_ftp::{
    self, app_for, attachment_rows, events, in_period, period_start_of, same_event, Relay, Servers,
};
use common::push::get_json as json_of;
use common::{spawn_app_with, until, Backend, TestApp};
use serde_json::{json, Value};

async fn put_email(app: &TestApp, key: &str, email: Value) -> reqwest::Response {
    app.put(
        "/v1/triggers/OPEN",
        key,
        &json!({"destination": "email", "email": email}),
    )
    .await
}

/// Waits until `check` gives Some, or panics after `secs`.
async fn eventually<T, F, Fut>(what: &str, secs: u64, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until(what, Duration::from_secs(secs), check).await
}

/// The text body of a one-event mail as field → value.
fn body_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn one_mail_per_event_over_starttls(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let app = app_for(b, &s, Relay::StartTls, 3, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let r = put_email(
        &app,
        &key,
        json!({"to": ["ops@example.com", "b@example.com"], "subject_prefix": "[acme]"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let sent = events(3, "m", "OPEN");
    // One-line text body: the newline inside data is kept in its JSON text.
    app.ingest(&key, &Value::Array(sent.clone())).await;
    let mails = s.wait_mails(3, 60).await;
    assert_eq!(mails.len(), 3);
    for m in &mails {
        assert_eq!(m["tls"], true);
        assert_eq!(m["auth"], true, "AUTH with the URL's credentials");
        assert_eq!(m["rcpt_tos"], json!(["ops@example.com", "b@example.com"]));
        assert_eq!(m["from"], "eventd <noreply@eventd.test>");
        assert!(m["date"].as_str().unwrap().len() > 10, "a Date header");
        let fields = body_fields(m["text"].as_str().unwrap());
        let ext = &fields["external_id"];
        let ev = sent.iter().find(|e| e["external_id"] == ext.as_str()).unwrap();
        same_event(&fields, ev);
        assert_eq!(
            m["subject"],
            format!("[acme] OPEN {}", ev["recipient"].as_str().unwrap())
        );
        assert_eq!(m["message_id"], format!("<{}@eventd.test>", fields["id"]));
    }
    // The attempt log: one delivery per mail, with the relay's reply.
    let list = eventually("3 delivered", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=delivered").await;
        (l["deliveries"].as_array().unwrap().len() == 3).then_some(l)
    })
    .await;
    let d = &list["deliveries"][0];
    assert_eq!(
        (d["transport"].as_str(), d["event_count"].as_i64()),
        (Some("email"), Some(1))
    );
    assert_eq!(d["attempt_log"][0]["status_code"], 250);
    assert!(d["attempt_log"][0]["url"].as_str().unwrap().contains("ops@example.com"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"eventd_deliveries_total{outcome="success",transport="email"} 3"#),
        "{metrics}"
    );
}

/// Digest mails: every event once, in CSV attachments compared field by
/// field, across periods; the relay killed inside a period and back later
/// loses and repeats nothing.
async fn digests_carry_every_event_once_through_a_relay_outage(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let mut s = Servers::start();
    let app = app_for(b, &s, Relay::Plain, 3, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let r = put_email(&app, &key, json!({"to": ["ops@example.com"], "digest_seconds": 1})).await;
    assert_eq!(r.status(), 200);
    let first = events(30, "a", "OPEN");
    app.ingest(&key, &Value::Array(first.clone())).await;
    s.wait_mails(1, 30).await;
    // The relay dies; events keep coming through the next periods.
    s.stop();
    let second = events(20, "b", "OPEN");
    app.ingest(&key, &Value::Array(second[..10].to_vec())).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the next period
    app.ingest(&key, &Value::Array(second[10..].to_vec())).await;
    // A transient failure is logged (and does not count toward suspension).
    eventually("a failed digest attempt", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=pending").await;
        let failed = l["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("SMTP")));
        failed.then_some(())
    })
    .await;
    let t = json_of(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active");
    assert_eq!(t["push"]["consecutive_failures"], 0);
    s.restart();
    let all: Vec<Value> = first.iter().chain(second.iter()).cloned().collect();
    let mails = eventually("every event in a digest", 60, || async {
        let mails = s.mails();
        let n: usize = mails.iter().map(|m| attachment_rows(m).len()).sum();
        (n >= all.len()).then_some(mails)
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &mails {
        let rows = attachment_rows(m);
        assert!(m["text"].as_str().unwrap().contains(&format!("OPEN: {}", rows.len())));
        let first_id = &rows[0]["id"];
        let last_id = &rows[rows.len() - 1]["id"];
        assert_eq!(m["message_id"], format!("<digest.{first_id}.{last_id}@eventd.test>"));
        // Each event is in the digest of the period it was received in,
        // also those received while the relay was down.
        let name = m["attachments"][0]["filename"].as_str().unwrap();
        let start = period_start_of(name);
        for row in rows {
            let ev = all
                .iter()
                .find(|e| e["external_id"] == row["external_id"].as_str())
                .unwrap();
            same_event(&row, ev);
            in_period(&row, start, 1000, name);
            *seen.entry(row["external_id"].clone()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), all.len());
    assert!(seen.values().all(|n| *n == 1), "an event in two digests: {seen:?}");
    // The log lists one delivery per digest mail with its event count.
    // (The relay may have the mail a moment before eventd records the reply.)
    let l = eventually("every digest recorded as delivered", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=delivered").await;
        let counted: i64 = l["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["event_count"].as_i64().unwrap())
            .sum();
        (counted == all.len() as i64).then_some(l)
    })
    .await;
    assert_eq!(l["deliveries"].as_array().unwrap().len(), mails.len());
}

/// A period of more than 10,000 events goes out as several digests of at
/// most 10,000 CSV rows each (`…_0002.csv` for the second), every event in
/// exactly one of them.
async fn a_digest_of_more_than_10000_events_is_split(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    // One request: one received_at, so one period for all of them.
    let app = app_for(b, &s, Relay::Plain, 3, &["--max-events-per-request", "20000"]).await;
    let (account, key) = app.create_account("acme").await;
    let r = put_email(&app, &key, json!({"to": ["ops@example.com"], "digest_seconds": 1})).await;
    assert_eq!(r.status(), 200);
    let sent = events(10_250, "big", "OPEN");
    app.ingest(&key, &Value::Array(sent.clone())).await;
    let mails = s.wait_mails(2, 120).await;
    let by_id: HashMap<&str, &Value> = sent.iter().map(|e| (e["external_id"].as_str().unwrap(), e)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut sizes = Vec::new();
    let mut names = Vec::new();
    for m in &mails {
        let rows = attachment_rows(m);
        assert!(rows.len() <= 10_000, "{} rows in one digest", rows.len());
        assert!(m["text"].as_str().unwrap().contains(&format!("OPEN: {}", rows.len())));
        sizes.push(rows.len());
        names.push(m["attachments"][0]["filename"].as_str().unwrap().to_string());
        for row in &rows {
            same_event(row, by_id[row["external_id"].as_str()]);
            *seen.entry(row["external_id"].clone()).or_default() += 1;
        }
    }
    sizes.sort();
    assert_eq!(sizes, [250, 10_000]);
    assert_eq!(seen.len(), sent.len(), "every event mailed");
    assert!(seen.values().all(|n| *n == 1), "an event in two digests");
    names.sort();
    let prefix = format!("eventd_{account}_OPEN_");
    assert!(names[0].starts_with(&prefix) && names[0].ends_with(".csv"), "{names:?}");
    assert_eq!(
        names[1],
        names[0].replace(".csv", "_0002.csv"),
        "the same period's second part"
    );
    let l = eventually("both digests recorded as delivered", 60, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=delivered").await;
        (l["deliveries"].as_array().unwrap().len() == 2).then_some(l)
    })
    .await;
    let mut counts: Vec<i64> = l["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_count"].as_i64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, [250, 10_000]);
}

/// 5xx answers count toward suspension (code and text logged); 4xx do not.
async fn rejections_are_logged_and_suspend(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let s = Servers::start();
    let app = app_for(b, &s, Relay::Plain, 3, &[]).await;
    let (_, key) = app.create_account("acme").await;
    assert_eq!(
        put_email(&app, &key, json!({"to": ["reject@example.com"]}))
            .await
            .status(),
        200
    );
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "a@x.test"}))
        .await;
    let t = eventually("suspended after 3 rejections", 30, || async {
        let t = json_of(&app, &key, "/v1/triggers/OPEN").await;
        (t["push"]["state"] == "suspended").then_some(t)
    })
    .await;
    assert!(t["push"]["last_error"].as_str().unwrap().contains("550"), "{t}");
    let l = json_of(&app, &key, "/v1/deliveries").await;
    let log = &l["deliveries"][0]["attempt_log"];
    assert_eq!(log[0]["status_code"], 550);
    assert!(log[0]["error"].as_str().unwrap().contains("no such user"), "{log}");
    // A good address resumes the destination; the waiting event goes out.
    assert_eq!(
        put_email(&app, &key, json!({"to": ["ok@example.com"]})).await.status(),
        200
    );
    // The rows keep their transport but the destination has the new settings.
    let mails = s.wait_mails(1, 30).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["ok@example.com"]));
    // 451: retried, never suspended.
    assert_eq!(
        put_email(&app, &key, json!({"to": ["tempfail@example.com"]}))
            .await
            .status(),
        200
    );
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "b@x.test"}))
        .await;
    eventually("451 tries logged", 30, || async {
        let l = json_of(&app, &key, "/v1/deliveries?status=pending").await;
        let tries = l["deliveries"][0]["attempts"].as_i64().unwrap_or(0);
        (tries >= 4).then_some(())
    })
    .await;
    let t = json_of(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(
        (t["push"]["state"].as_str(), t["push"]["consecutive_failures"].as_i64()),
        (Some("active"), Some(0))
    );
    assert_eq!(
        json_of(&app, &key, "/v1/deliveries?status=pending").await["deliveries"][0]["last_status_code"],
        451
    );
}

/// Without a relay, an email destination is refused with what is missing;
/// bad settings are a 422 that says which field.
async fn configuration_is_checked(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let r = put_email(&app, &key, json!({"to": ["ops@example.com"]})).await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "smtp_not_configured");
    assert!(v["error"]["message"].as_str().unwrap().contains("--smtp-url"));
    let t = json_of(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["destination"], "pull", "nothing changed");
    let smtp = spawn_app_with(b, &["--smtp-url", "smtp://127.0.0.1:9", "--smtp-from", "a@b.test"]).await;
    let (_, key) = smtp.create_account("acme").await;
    for (bad, needle) in [
        (json!({"to": ["nope"]}), "not a valid email address"),
        (json!({"to": ["a@x.test"], "digest_seconds": 30}), "digest_seconds"),
        (json!({"to": []}), "1 to 20"),
    ] {
        let r = put_email(&smtp, &key, bad).await;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let r = put_email(&smtp, &key, json!({"to": ["a@x.test"], "digest_seconds": 3600})).await;
    assert_eq!(r.status(), 200);
    let t = json_of(&smtp, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["email"]["digest_seconds"], 3600);
}

both!(
    one_mail_per_event_over_starttls,
    digests_carry_every_event_once_through_a_relay_outage,
    a_digest_of_more_than_10000_events_is_split,
    rejections_are_logged_and_suspend,
    configuration_is_checked,
);
