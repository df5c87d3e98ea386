//! HTTP push over the real server and a real local receiver, on both backends.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::push::{
    deliveries, eventually, fast_app, get_json, hit_recipients, opens_of, push_to, put, signed_content, signed_over,
    until_delivered, until_state, verifies, Hit, Mode, Receiver, FAST,
};
use common::{opens, spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};

both!(
    delivers_signed_json_and_logs_attempts,
    retries_then_succeeds,
    dead_after_the_schedule_then_replayed,
    suspends_after_consecutive_failures_and_resume_delivers_the_backlog,
    gone_suspends_at_once_and_config_change_resumes,
    a_gone_answer_from_the_old_url_does_not_suspend_the_new_one,
    backfill_delivers_history_in_order,
    batches_are_json_arrays_of_selected_fields,
    form_and_get_encodings,
    signature_verifies_with_the_reference_library,
    two_workers_never_send_twice,
    private_targets_are_refused_without_the_flag,
    bad_configs_and_foreign_ids,
    a_hanging_receiver_does_not_slow_the_others,
    a_worker_holds_a_bounded_number_of_claimed_deliveries,
    test_endpoint_reports_the_answer,
    a_stopping_worker_gives_back_what_it_holds,
    a_stopping_worker_finishes_the_request_in_flight_and_starts_no_other,
    a_crashed_workers_claims_expire,
    a_claim_after_a_delivery_leaves_the_earlier_ones_to_a_claim_from_the_head,
    the_heartbeat_keeps_a_send_longer_than_its_lease_leased,
    closed_connections_fail_and_source_ip_is_used,
    redirects_are_not_followed_and_old_logs_are_pruned,
    resume_ends_a_retry_after_pause_at_once,
    a_config_change_resumes_a_suspended_destination,
    fields_come_in_the_requested_order_and_batch_mode_is_always_a_batch,
    a_delivered_deliverys_event_leaves_with_the_history_a_dead_ones_stays,
    a_result_the_database_refuses_is_written_again_and_not_sent_twice,
);

// ---------------------------------------------------------------- tests

/// History retention (`--history-days`) takes a delivered delivery's
/// event: its log entry stays, shows `event: null` and cannot be retried
/// (409). A dead delivery keeps its event, so it can still be replayed.
async fn a_delivered_deliverys_event_leaves_with_the_history_a_dead_ones_stays(b: Backend) {
    let args = ["--history-days", "0", "--maintenance-interval", "200ms"];
    let (rx, app, key) = open_pushed_to(b, &args, "ok", Mode::Status(200), json!({}), 1).await;
    rx.set("down", Mode::Status(500));
    push_to(&app, &key, "CLICK", json!({"url": rx.url("down")})).await;
    app.ingest(&key, &json!({"trigger": "CLICK", "recipient": "c@x.test"}))
        .await;
    let delivered = eventually("delivered", || async {
        deliveries(&app, &key, "status=delivered").await.into_iter().next()
    })
    .await;
    let dead = eventually("dead", || async {
        deliveries(&app, &key, "status=dead").await.into_iter().next()
    })
    .await;
    common::until(
        "the delivered event pruned",
        std::time::Duration::from_secs(30),
        || async { (common::metric(&app.metrics().await, "eventd_history_pruned_total") >= 1.0).then_some(()) },
    )
    .await;
    let path = |d: &Value| format!("/v1/deliveries/{}", d["id"].as_str().unwrap());
    let d = get_json(&app, &key, &path(&delivered)).await;
    assert_eq!((&d["status"], &d["event"]), (&json!("delivered"), &Value::Null), "{d}");
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 1, "{d}");
    let r = app.post_empty(&format!("{}/retry", path(&delivered)), &key).await;
    assert_eq!(r.status(), 409);
    let d = get_json(&app, &key, &path(&dead)).await;
    assert_eq!(d["event"]["recipient"], "c@x.test", "{d}");
    assert_eq!(common::metric(&app.metrics().await, "eventd_history_pruned_total"), 1.0);
    rx.set("down", Mode::Status(200));
    let r = app.post_empty(&format!("{}/retry", path(&dead)), &key).await;
    assert_eq!(r.status(), 202);
    eventually("the dead one replayed", || async {
        (get_json(&app, &key, &path(&dead)).await["status"] == "delivered").then_some(())
    })
    .await;
    let last = rx.hits("down").pop().unwrap();
    assert!(String::from_utf8_lossy(&last.body).contains("c@x.test"));
}

/// Retention and a retry of a delivered delivery never interleave
/// (PostgreSQL, where they can run at once): while a retry's transaction
/// holds the account's history guard (held here by the test, as a retry
/// holds it from its check that the event is there to its commit),
/// retention leaves the event alone, and takes it once the guard is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_a_retry_in_flight() {
    if common::skip_postgres() {
        return;
    }
    let args = ["--history-days", "0", "--maintenance-interval", "200ms"];
    let (_rx, app, key) = open_pushed_to(Backend::Postgres, &args, "ok", Mode::Status(200), json!({}), 0).await;
    let mut retry = hold_history_guard(&app, "pg_advisory_xact_lock");
    app.ingest(&key, &opens(1)).await;
    let delivered = eventually("delivered", || async {
        deliveries(&app, &key, "status=delivered").await.into_iter().next()
    })
    .await;
    let path = format!("/v1/deliveries/{}", delivered["id"].as_str().unwrap());
    // Several maintenance rounds while the guard is held.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let d = get_json(&app, &key, &path).await;
    assert!(d["event"].is_object(), "pruned under a retry in flight: {d}");
    let_go(&mut retry);
    common::until(
        "the event pruned once the guard is let go",
        std::time::Duration::from_secs(30),
        || async { get_json(&app, &key, &path).await["event"].is_null().then_some(()) },
    )
    .await;
}

/// The other side (PostgreSQL): a retry of a delivered delivery waits for
/// a retention delete in flight (the test holds the shared guard, as a
/// delete statement holds it), so it cannot make the delivery pending again
/// with its event deleted under it; once the guard is let go it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_for_retention_in_flight() {
    if common::skip_postgres() {
        return;
    }
    let (rx, app, key) = open_pushed_to(Backend::Postgres, &[], "ok", Mode::Status(200), json!({}), 1).await;
    let delivered = eventually("delivered", || async {
        deliveries(&app, &key, "status=delivered").await.into_iter().next()
    })
    .await;
    let mut delete = hold_history_guard(&app, "pg_advisory_xact_lock_shared");
    let url = app.url(&format!("/v1/deliveries/{}/retry", delivered["id"].as_str().unwrap()));
    let request = tokio::spawn(app.client.post(url).bearer_auth(&key).send());
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert!(
        !request.is_finished(),
        "the retry did not wait for the delete in flight"
    );
    let_go(&mut delete);
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 202);
    eventually("sent again", || async { (rx.hits("ok").len() == 2).then_some(()) }).await;
}

