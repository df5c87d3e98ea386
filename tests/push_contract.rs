//! HTTP push promises of SPEC §6 not covered by tests/push.rs: timeouts,
//! what counts as success, Retry-After on 429, ordered delivery behind a
//! failing head, the backfill window, the default schedule, the attempt
//! log, the time filter, outcome metrics, secret rotation. On both backends.

mod common;

use std::time::Duration;

use common::push::{
    deliveries, eventually, fast_app, get_json, hit_recipients, opens_of, push_to, verifies, Mode, Receiver,
};
use common::{metric, opens, Backend};
use serde_json::{json, Value};

both!(
    a_request_over_its_timeout_fails,
    any_2xx_succeeds_and_other_answers_fail,
    retry_after_on_429_slows_down_without_a_failure,
    an_ordered_destination_waits_behind_its_failing_head,
    backfill_takes_exactly_the_history_window,
    attempt_log_has_time_latency_and_a_kib_of_the_answer,
    deliveries_filter_by_time,
    rotated_secret_signs_with_old_and_new,
);

fn codes(d: &Value) -> Vec<Value> {
    d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

async fn a_request_over_its_timeout_fails(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("hang", Mode::Hang);
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("hang"), "timeout_seconds": 1})).await;
    app.ingest(&key, &opens(1)).await;
    // The receiver never answers: each try ends at the 1 s timeout.
    let d = eventually("a failed try", || async {
        let d = deliveries(&app, &key, "").await.into_iter().next()?;
        (d["attempts"].as_i64()? >= 1).then_some(d)
    })
    .await;
    let a = &d["attempt_log"][0];
    assert_eq!(a["status_code"], Value::Null, "{a}");
    assert!(a["error"].as_str().unwrap().contains("timed out"), "{a}");
    let latency = a["latency_ms"].as_i64().unwrap();
    assert!((900..30_000).contains(&latency), "{latency}");
    let text = app.metrics().await;
    assert!(
        metric(&text, r#"eventd_deliveries_total{outcome="failure",transport="http"}"#) >= 1.0,
        "{text}"
    );
}

async fn any_2xx_succeeds_and_other_answers_fail(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("created", Mode::Status(201));
    rx.set("empty", Mode::Status(204));
    rx.set("bad", Mode::Status(400));
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("created")})).await;
    push_to(&app, &key, "CLICK", json!({"url": rx.url("empty")})).await;
    push_to(&app, &key, "BOUNCE", json!({"url": rx.url("bad")})).await;
    app.ingest(
        &key,
        &json!([
            {"trigger": "OPEN", "recipient": "a@x.test"},
            {"trigger": "CLICK", "recipient": "b@x.test"},
            {"trigger": "BOUNCE", "recipient": "c@x.test"},
        ]),
    )
    .await;
    let done = eventually("2 delivered, 1 dead", || async {
        let ok = deliveries(&app, &key, "status=delivered").await;
        let dead = deliveries(&app, &key, "status=dead").await;
        (ok.len() == 2 && dead.len() == 1).then_some((ok, dead))
    })
    .await;
    for d in &done.0 {
        assert_eq!(d["attempts"], 1, "{d}");
        assert!(
            [json!(201), json!(204)].contains(&d["attempt_log"][0]["status_code"]),
            "{d}"
        );
    }
    assert_eq!(done.1[0]["trigger"], "BOUNCE");
    assert_eq!(codes(&done.1[0]), vec![json!(400); 4]);
    assert_eq!(done.1[0]["attempt_log"][0]["error"], "HTTP 400");
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, r#"eventd_deliveries_total{outcome="success",transport="http"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"eventd_deliveries_total{outcome="failure",transport="http"}"#),
        4.0,
        "{text}"
    );
}

async fn retry_after_on_429_slows_down_without_a_failure(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("limited", Mode::Limited);
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("limited")})).await;
    app.ingest(&key, &opens(1)).await;
    let t = eventually("paused by Retry-After", || async {
        let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
        t["push"]["paused_until"].is_string().then_some(t)
    })
    .await;
    assert_eq!(t["push"]["consecutive_failures"], 0, "{t}");
    // Inside the pause the state says so (issue 14); it is not a suspension.
    assert_eq!(t["push"]["state"], "paused", "{t}");
    let text = app.metrics().await;
    assert!(
        metric(
            &text,
            r#"eventd_deliveries_total{outcome="retry_after",transport="http"}"#
        ) >= 1.0,
        "{text}"
    );
    rx.set("limited", Mode::Status(200));
    let d = eventually("delivered after the pause", || async {
        deliveries(&app, &key, "status=delivered").await.into_iter().next()
    })
    .await;
    let c = codes(&d);
    assert_eq!((c.first(), c.last()), (Some(&json!(429)), Some(&json!(200))), "{d}");
}

async fn an_ordered_destination_waits_behind_its_failing_head(b: Backend) {
    let rx = Receiver::start().await;
    // Three failures, then success: the head's fourth and last try.
    rx.set("ordered", Mode::FailFirst(3));
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("ordered"), "ordered": true})).await;
    app.ingest(&key, &opens(3)).await;
    let hits = eventually("all delivered", || async {
        let h = rx.hits("ordered");
        (h.len() >= 6).then_some(h)
    })
    .await;
    let order: Vec<String> = hit_recipients(&hits);
    assert_eq!(
        order,
        [
            "r0@x.test",
            "r0@x.test",
            "r0@x.test",
            "r0@x.test",
            "r1@x.test",
            "r2@x.test"
        ]
    );
}