/// A transaction of the test's own holding account "acme"'s history guard
/// (PostgreSQL) with `lock`, `pg_advisory_xact_lock` (as a retry does) or
/// `pg_advisory_xact_lock_shared` (as a retention delete does); the guard's
/// key is `history_guard`'s in src/store/retention.rs.
fn hold_history_guard(app: &TestApp, lock: &str) -> diesel::PgConnection {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let account = common::pg_count(&app.db_url, "SELECT id AS n FROM accounts WHERE name = 'acme'");
    let mut c = diesel::PgConnection::establish(&app.db_url).unwrap();
    c.batch_execute(&format!("BEGIN; SELECT {lock}(3711, {account})"))
        .unwrap();
    c
}

/// Ends the transaction of [`hold_history_guard`], letting the guard go.
fn let_go(c: &mut diesel::PgConnection) {
    diesel::connection::SimpleConnection::batch_execute(c, "COMMIT").unwrap();
}

/// A Retry-After of an hour pauses the destination (`state: paused` with
/// `paused_until`); resume ends the pause and the delivery that got the
/// Retry-After is sent at once, not an hour later.
async fn resume_ends_a_retry_after_pause_at_once(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "busy", Mode::RetryAfterSecs(3600), json!({}), 1).await;
    let t = eventually("paused by Retry-After", || async {
        let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
        t["push"]["paused_until"].is_string().then_some(t)
    })
    .await;
    assert_eq!(t["push"]["state"], "paused", "{t}");
    let until = chrono::DateTime::parse_from_rfc3339(t["push"]["paused_until"].as_str().unwrap()).unwrap();
    let ahead = until.timestamp() - chrono::Utc::now().timestamp();
    assert!((3000..=3601).contains(&ahead), "paused for {ahead} s");
    assert_eq!(t["push"]["consecutive_failures"], 0);

    rx.set("busy", Mode::Status(200));
    let r = app.post_empty("/v1/triggers/OPEN/resume", &key).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["push"]["state"], "active", "{v}");
    assert!(v["push"]["paused_until"].is_null(), "{v}");
    until_delivered(&app, &key, 1, "delivered right after the resume").await;
    assert_eq!(rx.hits("busy").len(), 2);
}

/// SPEC §6: a suspended destination resumes when its configuration changes,
/// whichever the new destination: switching the trigger to pull sends the
/// pending deliveries (to the last http settings) without an explicit resume.
async fn a_config_change_resumes_a_suspended_destination(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "gone", Mode::Status(410), json!({}), 2).await;
    until_state(&app, &key, "OPEN", "suspended", "suspended by 410").await;
    rx.set("gone", Mode::Status(200));
    let r = put(&app, &key, "OPEN", &json!({"destination": "pull"})).await;
    assert_eq!(r.status(), 200);
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active", "{t}");
    until_delivered(&app, &key, 2, "the pending deliveries sent after the change").await;
    // New events go to the pull queue.
    app.ingest(&key, &opens(1)).await;
    assert_eq!(app.queue(&key).await["pending"], 1);
}

/// With `fields`, JSON keys and query parameters come in the order listed;
/// with `batch_size` > 1 every request is a batch, one event included: a JSON
/// array and a `msg_batch_…` webhook-id.
async fn fields_come_in_the_requested_order_and_batch_mode_is_always_a_batch(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let fields = json!(["recipient", "trigger", "id", "occurred_at"]);
    push_to(
        &app,
        &key,
        "OPEN",
        json!({"url": rx.url("batch"), "batch_size": 10, "fields": fields}),
    )
    .await;
    push_to(
        &app,
        &key,
        "CLICK",
        json!({"url": rx.url("get"), "method": "GET", "fields": ["url", "recipient", "trigger"]}),
    )
    .await;
    app.ingest(&key, &opens(1)).await;
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/"}),
    )
    .await;
    let hit = eventually("the batch of one", || async { rx.hits("batch").into_iter().next() }).await;
    let body = String::from_utf8(hit.body.clone()).unwrap();
    let arr = hit.json();
    let event = &arr.as_array().expect("a JSON array")[0];
    let id = event["id"].as_str().unwrap();
    let expected = format!(
        r#"[{{"recipient":"r0@x.test","trigger":"OPEN","id":"{id}","occurred_at":{}}}]"#,
        event["occurred_at"]
    );
    assert_eq!(body, expected);
    assert_eq!(hit.header("webhook-id"), format!("msg_batch_{id}_1"));
    let get = eventually("the GET", || async { rx.hits("get").into_iter().next() }).await;
    let names: Vec<String> = url::form_urlencoded::parse(get.query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(names, ["url", "recipient", "trigger"]);
}

async fn delivers_signed_json_and_logs_attempts(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let v = push_to(
        &app,
        &key,
        "OPEN",
        json!({"url": rx.url("ok"), "headers": {"X-Token": "t0k"}}),
    )
    .await;
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(v["backfilled"], 0);
    assert_eq!(v["http"]["method"], "POST");
    // The secret is shown once.
    let again = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert!(again.get("secret").is_none());
    assert!(!again.to_string().contains(&secret));

    app.ingest(&key, &opens(3)).await;
    let hits = eventually("3 deliveries", || async {
        let h = rx.hits("ok");
        (h.len() >= 3).then_some(h)
    })
    .await;
    let mut recipients = hit_recipients(&hits);
    recipients.sort();
    assert_eq!(recipients, vec!["r0@x.test", "r1@x.test", "r2@x.test"]);
    for h in &hits {
        assert_eq!(h.method, "POST");
        assert_eq!(h.header("content-type"), "application/json");
        assert_eq!(h.header("x-token"), "t0k");
        let event = h.json();
        assert_eq!(event["trigger"], "OPEN");
        assert_eq!(h.header("webhook-id"), format!("msg_{}", event["id"].as_str().unwrap()));
        let ts: i64 = h.header("webhook-timestamp").parse().unwrap();
        assert!((ts - chrono::Utc::now().timestamp()).abs() < 600, "{ts}");
        assert!(verifies(&secret, h), "{h:?}");
        assert!(!verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h));
    }
    // Pushed events are not queued for pull.
    assert_eq!(app.queue(&key).await["pending"], 0);

    let list = eventually("3 delivered in the log", || async {
        let l = deliveries(&app, &key, "status=delivered").await;
        (l.len() == 3).then_some(l)
    })
    .await;
    let d = &list[0];
    assert_eq!(d["trigger"], "OPEN");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["attempt_log"][0]["status_code"], 200);
    assert_eq!(d["attempt_log"][0]["response"], "answer 200");
    assert_eq!(d["attempt_log"][0]["url"], rx.url("ok"));
    let one = get_json(&app, &key, &format!("/v1/deliveries/{}", d["id"].as_str().unwrap())).await;
    assert_eq!(one["event"]["id"], d["event_id"]);
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active");
    assert_eq!(t["push"]["pending"], 0);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"eventd_deliveries_total{outcome="success",transport="http"} 3"#),
        "{metrics}"
    );
}

/// The worker's result for a request it sent cannot be written (the tables
/// gone for a moment, a storage failure): the completer writes it again
/// until the database takes it, so the delivery ends delivered after that
/// one request. (A result given up at once would leave the delivery
/// leased, and sent a second time when the lease ran out.)
async fn a_result_the_database_refuses_is_written_again_and_not_sent_twice(b: Backend) {
    // The answer comes 1.5 s after the request, while the tables are gone.
    let (rx, app, key) = open_pushed_to(b, &["--push-lease", "10s"], "slow", Mode::Slow(1_500), json!({}), 1).await;
    eventually("the receiver has the request", || async {
        (!rx.hits("slow").is_empty()).then_some(())
    })
    .await;
    common::hide_tables(b, &app.db_url);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    common::restore_tables(b, &app.db_url);
    let d = eventually("delivered", || async {
        deliveries(&app, &key, "status=delivered").await.into_iter().next()
    })
    .await;
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(rx.hits("slow").len(), 1, "sent again");
    assert_eq!(deliveries(&app, &key, "").await.len(), 1);
}

async fn retries_then_succeeds(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "flaky", Mode::FailFirst(2), json!({}), 1).await;
    let d = eventually("delivered after retries", || async {
        let l = deliveries(&app, &key, "status=delivered").await;
        l.into_iter().next()
    })
    .await;
    assert_eq!(d["attempts"], 3);
    let codes = status_codes(&d);
    assert_eq!(codes, vec![500, 500, 200]);
    assert_eq!(d["attempt_log"][0]["error"], "HTTP 500");
    assert_eq!(rx.hits("flaky").len(), 3);
    // A success ends the failure streak.
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["consecutive_failures"], 0);
}

async fn dead_after_the_schedule_then_replayed(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "down", Mode::Status(500), json!({}), 2).await;
    let dead = eventually("2 dead", || async {
        let l = deliveries(&app, &key, "status=dead&trigger=OPEN").await;
        (l.len() == 2).then_some(l)
    })
    .await;
    // One try plus the three retries of the schedule.
    assert_eq!(dead[0]["attempts"], 4);
    assert_eq!(rx.hits("down").len(), 8);
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["dead"], 2);
    assert_eq!(t["push"]["last_error"], "HTTP 500");
    let m = app.metrics().await;
    assert!(m.contains("\neventd_push_deliveries_dead 2\n"), "{m}");

    // Replay one, then the rest in bulk, once the receiver is back.
    rx.set("down", Mode::Status(200));
    let id = dead[0]["id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/deliveries/{id}/retry"), &key).await;
    assert_eq!(r.status(), 202);
    eventually("replayed one", || async {
        let d = get_json(&app, &key, &format!("/v1/deliveries/{id}")).await;
        (d["status"] == "delivered").then_some(())
    })
    .await;
    let r = app
        .post("/v1/deliveries/retry", &key, &json!({"trigger": "OPEN"}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["retried"], 1);
    until_delivered(&app, &key, 2, "all delivered").await;
    assert_eq!(rx.hits("down").len(), 10);
    // A replay starts a fresh schedule; `attempts` still counts every request.
    let d = get_json(&app, &key, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(d["attempts"], 5, "{d}");
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 5);
}

async fn suspends_after_consecutive_failures_and_resume_delivers_the_backlog(b: Backend) {
    let (rx, app, key) = open_pushed_to(
        b,
        &["--push-suspend-after", "3", "--push-retry-schedule", "20ms*100"],
        "sick",
        Mode::Status(500),
        json!({}),
        1,
    )
    .await;
    let t = eventually("suspended", || async {
        let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
        (t["push"]["state"] == "suspended").then_some(t)
    })
    .await;
    assert_eq!(t["push"]["consecutive_failures"], 3);
    assert_eq!(t["push"]["last_error"], "HTTP 500");
    assert!(t["push"]["suspended_at"].is_string());
    // While suspended, new events accumulate and nothing is sent. A BOUNCE
    // pushed elsewhere after them marks that the worker has had its turns.
    app.ingest(&key, &opens(5)).await;
    push_to(&app, &key, "BOUNCE", json!({"url": rx.url("marker")})).await;
    app.ingest(&key, &opens_of(1, "BOUNCE")).await;
    eventually("the marker delivered", || async {
        (!rx.hits("marker").is_empty()).then_some(())
    })
    .await;
    assert_eq!(rx.hits("sick").len(), 3);
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["pending"], 6);

    // Switching to pull keeps the accepted events where they were: they are
    // still delivered to the URL; new events go to the pull queue.
    let r = put(&app, &key, "OPEN", &json!({"destination": "pull"})).await;
    assert_eq!(r.status(), 200);
    app.ingest(&key, &opens(2)).await;
    assert_eq!(app.queue(&key).await["pending"], 2);

    rx.set("sick", Mode::Status(200));
    let r = app.post_empty("/v1/triggers/OPEN/resume", &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["push"]["state"], "active");
    eventually("backlog delivered", || async {
        (deliveries(&app, &key, "status=delivered&trigger=OPEN").await.len() == 6).then_some(())
    })
    .await;
    let ids: std::collections::HashSet<String> = rx
        .hits("sick")
        .iter()
        .filter(|h| h.json()["recipient"].is_string())
        .map(|h| h.header("webhook-id").to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    // Resuming a trigger that never pushed is a clear 404.
    let r = app.post_empty("/v1/triggers/CLICK/resume", &key).await;
    assert_eq!(r.status(), 404);
}

async fn gone_suspends_at_once_and_config_change_resumes(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "gone", Mode::Status(410), json!({}), 2).await;
    until_state(&app, &key, "OPEN", "suspended", "suspended by 410").await;
    let m = app.metrics().await;
    assert!(m.contains("\neventd_push_destinations_suspended 1\n"), "{m}");
    let sent = rx.hits("gone").len();
    assert!((1..=2).contains(&sent), "{sent}");
    // A new URL resumes the destination; the kept deliveries go there.
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("new")})).await;
    assert!(v.get("secret").is_none(), "the secret is not shown again");
    eventually("delivered to the new URL", || async {
        let n = rx.hits("new").len();
        assert!(n <= 2, "sent {n} times to the new URL");
        (n == 2).then_some(())
    })
    .await;
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active");
    let m = app.metrics().await;
    assert!(m.contains("\neventd_push_destinations_suspended 0\n"), "{m}");
}