async fn backfill_takes_exactly_the_history_window(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(
        &key,
        &json!([
            {"trigger": "OPEN", "recipient": "outside@x.test"},
            {"trigger": "OPEN", "recipient": "inside@x.test"},
            {"trigger": "OPEN", "recipient": "new@x.test"},
        ]),
    )
    .await;
    // Age two events in the history: one just past 7 days, one just within.
    let now = eventd::domain::time::now_ms();
    let week = 7 * 86_400_000;
    let age =
        |who: &str, ms: i64| format!("UPDATE events SET received_at = {ms} WHERE payload LIKE '%\"{who}@x.test\"%';");
    common::exec_sql(
        b,
        &app.db_url,
        &(age("outside", now - week - 60_000) + &age("inside", now - week + 60_000)),
    );
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("bf"), "ordered": true})).await;
    assert_eq!(v["backfilled"], 2, "{v}");
    let hits = eventually("2 delivered", || async {
        let h = rx.hits("bf");
        (h.len() >= 2).then_some(h)
    })
    .await;
    let got: Vec<String> = hit_recipients(&hits);
    assert_eq!(got, ["inside@x.test", "new@x.test"]);
}

async fn attempt_log_has_time_latency_and_a_kib_of_the_answer(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("long", Mode::LongBody);
    rx.set("slow", Mode::Slow(300));
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("long")})).await;
    push_to(&app, &key, "CLICK", json!({"url": rx.url("slow")})).await;
    // attempted_at has millisecond precision.
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    app.ingest(&key, &opens(1)).await;
    app.ingest(&key, &opens_of(1, "CLICK")).await;
    let list = eventually("2 delivered", || async {
        let l = deliveries(&app, &key, "status=delivered").await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let after = chrono::Utc::now();
    let log = |t: &str| list.iter().find(|d| d["trigger"] == t).unwrap()["attempt_log"][0].clone();
    let long = log("OPEN");
    assert_eq!(long["response"], "0123456789".repeat(300)[..1024], "the first KiB");
    assert_eq!(long["url"], rx.url("long"));
    assert_eq!(long["error"], Value::Null);
    let at = chrono::DateTime::parse_from_rfc3339(long["attempted_at"].as_str().unwrap()).unwrap();
    assert!(before <= at && at <= after, "{at} not in {before}..{after}");
    let slow = log("CLICK");
    let latency = slow["latency_ms"].as_i64().unwrap();
    assert!((300..30_000).contains(&latency), "{slow}");
    assert!(long["latency_ms"].as_i64().unwrap() >= 0);
}

async fn deliveries_filter_by_time(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("t")})).await;
    app.ingest(&key, &opens(1)).await;
    // Milliseconds apart, so the two deliveries fall either side of `mid`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mid = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "late@x.test"}))
        .await;
    let since = deliveries(&app, &key, &format!("since={}", urlencode(&mid))).await;
    let until = deliveries(&app, &key, &format!("until={}", urlencode(&mid))).await;
    assert_eq!((since.len(), until.len()), (1, 1), "{since:?} {until:?}");
    for (d, who) in [(&since[0], "late@x.test"), (&until[0], "r0@x.test")] {
        let full = get_json(&app, &key, &format!("/v1/deliveries/{}", d["id"].as_str().unwrap())).await;
        assert_eq!(full["event"]["recipient"], who, "{full}");
    }
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .get(&format!("/v1/deliveries?since={}", urlencode(&future)), &key)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deliveries"], json!([]));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn rotated_secret_signs_with_old_and_new(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("sig")})).await;
    let old = v["secret"].as_str().unwrap().to_string();
    app.ingest(&key, &opens(1)).await;
    let first = eventually("first request", || async { rx.hits("sig").into_iter().next() }).await;
    assert!(verifies(&old, &first));
    assert_eq!(first.header("webhook-signature").split(' ').count(), 1);

    let r = app.post_empty("/v1/triggers/OPEN/secret", &key).await;
    assert_eq!(r.status(), 200);
    let new = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);
    assert!(!get_json(&app, &key, "/v1/triggers/OPEN")
        .await
        .to_string()
        .contains(&new));
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "second@x.test"}))
        .await;
    let second = eventually("second request", || async { rx.hits("sig").get(1).cloned() }).await;
    // Both secrets verify it while receivers switch over; a third does not.
    assert_eq!(second.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&old, &second) && verifies(&new, &second));
    assert!(!verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &second));
    assert!(!verifies(&new, &first));
}

/// SPEC §6's defaults, read through the code that turns the settings into
/// the worker's schedule (an end-to-end wait would take five hours).
#[test]
fn default_schedule_is_ten_times_30_s_then_ten_times_30_min_and_suspends_after_100() {
    let ws = common::worker_settings(vec![]);
    let c = eventd::push::WorkerConfig::from_settings(&ws.push).unwrap();
    let mut expected = vec![30_000; 10];
    expected.extend(vec![1_800_000; 10]);
    assert_eq!(c.schedule_ms, expected);
    assert_eq!(c.suspend_after, 100);
    let serve = common::serve_settings(vec![]);
    assert_eq!(serve.push.push_retry_schedule, ws.push.push_retry_schedule);
    assert_eq!(serve.push.push_suspend_after, 100);
}