/// A request sent to the old URL (claimed before the PUT that changed it)
/// whose 410 is reported after the PUT neither suspends the destination
/// again nor counts as a try: its delivery goes to the new URL.
async fn a_gone_answer_from_the_old_url_does_not_suspend_the_new_one(b: Backend) {
    use eventd::store::push::OutcomeKind;
    let rx = Receiver::start().await;
    let (app, key, store, dest, claim, _) = two_claimed_on(b, &rx, "gone", 600_000, "wrk_a").await;
    let gone = |row: &eventd::store::push::ClaimedRow| {
        outcome(
            &dest,
            &claim,
            std::slice::from_ref(row),
            rx.url("gone"),
            410,
            OutcomeKind::Gone,
        )
    };
    // The first 410 suspends the destination.
    store
        .complete_deliveries("wrk_a", &[gone(&claim.rows[0])], &[10], 100)
        .unwrap();
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "suspended");
    // The user points the trigger to a new URL; then the second request,
    // sent to the old URL before that, reports its 410.
    push_to(&app, &key, "OPEN", json!({"url": rx.url("new")})).await;
    store
        .complete_deliveries("wrk_a", &[gone(&claim.rows[1])], &[10], 100)
        .unwrap();
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active");
    assert_eq!(t["push"]["consecutive_failures"], 0);
    // Both deliveries go to the new URL, once each.
    let worker = start_worker(&app, &[]);
    until_delivered(&app, &key, 2, "both delivered to the new URL").await;
    worker.stop().await;
    assert_eq!(rx.hits("new").len(), 2);
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["push"]["state"], "active");
    // Every request is an attempt, the 410 from the old URL included (it
    // did not step the retry schedule): attempts match the log.
    let list = deliveries(&app, &key, "status=delivered").await;
    let counts: Vec<(i64, usize)> = list
        .iter()
        .map(|d| {
            (
                d["attempts"].as_i64().unwrap(),
                d["attempt_log"].as_array().unwrap().len(),
            )
        })
        .collect();
    let mut attempts: Vec<i64> = counts.iter().map(|c| c.0).collect();
    attempts.sort();
    assert_eq!(attempts, [2, 2], "{list:?}");
    assert!(counts.iter().all(|(a, l)| *a as usize == *l), "{list:?}");
}

async fn backfill_delivers_history_in_order(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(5)).await;
    app.ingest(&key, &json!({"trigger": "CLICK", "recipient": "c@x.test"}))
        .await;
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("bf"), "ordered": true})).await;
    assert_eq!(v["backfilled"], 5);
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "late@x.test"}))
        .await;
    let hits = eventually("6 delivered", || async {
        let h = rx.hits("bf");
        (h.len() >= 6).then_some(h)
    })
    .await;
    let order: Vec<String> = hit_recipients(&hits);
    assert_eq!(
        order,
        vec![
            "r0@x.test",
            "r1@x.test",
            "r2@x.test",
            "r3@x.test",
            "r4@x.test",
            "late@x.test"
        ]
    );
    // Events already queued for pull stay there.
    assert_eq!(app.queue(&key).await["pending"], 6);
    // Setting the URL again does not backfill again: no delivery is added,
    // and the next event is the only one the new URL gets.
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("bf2")})).await;
    assert!(v.get("backfilled").is_none());
    assert_eq!(deliveries(&app, &key, "trigger=OPEN").await.len(), 6);
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "next@x.test"}))
        .await;
    let first = eventually("the next event at the new URL", || async {
        rx.hits("bf2").into_iter().next()
    })
    .await;
    assert_eq!(first.json()["recipient"], "next@x.test");
    until_delivered(&app, &key, 7, "7 delivered").await;
    assert_eq!(rx.hits("bf2").len(), 1);
}

async fn batches_are_json_arrays_of_selected_fields(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(
        &app,
        &key,
        "OPEN",
        json!({"url": rx.url("batch"), "batch_size": 10, "fields": ["recipient", "id"]}),
    )
    .await;
    app.ingest(&key, &opens(25)).await;
    let hits = eventually("25 events in batches", || async {
        let h = rx.hits("batch");
        let n: usize = h.iter().map(|h| h.json().as_array().unwrap().len()).sum();
        (n >= 25).then_some(h)
    })
    .await;
    let mut seen = Vec::new();
    for h in &hits {
        let arr = h.json();
        let arr = arr.as_array().unwrap();
        assert!(!arr.is_empty() && arr.len() <= 10);
        for e in arr {
            let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 2, "{e}");
            seen.push(e["recipient"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
    assert!(hits.len() < 25, "events were batched");
}

async fn form_and_get_encodings(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let form_secret = push_to(&app, &key, "OPEN", json!({"url": rx.url("form"), "format": "form"})).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let get_secret = push_to(
        &app,
        &key,
        "CLICK",
        json!({"url": format!("{}?token=s3cret", rx.url("get")), "method": "GET", "fields": ["trigger", "recipient", "url"]}),
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    app.ingest(
        &key,
        &json!([
            {"trigger": "OPEN", "recipient": "a+b@x.test", "data": {"k": "v"}},
            {"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/?a=1&b=2"}
        ]),
    )
    .await;
    let form = eventually("form", || async { rx.hits("form").into_iter().next() }).await;
    assert_eq!(form.method, "POST");
    assert_eq!(form.header("content-type"), "application/x-www-form-urlencoded");
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form.body).into_owned().collect();
    assert_eq!(fields["recipient"], "a+b@x.test");
    assert_eq!(fields["trigger"], "OPEN");
    assert_eq!(fields["data"], r#"{"k":"v"}"#);
    assert!(fields.contains_key("id") && fields.contains_key("received_at"));
    // A form is signed over its body, as sent.
    assert!(verifies(&form_secret, &form), "{form:?}");

    let get = eventually("get", || async { rx.hits("get").into_iter().next() }).await;
    assert_eq!(get.method, "GET");
    assert!(get.body.is_empty());
    let q: Vec<(String, String)> = url::form_urlencoded::parse(get.query.as_bytes()).into_owned().collect();
    assert_eq!(
        q,
        vec![
            ("token".to_string(), "s3cret".to_string()),
            ("trigger".to_string(), "CLICK".to_string()),
            ("recipient".to_string(), "c@x.test".to_string()),
            ("url".to_string(), "https://x.test/?a=1&b=2".to_string()),
        ]
    );
    // A GET is signed over its query string as sent (the configured part
    // included), not over its empty body.
    assert!(signed_over(&get_secret, &get, get.query.as_bytes()), "{get:?}");
    assert!(!signed_over(&get_secret, &get, b""), "signed over the empty body");
}

/// Verifies a captured request with the Standard Webhooks reference library
/// (Python `standardwebhooks`, installed in .venv by .ci/run).
async fn signature_verifies_with_the_reference_library(b: Backend) {
    let python = std::env::var_os("EVENTD_INTEROP_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let has_lib = python.exists()
        && common::clean_command(&python)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_lib {
        assert!(
            !common::in_ci(),
            "CI must provide .venv with standardwebhooks (see .ci/run)"
        );
        eprintln!(
            "skipped: no .venv with standardwebhooks (python3 -m venv .venv && .venv/bin/pip install standardwebhooks)"
        );
        return;
    }
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let v = push_to(&app, &key, "OPEN", json!({"url": rx.url("sig")})).await;
    let mut secret = v["secret"].as_str().unwrap().to_string();
    let get = push_to(
        &app,
        &key,
        "CLICK",
        json!({"url": format!("{}?t=1", rx.url("sigget")), "method": "GET", "fields": ["recipient", "url", "trigger"]}),
    )
    .await;
    let get_secret = get["secret"].as_str().unwrap().to_string();
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "ü@x.test", "url": "https://x.test/?a=1&b=ü"}),
    )
    .await;
    app.ingest(
        &key,
        &json!({"trigger": "OPEN", "recipient": "ü@x.test", "data": {"note": "naïve \"quoted\""}}),
    )
    .await;
    let first = eventually("signed request", || async { rx.hits("sig").into_iter().next() }).await;

    // After a rotation, requests carry signatures with both secrets for a day.
    let r = app.post_empty("/v1/triggers/OPEN/secret", &key).await;
    assert_eq!(r.status(), 200);
    let rotated = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    assert_ne!(rotated, secret);
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "second@x.test"}))
        .await;
    let second = eventually("second request", || async { rx.hits("sig").get(1).cloned() }).await;

    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_webhook.py");
    let verify = |hit: &Hit, secret: &str| {
        let body = dir.path().join("body");
        std::fs::write(&body, signed_content(hit)).unwrap();
        common::clean_command(&python)
            .arg(&script)
            .args([
                secret,
                hit.header("webhook-id"),
                hit.header("webhook-timestamp"),
                hit.header("webhook-signature"),
            ])
            .arg(&body)
            .output()
            .unwrap()
    };
    let out = verify(&first, &secret);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(second.header("webhook-signature").split(' ').count(), 2);
    let out = verify(&second, &secret);
    assert!(
        out.status.success(),
        "old secret: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !verify(&second, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .status
            .success(),
        "a wrong secret verified"
    );
    secret = rotated;
    let out = verify(&second, &secret);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A GET verifies with its query string as the payload.
    let get = eventually("signed GET", || async { rx.hits("sigget").into_iter().next() }).await;
    assert!(get.query.starts_with("t=1&recipient="), "{}", get.query);
    let out = verify(&get, &get_secret);
    assert!(out.status.success(), "GET: {}", String::from_utf8_lossy(&out.stderr));
}

async fn two_workers_never_send_twice(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    // A second server (API + worker) on the same database.
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        app.db_url.clone(),
        "--admin-token".into(),
        common::ADMIN.into(),
        "--http-workers".into(),
        "1".into(),
        "--db-pool-size".into(),
        "4".into(),
    ];
    args.extend(FAST.iter().map(|s| s.to_string()));
    let second = eventd::startup::Application::build(common::serve_settings(args))
        .await
        .unwrap();
    tokio::spawn(second.run_until_stopped());

    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("count")})).await;
    for _ in 0..4 {
        app.ingest(&key, &opens(100)).await;
    }
    eventually("400 delivered", || async {
        let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
        (t["push"]["pending"] == 0).then_some(())
    })
    .await;
    let hits = rx.hits("count");
    let ids: std::collections::HashSet<&str> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), 400);
    assert_eq!(hits.len(), 400, "some deliveries were sent twice");
}

async fn private_targets_are_refused_without_the_flag(b: Backend) {
    let rx = Receiver::start().await;
    let app = spawn_app_with(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    for url in [
        rx.url("x"),
        "http://localhost:9/x".to_string(),
        "http://10.0.0.1/x".into(),
        "http://[::1]:8/x".into(),
        "http://169.254.169.254/latest".into(),
    ] {
        let r = put(
            &app,
            &key,
            "OPEN",
            &json!({"destination": "http", "http": {"url": url}}),
        )
        .await;
        assert_eq!(r.status(), 422, "{url}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "private_target", "{url}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-private-targets"));
    }
    // Nothing changed.
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["destination"], "pull");
    assert!(t.get("push").is_none());
}

async fn bad_configs_and_foreign_ids(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let (_, other) = app.create_account("globex").await;
    for (http, needle) in [
        (json!({"url": "ftp://x.test/"}), "http or https"),
        (json!({"url": "::"}), "not a valid URL"),
        (
            json!({"url": rx.url("x"), "fields": ["recipient", "shoe_size"]}),
            "shoe_size",
        ),
        (json!({"url": rx.url("x"), "batch_size": 5000}), "batch_size"),
        (json!({"url": rx.url("x"), "timeout_seconds": "10"}), "timeout_seconds"),
        (json!({"url": rx.url("x"), "method": "DELETE"}), "POST or GET"),
        (json!({"url": rx.url("x"), "secret": "mine"}), "http.secret"),
        (json!("http://x.test"), "JSON object"),
    ] {
        let r = put(&app, &key, "OPEN", &json!({"destination": "http", "http": http})).await;
        assert_eq!(r.status(), 422, "{http}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_config");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
    assert_eq!(t["destination"], "pull");

    push_to(&app, &key, "OPEN", json!({"url": rx.url("iso")})).await;
    app.ingest(&key, &opens(1)).await;
    let d = eventually("delivered", || async {
        deliveries(&app, &key, "").await.into_iter().next()
    })
    .await;
    let id = d["id"].as_str().unwrap();
    // Another account sees nothing of it.
    assert!(deliveries(&app, &other, "").await.is_empty());
    for path in [
        format!("/v1/deliveries/{id}"),
        "/v1/deliveries/99999999".into(),
        "/v1/deliveries/abc".into(),
    ] {
        let r = app.get(&path, &other).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "delivery_not_found");
    }
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v["error"]["code"].as_str().unwrap_or_default().to_string())
    };
    let r = app.post_empty(&format!("/v1/deliveries/{id}/retry"), &other).await;
    assert_eq!(code(r).await, (404, "delivery_not_found".into()));
    for (q, status, expected) in [
        ("status=lost", 400, "bad_query"),
        ("limit=0", 400, "bad_query"),
        ("since=yesterday", 400, "bad_query"),
        ("until=2026-13-01T00:00:00Z", 400, "bad_query"),
        ("cursor=zz", 400, "bad_cursor"),
        ("trigger=NOPE", 422, "unknown_trigger"),
        ("colour=red", 400, "bad_query"),
    ] {
        let r = app.get(&format!("/v1/deliveries?{q}"), &key).await;
        assert_eq!(code(r).await, (status, expected.to_string()), "{q}");
    }
    let r = app
        .post("/v1/deliveries/retry", &key, &json!({"trigger": "NOPE"}))
        .await;
    assert_eq!(code(r).await, (422, "unknown_trigger".into()));
    let r = app.post_empty("/v1/triggers/OPEN/secret", &other).await;
    assert_eq!(code(r).await, (404, "no_push_destination".into()));
    // Cursor pagination.
    app.ingest(&key, &opens(4)).await;
    until_delivered(&app, &key, 5, "5 delivered").await;
    let page = get_json(&app, &key, "/v1/deliveries?limit=3").await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get_json(&app, &key, &format!("/v1/deliveries?limit=3&cursor={cursor}")).await;
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next_cursor"], Value::Null);
}

async fn a_hanging_receiver_does_not_slow_the_others(b: Backend) {
    let args = ["--push-destination-concurrency", "2", "--push-concurrency", "8"];
    let hang = json!({"timeout_seconds": 60});
    let (rx, app, key) = open_pushed_to(b, &args, "hang", Mode::Hang, hang, 0).await;
    push_to(&app, &key, "CLICK", json!({"url": rx.url("fast")})).await;
    app.ingest(&key, &opens(50)).await;
    eventually("hanging requests in flight", || async {
        (rx.hits("hang").len() >= 2).then_some(())
    })
    .await;
    app.ingest(&key, &opens_of(20, "CLICK")).await;
    // Were the fast destination stuck behind the hanging one, this would
    // wait for its 60 s timeout and time out itself.
    eventually("the fast destination is served", || async {
        (rx.hits("fast").len() == 20).then_some(())
    })
    .await;
    // The hanging destination holds at most its own share.
    assert_eq!(rx.hits("hang").len(), 2);
}

/// What a worker holds claimed is bounded over all its destinations: with
/// `batch_size` 1,000 and a receiver that does not answer, it claims what
/// keeps its 32 requests busy and a claim more, not 16 requests' worth per
/// unit of concurrency (here, all 50,000 pending).
async fn a_worker_holds_a_bounded_number_of_claimed_deliveries(b: Backend) {
    let hang = json!({"batch_size": 1000, "timeout_seconds": 60});
    let args = ["--push-stop-grace", "100ms"];
    let (rx, app, key) = open_pushed_to(b, &args, "hang", Mode::Hang, hang, 0).await;
    for _ in 0..5 {
        app.ingest(&key, &opens(10_000)).await;
    }
    eventually("32 requests in flight", || async {
        (rx.hits("hang").len() >= 32).then_some(())
    })
    .await;
    // Time for the dispatcher to claim whatever it would.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let held = common::sql_count(
        b,
        &app.db_url,
        "SELECT COUNT(*) AS n FROM deliveries WHERE claimed_by IS NOT NULL",
    );
    assert!((32_000..=34_768).contains(&held), "{held} deliveries held");
    assert_eq!(rx.hits("hang").len(), 32);
}

async fn test_endpoint_reports_the_answer(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("busy", Mode::RetryAfter);
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    let r = app.post_empty("/v1/triggers/OPEN/test", &key).await;
    assert_eq!(r.status(), 409, "a pull trigger has nothing to test");
    push_to(&app, &key, "OPEN", json!({"url": rx.url("probe")})).await;
    let r = app.post_empty("/v1/triggers/OPEN/test", &key).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["response"], "answer 200");
    let hit = rx.hits("probe").into_iter().next().unwrap();
    assert_eq!(hit.json()["recipient"], "test@example.com");
    assert!(hit.header("webhook-signature").starts_with("v1,"));

    // A 503 with Retry-After slows the destination down without counting a failure.
    push_to(&app, &key, "OPEN", json!({"url": rx.url("busy")})).await;
    app.ingest(&key, &opens(1)).await;
    let t = eventually("paused by Retry-After", || async {
        let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
        t["push"]["paused_until"].is_string().then_some(t)
    })
    .await;
    assert_eq!(t["push"]["consecutive_failures"], 0);
    assert_eq!(t["push"]["state"], "paused");
    rx.set("busy", Mode::Status(200));
    until_delivered(&app, &key, 1, "delivered after the pause").await;
    let d = &deliveries(&app, &key, "").await[0];
    let codes = status_codes(d);
    assert_eq!(codes[0], 503);
    assert_eq!(*codes.last().unwrap(), 200);
    // `attempts` counts every request, the Retry-After one included, as the log does.
    assert_eq!(d["attempts"].as_u64(), Some(codes.len() as u64), "{d}");
}

/// Starts a push worker alone (as `eventd worker` would) on an app's database.
fn start_worker(app: &TestApp, extra: &[&str]) -> eventd::push::PushWorker {
    let mut all: Vec<String> = vec!["worker".into(), "--database-url".into(), app.db_url.clone()];
    all.extend(
        ["--allow-private-targets", "--push-poll-interval", "20ms"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    let ws = common::worker_settings(all[1..].to_vec());
    let store = eventd::store::Store::connect(&ws.db.database_url, 8).unwrap();
    eventd::push::PushWorker::spawn(
        store,
        eventd::startup::transports_of(&ws.push, &eventd::startup::webhooks_of(&ws.push).unwrap()).unwrap(),
        eventd::push::WorkerConfig::from_settings(&ws.push).unwrap(),
    )
    .unwrap()
}

async fn a_stopping_worker_gives_back_what_it_holds(b: Backend) {
    let hang = json!({"timeout_seconds": 60});
    let (rx, app, key) = open_pushed_to(b, &["--no-worker"], "slow", Mode::Hang, hang, 3).await;
    let worker = start_worker(&app, &["--push-stop-grace", "100ms"]);
    eventually("requests in flight", || async {
        (rx.hits("slow").len() == 3).then_some(())
    })
    .await;
    worker.stop().await;
    // Its leases (minutes long) were given back: another worker sends at once.
    rx.set("slow", Mode::Status(200));
    let worker = start_worker(&app, &[]);
    until_delivered(&app, &key, 3, "delivered by the next worker").await;
    worker.stop().await;
    // The abandoned tries were not counted as failures.
    let d = &deliveries(&app, &key, "").await[0];
    assert_eq!(d["attempts"], 1);
}

/// A stopping worker (SIGTERM) lets the request in flight finish and
/// records it, and starts no other: with one request at a time to the
/// destination, the two deliveries claimed behind it go back unsent. (The
/// receiver answers after 3 s, so the stop comes while the first request
/// is in flight.)
async fn a_stopping_worker_finishes_the_request_in_flight_and_starts_no_other(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &["--no-worker"], "slow", Mode::Slow(3000), json!({}), 3).await;
    let args = ["--push-destination-concurrency", "1", "--push-stop-grace", "30s"];
    let worker = start_worker(&app, &args);
    eventually("the first request in flight", || async {
        (!rx.hits("slow").is_empty()).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(rx.hits("slow").len(), 1, "a stopping worker started another request");
    assert_eq!(deliveries(&app, &key, "status=delivered").await.len(), 1);
    assert_eq!(deliveries(&app, &key, "status=pending").await.len(), 2);
}

async fn a_crashed_workers_claims_expire(b: Backend) {
    use eventd::store::push::OutcomeKind;
    let rx = Receiver::start().await;
    // A worker claims both, then dies without a word.
    let (app, key, store, dest, claim, lease_until) = two_claimed_on(b, &rx, "after", 2000, "wrk_crashed").await;
    // Claimed rows are not claimable again while the lease runs (checked
    // only if the claim below ended before the lease did: a loaded machine
    // may take longer than the lease to get here).
    let again = store.claim_deliveries(&dest, 0, 10, lease_until, "wrk_other").unwrap();
    if eventd::domain::time::now_ms() < lease_until {
        assert!(again.unwrap().rows.is_empty());
    }
    let worker = start_worker(&app, &[]);
    until_delivered(&app, &key, 2, "delivered after the lease expired").await;
    worker.stop().await;
    assert_eq!(rx.hits("after").len(), 2);
    // A late report from the crashed worker changes nothing.
    let late = outcome(
        &dest,
        &claim,
        &claim.rows,
        "http://late.test/".into(),
        500,
        OutcomeKind::Failure,
    );
    store.complete_deliveries("wrk_crashed", &[late], &[10], 100).unwrap();
    let list = deliveries(&app, &key, "").await;
    assert!(
        list.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1),
        "{list:?}"
    );
}

/// A worker's claims go on after the last delivery it claimed: such a
/// claim takes only the later deliveries, and the earlier ones (a retry, a
/// lost lease, a late commit) are left to its next claim from the head.
async fn a_claim_after_a_delivery_leaves_the_earlier_ones_to_a_claim_from_the_head(b: Backend) {
    use eventd::domain::time::now_ms;
    let rx = Receiver::start().await;
    let (_app, _key, store, dest) = pending_on(b, &rx, "x", 4).await;
    let ids = |c: Option<eventd::store::push::Claim>| -> Vec<i64> { c.unwrap().rows.iter().map(|r| r.id).collect() };
    // A lease already over: the four stay claimable.
    let all = ids(store.claim_deliveries(&dest, 0, 10, now_ms() - 1, "wrk_a").unwrap());
    assert_eq!(all.len(), 4);
    let later = store
        .claim_deliveries(&dest, all[1], 10, now_ms() + 60_000, "wrk_a")
        .unwrap();
    assert_eq!(ids(later), all[2..].to_vec());
    let head = store
        .claim_deliveries(&dest, 0, 10, now_ms() + 60_000, "wrk_b")
        .unwrap();
    assert_eq!(ids(head), all[..2].to_vec());
}

/// A request that takes longer than the lease stays leased while the
/// worker's heartbeat renews it (every third of a lease): it is not
/// abandoned, and no other worker can claim its rows meanwhile.
async fn the_heartbeat_keeps_a_send_longer_than_its_lease_leased(b: Backend) {
    use eventd::push::lease::Leases;
    use std::time::Duration;
    let rx = Receiver::start().await;
    let (_app, _key, store, dest, claim, lease_until) = two_claimed_on(b, &rx, "slow", 2000, "wrk_beat").await;
    let leases = Arc::new(Leases::new(Duration::from_millis(2000)));
    let ids: Vec<i64> = claim.rows.iter().map(|r| r.id).collect();
    leases.hold(dest.account_id, ids.clone(), lease_until);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let beat = tokio::spawn({
        let (leases, store) = (leases.clone(), store.clone());
        async move { leases.heartbeat(store, "wrk_beat".into(), stopped).await }
    });
    // A send of two leases; halfway through, past the claim's lease, another
    // worker tries to claim the rows.
    let other = store.clone();
    let send = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(eventd::domain::time::now_ms() > lease_until);
        let again = other
            .claim_deliveries(&dest, 0, 10, lease_until + 60_000, "wrk_other")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        again.map(|c| c.rows.len())
    };
    let sent = leases.guard(dest.account_id, &ids, send).await;
    assert_eq!(
        sent,
        Some(Some(0)),
        "sent to the end, and nothing claimed by another worker"
    );
    stop.send(true).unwrap();
    beat.await.unwrap();
}

/// A listener that accepts connections and closes them at once, and the
/// number of connections it saw.
async fn closing_listener() -> (u16, Arc<Mutex<u32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(0u32));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            drop(sock);
        }
    });
    (port, seen)
}

async fn closed_connections_fail_and_source_ip_is_used(b: Backend) {
    let (port, seen) = closing_listener().await;
    let app = fast_app(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": format!("http://127.0.0.1:{port}/x")})).await;
    app.ingest(&key, &opens(1)).await;
    let d = eventually("dead after closed connections", || async {
        deliveries(&app, &key, "status=dead").await.into_iter().next()
    })
    .await;
    assert_eq!(d["attempts"], 4);
    let first = &d["attempt_log"][0];
    assert_eq!(first["status_code"], Value::Null);
    assert!(
        first["error"].as_str().unwrap().contains("request failed")
            || first["error"].as_str().unwrap().contains("connection"),
        "{first}"
    );
    assert!(*seen.lock().unwrap() >= 4);

    // --push-source-ip binds outgoing connections: an address this host
    // does not have makes every request fail before it leaves.
    let (rx, app, key) = open_pushed_to(
        b,
        &["--push-source-ip", "192.0.2.1"],
        "src",
        Mode::Status(200),
        json!({}),
        0,
    )
    .await;
    let r = app.post_empty("/v1/triggers/OPEN/test", &key).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false, "{v}");
    assert!(rx.hits("src").is_empty());
}

async fn redirects_are_not_followed_and_old_logs_are_pruned(b: Backend) {
    let (rx, app, key) = open_pushed_to(b, &[], "moved", Mode::Redirect, json!({}), 1).await;
    rx.set("pruned", Mode::Redirect);
    let d = eventually("dead after redirects", || async {
        deliveries(&app, &key, "status=dead").await.into_iter().next()
    })
    .await;
    assert_eq!(d["attempt_log"][0]["status_code"], 302);
    assert_eq!(rx.hits("moved").len(), 4);
    assert!(rx.hits("elsewhere").is_empty());

    // Finished deliveries go after the retention period; pending ones stay.
    // (A server of its own: with so short a retention the dead delivery may
    // be pruned before a slow poll sees it, so only its absence is awaited.)
    let app = fast_app(b, &["--push-log-retention", "1500ms"]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("pruned")})).await;
    app.ingest(&key, &opens(1)).await;
    // Until the fourth try's outcome is recorded (nothing pending: the
    // delivery is dead, or already pruned), not only received: a PUT while
    // it is in flight changes the configuration it was sent with, so its
    // failure would not count and the delivery would be sent again, to the
    // hanging URL (and the receiver reads its mode after recording a hit).
    eventually("4 redirected tries, the last recorded", || async {
        (rx.hits("pruned").len() == 4 && deliveries(&app, &key, "status=pending").await.is_empty()).then_some(())
    })
    .await;
    rx.set("pruned", Mode::Hang);
    push_to(
        &app,
        &key,
        "OPEN",
        json!({"url": rx.url("pruned"), "timeout_seconds": 60}),
    )
    .await;
    app.ingest(&key, &opens(1)).await;
    // Deliveries are only ever deleted by pruning, which leaves pending ones.
    let left = eventually("the dead delivery pruned", || async {
        let all = deliveries(&app, &key, "").await;
        (all.len() == 1).then_some(all)
    })
    .await;
    assert_eq!(left[0]["status"], "pending");
    assert_eq!(deliveries(&app, &key, "status=pending").await.len(), 1);
    // The dead delivery's four attempts went too (the pending one's first
    // request hangs, so it has none yet).
    eventually("the attempts pruned", || async {
        (common::sql_count(b, &app.db_url, "SELECT COUNT(*) AS n FROM delivery_attempts") == 0).then_some(())
    })
    .await;
}

/// Throughput to a receiver that answers 200 at once. Run with
/// `cargo test --release --test push -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    for b in [Backend::Sqlite, Backend::Postgres] {
        let rx = Receiver::start().await;
        let app = fast_app(b, &["--no-worker"]).await;
        let (_, key) = app.create_account("bench").await;
        push_to(&app, &key, "OPEN", json!({"url": rx.url("bench")})).await;
        let n = 20_000;
        for _ in 0..n / 1000 {
            app.ingest(&key, &opens(1000)).await;
        }
        // Start a worker on the filled queue and time the drain.
        let mut args: Vec<String> = vec!["--database-url".into(), app.db_url.clone()];
        args.extend(
            ["--allow-private-targets", "--push-poll-interval", "20ms"]
                .iter()
                .map(|s| s.to_string()),
        );
        let ws = common::worker_settings(args);
        let store = eventd::store::Store::connect(&ws.db.database_url, 8).unwrap();
        let started = Instant::now();
        let worker = eventd::push::PushWorker::spawn(
            store,
            eventd::startup::transports_of(&ws.push, &eventd::startup::webhooks_of(&ws.push).unwrap()).unwrap(),
            eventd::push::WorkerConfig::from_settings(&ws.push).unwrap(),
        )
        .unwrap();
        eventually("drained", || async {
            let t = get_json(&app, &key, "/v1/triggers/OPEN").await;
            (t["push"]["pending"] == 0).then_some(())
        })
        .await;
        let secs = started.elapsed().as_secs_f64();
        worker.stop().await;
        assert_eq!(rx.hits("bench").len(), n);
        println!(
            "{b:?}: {n} deliveries in {secs:.2} s = {:.0} deliveries/s",
            n as f64 / secs
        );
    }
}

/// The status codes of a delivery's attempt log, oldest first.
fn status_codes(d: &Value) -> Vec<i64> {
    d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect()
}

/// The setup most tests share: a receiver answering `mode` at `path`, a
/// server started with `FAST` and `args`, an account "acme" whose OPEN
/// events are pushed to `path` (with the settings of `http` besides the
/// URL), and `events` OPEN events ingested.
async fn open_pushed_to(
    b: Backend,
    args: &[&str],
    path: &str,
    mode: Mode,
    mut http: Value,
    events: usize,
) -> (Receiver, TestApp, String) {
    let rx = Receiver::start().await;
    rx.set(path, mode);
    let app = fast_app(b, args).await;
    let (_, key) = app.create_account("acme").await;
    http["url"] = rx.url(path).into();
    push_to(&app, &key, "OPEN", http).await;
    if events > 0 {
        app.ingest(&key, &opens(events)).await;
    }
    (rx, app, key)
}

/// Sets up push of OPEN to `path` on a server without worker, ingests two
/// events and claims both straight through the store as `worker` with a
/// lease of `lease_ms`: what a worker does before sending.
async fn two_claimed_on(
    b: Backend,
    rx: &Receiver,
    path: &str,
    lease_ms: i64,
    worker: &str,
) -> (
    TestApp,
    String,
    eventd::store::Store,
    eventd::store::push::DestinationKey,
    eventd::store::push::Claim,
    i64,
) {
    let (app, key, store, dest) = pending_on(b, rx, path, 2).await;
    let lease_until = eventd::domain::time::now_ms() + lease_ms;
    let claim = store
        .claim_deliveries(&dest, 0, 10, lease_until, worker)
        .unwrap()
        .unwrap();
    assert_eq!(claim.rows.len(), 2);
    (app, key, store, dest, claim, lease_until)
}

/// A server without worker pushing OPEN to `path`, with `events` pending
/// deliveries, and a store on its database to claim them directly.
async fn pending_on(
    b: Backend,
    rx: &Receiver,
    path: &str,
    events: usize,
) -> (
    TestApp,
    String,
    eventd::store::Store,
    eventd::store::push::DestinationKey,
) {
    let app = fast_app(b, &["--no-worker"]).await;
    let (account, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url(path)})).await;
    app.ingest(&key, &opens(events)).await;
    let store = eventd::store::Store::connect(&app.db_url, 2).unwrap();
    let dest = eventd::store::push::DestinationKey {
        account_id: account,
        trigger: "OPEN".into(),
        transport: "http".into(),
    };
    (app, key, store, dest)
}

/// A worker's report on some deliveries of a claim.
fn outcome(
    dest: &eventd::store::push::DestinationKey,
    claim: &eventd::store::push::Claim,
    rows: &[eventd::store::push::ClaimedRow],
    url: String,
    status: i64,
    kind: eventd::store::push::OutcomeKind,
) -> eventd::store::push::AttemptOutcome {
    eventd::store::push::AttemptOutcome {
        dest: dest.clone(),
        deliveries: rows.iter().map(|r| (r.id, r.failures)).collect(),
        url,
        attempted_at: eventd::domain::time::now_ms(),
        latency_ms: 1,
        status_code: Some(status),
        error: Some(format!("HTTP {status}")),
        response: None,
        kind,
        config_version: claim.config_version,
    }
}
