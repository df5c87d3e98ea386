//! Ingest and client pull over the JSON API, on both backends.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{opens, recipients, spawn_app, Backend, TestApp, ADMIN};
use serde_json::{json, Value};

both!(
    ingest_fetch_mark_read_empties_the_queue,
    a_large_batch_holds_every_event_once_in_ingest_order,
    invalid_event_rejects_the_whole_batch,
    duplicate_external_id_is_stored_once,
    same_consumer_refetch_returns_the_same_batch,
    two_consumers_get_disjoint_batches,
    expired_lease_redelivers,
    release_returns_events_at_once,
    long_poll_wakes_on_ingest,
    long_poll_answers_an_ingest_through_another_server,
    long_polls_beyond_max_waiters_answer_at_once,
    auth_failures_are_401_or_403,
    foreign_batch_answers_as_unknown,
    oversize_and_malformed_bodies,
    trigger_filter_and_size_limits,
    destination_none_keeps_events_out_of_the_queue,
    marking_an_expired_batch_that_was_handed_on_conflicts,
    a_late_mark_read_never_deletes_events_that_came_after,
    operator_ingests_for_an_account,
    revoked_key_stops_working,
    fetch_defaults_to_1000_events_and_a_300_s_lease_of_at_most_12_h,
    remaining_is_exact_at_any_depth_per_trigger_and_after_open_batches,
);

async fn ingest_fetch_mark_read_empties_the_queue(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let r = app.ingest(&key, &opens(5)).await;
    assert_eq!(r, json!({"accepted": 5, "duplicates": 0}));
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "c@x.test", "url": "https://x.test/a", "data": {"geo": "FR"}}),
    )
    .await;

    let q = app.queue(&key).await;
    assert_eq!(q["pending"], 6);
    assert_eq!(q["triggers"]["OPEN"]["pending"], 5);
    assert_eq!(q["triggers"]["CLICK"]["pending"], 1);

    let batch = app.fetch(&key, &json!({"size": 4})).await;
    assert_eq!(
        recipients(&batch),
        vec!["r0@x.test", "r1@x.test", "r2@x.test", "r3@x.test"]
    );
    assert_eq!(batch["remaining"], 2);
    assert_eq!(batch["count"], 4);
    let first = &batch["events"][0];
    assert_eq!(first["trigger"], "OPEN");
    assert!(first["id"].as_str().unwrap().len() == 36);
    assert!(first["received_at"].as_str().unwrap().ends_with('Z'));
    let id = batch["batch_id"].as_str().unwrap().to_string();

    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 4);
    // Idempotent: a second mark-read succeeds and deletes nothing more.
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 0);
    // A batch marked read cannot be released any more.
    let r = app.post_empty(&format!("/v1/batches/{id}/release"), &key).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "batch_conflict");

    let batch = app.fetch(&key, &json!({})).await;
    assert_eq!(recipients(&batch), vec!["r4@x.test", "c@x.test"]);
    assert_eq!(batch["events"][1]["data"]["geo"], "FR");
    let id = batch["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);

    let empty = app.fetch(&key, &json!({})).await;
    assert_eq!(empty["batch_id"], Value::Null);
    assert_eq!(empty["events"], json!([]));
    let q = app.queue(&key).await;
    assert_eq!(q["pending"], 0);
    assert_eq!(q["in_flight"], 0);
}

async fn invalid_event_rejects_the_whole_batch(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let body = json!([
        {"trigger": "OPEN", "recipient": "a@x.test"},
        {"trigger": "NOT_A_TRIGGER", "recipient": "b@x.test"},
        {"trigger": "CLICK"},
        {"trigger": "OPEN", "recipient": "c@x.test", "occurred_at": "last tuesday"},
    ]);
    let r = app.post("/v1/events", &key, &body).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "validation_failed");
    let offenders: Vec<(u64, String)> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["index"].as_u64().unwrap(), d["field"].as_str().unwrap().to_string()))
        .collect();
    assert!(offenders.contains(&(1, "trigger".into())));
    assert!(offenders.contains(&(2, "recipient".into())));
    assert!(offenders.contains(&(3, "occurred_at".into())));
    assert!(v["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("SMSFAILED"));
    // Nothing was stored, not even the valid first event.
    assert_eq!(app.queue(&key).await["pending"], 0);
}

async fn duplicate_external_id_is_stored_once(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let (_, other) = app.create_account("other").await;
    let e = json!({"trigger": "BOUNCE", "recipient": "a@x.test", "external_id": "msg-1/bounce"});
    assert_eq!(app.ingest(&key, &e).await, json!({"accepted": 1, "duplicates": 0}));
    assert_eq!(app.ingest(&key, &e).await, json!({"accepted": 0, "duplicates": 1}));
    // Within one request too.
    let twice = json!([
        {"trigger": "OPEN", "recipient": "a@x.test", "external_id": "k2"},
        {"trigger": "OPEN", "recipient": "a@x.test", "external_id": "k2"},
    ]);
    assert_eq!(app.ingest(&key, &twice).await, json!({"accepted": 1, "duplicates": 1}));
    // Keys are per account.
    assert_eq!(app.ingest(&other, &e).await, json!({"accepted": 1, "duplicates": 0}));
    assert_eq!(app.queue(&key).await["pending"], 2);
}

async fn same_consumer_refetch_returns_the_same_batch(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(10)).await;
    let first = app.fetch(&key, &json!({"size": 3, "consumer": "crm"})).await;
    // The response was "lost": the client asks again.
    let again = app.fetch(&key, &json!({"size": 3, "consumer": "crm"})).await;
    assert_eq!(first["batch_id"], again["batch_id"]);
    assert_eq!(recipients(&first), recipients(&again));
    assert_eq!(first["expires_at"], again["expires_at"]);
    // After marking it read, the next fetch moves on.
    let id = first["batch_id"].as_str().unwrap();
    app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    let next = app.fetch(&key, &json!({"size": 3, "consumer": "crm"})).await;
    assert_ne!(next["batch_id"], first["batch_id"]);
    assert_eq!(recipients(&next), vec!["r3@x.test", "r4@x.test", "r5@x.test"]);
}

async fn two_consumers_get_disjoint_batches(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(100)).await;
    let a = app.fetch(&key, &json!({"size": 40, "consumer": "a"})).await;
    let bb = app.fetch(&key, &json!({"size": 40, "consumer": "b"})).await;
    let c = app.fetch(&key, &json!({"size": 40, "consumer": "c"})).await;
    let (ra, rb, rc) = (recipients(&a), recipients(&bb), recipients(&c));
    assert_eq!((ra.len(), rb.len(), rc.len()), (40, 40, 20));
    let mut all: Vec<String> = ra.into_iter().chain(rb).chain(rc).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 100, "every event handed out exactly once");
    let q = app.queue(&key).await;
    assert_eq!(q["in_flight"], 100);
    assert_eq!(q["open_batches"].as_array().unwrap().len(), 3);

    // Concurrent fetches by many consumers never overlap either.
    app.ingest(&key, &opens(200)).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = app.client.clone();
        let url = app.url("/v1/batches");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let v: Value = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"size": 30, "consumer": format!("w{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            recipients(&v)
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no event in two batches");
    assert_eq!(n, 200);
}

async fn expired_lease_redelivers(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(3)).await;
    let first = app.fetch(&key, &json!({"consumer": "a", "lease_seconds": 1})).await;
    assert_eq!(recipients(&first).len(), 3);
    // While leased, another consumer sees nothing.
    let none = app.fetch(&key, &json!({"consumer": "b"})).await;
    assert_eq!(none["batch_id"], Value::Null);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = app.fetch(&key, &json!({"consumer": "b"})).await;
    assert_ne!(again["batch_id"], first["batch_id"]);
    assert_eq!(recipients(&again), recipients(&first), "same events, same order");
}

async fn release_returns_events_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(4)).await;
    let batch = app.fetch(&key, &json!({"size": 2})).await;
    let id = batch["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/release"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["released"], 2);
    // Released twice: harmless. Marking it read now: a conflict.
    let r = app.post_empty(&format!("/v1/batches/{id}/release"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["released"], 0);
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 409);
    let again = app.fetch(&key, &json!({"size": 10, "consumer": "other"})).await;
    assert_eq!(
        recipients(&again),
        vec!["r0@x.test", "r1@x.test", "r2@x.test", "r3@x.test"]
    );
}

/// A long poll (`POST /v1/batches` with `body`) in its own task; answers
/// the batch and the instant its answer arrived.
fn spawn_poll(app: &common::TestApp, key: &str, body: Value) -> tokio::task::JoinHandle<(Value, Instant)> {
    let (client, url, key) = (app.client.clone(), app.url("/v1/batches"), key.to_string());
    tokio::spawn(async move {
        let v: Value = client
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (v, Instant::now())
    })
}

async fn long_poll_wakes_on_ingest(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    // The poll also re-checks the database every second on SQLite (every
    // 5 s on PostgreSQL, where a listener reports other nodes' events), so
    // one quick answer could be luck: three in a row, each well under that
    // interval, show that the ingest woke it. PostgreSQL gets the wider
    // margin its longer interval allows (a loaded machine's commit can take
    // more than 600 ms).
    let limit = match b {
        Backend::Postgres => Duration::from_millis(2500),
        Backend::Sqlite => Duration::from_millis(600),
    };
    for round in 0..3 {
        let poll = spawn_poll(&app, &key, json!({"wait_seconds": 15, "consumer": format!("c{round}")}));
        app.until_waiting(1.0).await;
        let arrived = Instant::now();
        app.ingest(
            &key,
            &json!({"trigger": "OPEN", "recipient": format!("r{round}@x.test")}),
        )
        .await;
        let (v, answered) = poll.await.unwrap();
        assert_eq!(recipients(&v), vec![format!("r{round}@x.test")]);
        let took = answered.saturating_duration_since(arrived);
        assert!(
            took < limit,
            "round {round}: answered on arrival, not at the next re-check ({took:?})"
        );
        app.until_waiting(0.0).await;
    }
    // An empty wait ends at its deadline, not before, with an empty answer.
    let started = Instant::now();
    let v = app.fetch(&key, &json!({"wait_seconds": 1, "consumer": "idle"})).await;
    assert_eq!(v["batch_id"], Value::Null);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

/// Two servers on one database: a long poll on one answers an ingest
/// through the other. PostgreSQL: each server keeps one connection
/// LISTENing for the other servers' wake-ups (counted in
/// `pg_stat_activity`) and re-checks the database only every 5 s. SQLite:
/// no listener; a waiting poll re-checks every second. The ingest is sent
/// as soon as the poll waits, so a poll that missed the wake-up (PostgreSQL)
/// or re-checked at the 5 s interval (SQLite) answers about 5 s after it:
/// the limit is half of that.
async fn long_poll_answers_an_ingest_through_another_server(b: Backend) {
    let a = spawn_app(b).await;
    let other = common::spawn_app_on(b, &a.db_url, &[]).await;
    let (_, key) = a.create_account("acme").await;
    if b == Backend::Postgres {
        // Counted by the database: one LISTEN connection per server.
        let sql = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE datname = current_database() AND query = 'LISTEN eventd_queue'";
        common::until("a listener per server", Duration::from_secs(30), || async {
            (common::pg_count(&a.db_url, sql) == 2).then_some(())
        })
        .await;
    }
    let limit = Duration::from_millis(2500);
    for round in 0..2 {
        let poll = spawn_poll(&a, &key, json!({"wait_seconds": 20, "consumer": format!("c{round}")}));
        a.until_waiting(1.0).await;
        let sent = Instant::now();
        other
            .ingest(
                &key,
                &json!({"trigger": "OPEN", "recipient": format!("r{round}@x.test")}),
            )
            .await;
        let (v, answered) = poll.await.unwrap();
        assert_eq!(recipients(&v), vec![format!("r{round}@x.test")]);
        let took = answered.saturating_duration_since(sent);
        assert!(took < limit, "round {round}: answered {took:?} after the ingest");
        a.until_waiting(0.0).await;
    }
}

async fn long_polls_beyond_max_waiters_answer_at_once(b: Backend) {
    let app = common::spawn_app_with(b, &["--max-waiters", "1"]).await;
    let (_, key) = app.create_account("acme").await;
    let (client, url, k) = (app.client.clone(), app.url("/v1/batches"), key.clone());
    let first = tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(k)
            .json(&json!({"wait_seconds": 20, "consumer": "a"}));
        r.send().await.unwrap().json::<Value>().await.unwrap()
    });
    app.until_waiting(1.0).await;
    // The one waiter slot is taken: a second long poll answers empty at
    // once (well before its 20 s), while the first keeps waiting.
    let started = Instant::now();
    let second = app.fetch(&key, &json!({"wait_seconds": 20, "consumer": "b"})).await;
    assert_eq!(second["batch_id"], Value::Null);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!first.is_finished(), "the first poll still waits");
    app.ingest(&key, &opens(1)).await;
    assert_eq!(recipients(&first.await.unwrap()), vec!["r0@x.test"]);
}

async fn auth_failures_are_401_or_403(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let r = app.client.get(app.url("/v1/queue")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    assert_eq!(app.get("/v1/queue", "evk_wrong").await.status(), 401);
    assert_eq!(
        app.client
            .get(app.url("/v1/queue"))
            .header("authorization", "Basic !!!")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // HTTP Basic with the key as password works (what SOAP clients send).
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("acme:{key}"));
    let r = app
        .client
        .get(app.url("/v1/queue"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The operator token is not an account; an account key is not the operator.
    assert_eq!(app.get("/v1/queue", ADMIN).await.status(), 403);
    assert_eq!(app.get("/v1/accounts", &key).await.status(), 403);
    assert_eq!(
        app.post("/v1/accounts", &key, &json!({"name": "x"})).await.status(),
        403
    );
}

async fn foreign_batch_answers_as_unknown(b: Backend) {
    let app = spawn_app(b).await;
    let (_, alice) = app.create_account("alice").await;
    let (_, mallory) = app.create_account("mallory").await;
    app.ingest(&alice, &opens(2)).await;
    let batch = app.fetch(&alice, &json!({})).await;
    let id = batch["batch_id"].as_str().unwrap();
    for action in ["read", "release"] {
        let foreign = app.post_empty(&format!("/v1/batches/{id}/{action}"), &mallory).await;
        let unknown = app
            .post_empty(
                &format!("/v1/batches/00000000-0000-7000-8000-000000000000/{action}"),
                &mallory,
            )
            .await;
        assert_eq!(foreign.status(), 404);
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            foreign.json::<Value>().await.unwrap(),
            unknown.json::<Value>().await.unwrap()
        );
    }
    // Mallory sees nothing of Alice's queue; Alice's batch is intact.
    assert_eq!(app.queue(&mallory).await["in_flight"], 0);
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &alice).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);
}

async fn oversize_and_malformed_bodies(b: Backend) {
    let app = common::spawn_app_with(b, &["--max-body-bytes", "100000"]).await;
    let (_, key) = app.create_account("acme").await;
    let big = "x".repeat(200_000);
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"trigger\":\"OPEN\",\"recipient\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "body_too_large");

    let send_raw = |ct: &'static str, body: &'static str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&key)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = send_raw("application/json", "{\"trigger\": \"OPEN\",").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "malformed_json");
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v["error"]["code"].as_str().unwrap_or_default().to_string())
    };
    let r = send_raw("text/plain", "{\"trigger\": \"OPEN\"}").await.unwrap();
    assert_eq!(code(r).await, (415, "unsupported_media_type".into()));
    let r = send_raw("application/json", "42").await.unwrap();
    assert_eq!(code(r).await, (422, "invalid_request".into()));
    let r = send_raw("application/json", "[\u{0}]").await.unwrap();
    assert_eq!(code(r).await, (400, "malformed_json".into()));
    let r = send_raw("application/json", "  ").await.unwrap();
    assert_eq!(code(r).await, (422, "no_events".into()));

    // More than 10,000 events in one request.
    let many = opens(10_001);
    let app2 = common::spawn_app(b).await;
    let (_, key2) = app2.create_account("acme").await;
    let r = app2.post("/v1/events", &key2, &many).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "too_many_events");

    // Wrong types and unknown fields in a fetch request.
    for bad in [json!({"size": "ten"}), json!({"sizes": 10})] {
        let r = app.post("/v1/batches", &key, &bad).await;
        assert_eq!(code(r).await, (422, "invalid_request".into()), "{bad}");
    }
    assert_eq!(app.queue(&key).await["pending"], 0);
}

async fn trigger_filter_and_size_limits(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(
        &key,
        &json!([
            {"trigger": "OPEN", "recipient": "o1@x.test"},
            {"trigger": "CLICK", "recipient": "c1@x.test"},
            {"trigger": "BOUNCE", "recipient": "b1@x.test"},
            {"trigger": "CLICK", "recipient": "c2@x.test"},
        ]),
    )
    .await;
    let v = app
        .fetch(&key, &json!({"triggers": ["click", "BOUNCE"], "consumer": "x"}))
        .await;
    assert_eq!(recipients(&v), vec!["c1@x.test", "b1@x.test", "c2@x.test"]);
    let r = app
        .post("/v1/batches", &key, &json!({"triggers": ["CLICK", "NOPE"]}))
        .await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unknown_trigger");
    assert!(e["error"]["message"].as_str().unwrap().contains("NOPE"));
    for (bad, field) in [
        (json!({"size": 0}), "size"),
        (json!({"size": 10001}), "size"),
        (json!({"lease_seconds": 0}), "lease_seconds"),
        (json!({"lease_seconds": 43_201}), "lease_seconds"),
        (json!({"wait_seconds": 21}), "wait_seconds"),
        (json!({"wait_seconds": -1}), "wait_seconds"),
        (json!({"consumer": "a b"}), "consumer"),
    ] {
        let r = app.post("/v1/batches", &key, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_parameter", "{bad}");
        assert_eq!(e["error"]["details"]["field"], field, "{bad}");
    }
    let v = app.fetch(&key, &json!({"size": 10000, "consumer": "y"})).await;
    assert_eq!(recipients(&v), vec!["o1@x.test"]);
}

async fn destination_none_keeps_events_out_of_the_queue(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let r = app
        .put("/v1/triggers/open", &key, &json!({"destination": "none"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["destination"], "none");
    let v: Value = app.get("/v1/triggers/OPEN", &key).await.json().await.unwrap();
    assert_eq!(v, json!({"trigger": "OPEN", "destination": "none"}));
    let all: Value = app.get("/v1/triggers", &key).await.json().await.unwrap();
    assert_eq!(all["triggers"].as_array().unwrap().len(), 15);
    assert_eq!(all["triggers"][5], json!({"trigger": "CLICK", "destination": "pull"}));

    let r = app
        .ingest(
            &key,
            &json!([{"trigger": "OPEN", "recipient": "a@x.test"}, {"trigger": "CLICK", "recipient": "b@x.test"}]),
        )
        .await;
    assert_eq!(r["accepted"], 2);
    let v = app.fetch(&key, &json!({})).await;
    assert_eq!(recipients(&v), vec!["b@x.test"]);

    assert_eq!(app.get("/v1/triggers/NOPE", &key).await.status(), 404);
    let r = app
        .put("/v1/triggers/OPEN", &key, &json!({"destination": "pigeon"}))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unknown_destination");
}

/// Two events fetched by "slow" with a 1 s lease, then, once that ran out,
/// by "fast": (slow's batch, fast's batch).
async fn handed_on(app: &TestApp, key: &str) -> (Value, Value) {
    app.ingest(key, &opens(2)).await;
    let slow = app.fetch(key, &json!({"consumer": "slow", "lease_seconds": 1})).await;
    // Until the lease has run out (the only way to hand the events on).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let fast = app.fetch(key, &json!({"consumer": "fast"})).await;
    assert_eq!(recipients(&fast).len(), 2);
    (slow, fast)
}

async fn marking_an_expired_batch_that_was_handed_on_conflicts(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let (first, second) = handed_on(&app, &key).await;
    let id = first["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "batch_conflict");
    // The second batch is unaffected.
    let id2 = second["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id2}/read"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);

    // An expired batch whose events nobody took can still be marked read.
    app.ingest(&key, &opens(1)).await;
    let third = app.fetch(&key, &json!({"consumer": "slow", "lease_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let id3 = third["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id3}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 1);
}

/// A consumer that marks its batch read after the lease ran out, and after
/// another consumer took and read the same events, must not delete the
/// events that arrived since: the queue never gives a seq out twice, even
/// after it was drained to empty.
async fn a_late_mark_read_never_deletes_events_that_came_after(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let (slow, fast) = handed_on(&app, &key).await;
    let id = fast["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);
    // The queue is empty; two new events arrive.
    let later = json!([
        {"trigger": "OPEN", "recipient": "later0@x.test"},
        {"trigger": "OPEN", "recipient": "later1@x.test"},
    ]);
    app.ingest(&key, &later).await;
    let id = slow["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 409);
    let next = app.fetch(&key, &json!({"consumer": "next"})).await;
    assert_eq!(recipients(&next), vec!["later0@x.test", "later1@x.test"]);
}

async fn operator_ingests_for_an_account(b: Backend) {
    let app = spawn_app(b).await;
    let (id, key) = app.create_account("acme").await;
    let r = app.post(&format!("/v1/accounts/{id}/events"), ADMIN, &opens(2)).await;
    assert_eq!(r.status(), 202);
    assert_eq!(app.queue(&key).await["pending"], 2);
    assert_eq!(
        app.post("/v1/accounts/999999/events", ADMIN, &opens(1)).await.status(),
        404
    );
    assert_eq!(
        app.post("/v1/accounts/abc/events", ADMIN, &opens(1)).await.status(),
        404
    );
    assert_eq!(app.post("/v1/events", ADMIN, &opens(1)).await.status(), 403);
    // Duplicate account names conflict.
    let r = app.post("/v1/accounts", ADMIN, &json!({"name": "acme"})).await;
    assert_eq!(r.status(), 409);
    let list: Value = app.get("/v1/accounts", ADMIN).await.json().await.unwrap();
    assert_eq!(list["accounts"][0]["name"], "acme");
}

async fn revoked_key_stops_working(b: Backend) {
    let app = spawn_app(b).await;
    let (id, first) = app.create_account("acme").await;
    let r = app.post_empty(&format!("/v1/accounts/{id}/keys"), ADMIN).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let second = v["key"].as_str().unwrap().to_string();
    assert!(second.starts_with("evk_"));
    assert_eq!(app.get("/v1/queue", &second).await.status(), 200);

    let keys: Value = app
        .get(&format!("/v1/accounts/{id}/keys"), ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let listed = keys["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!keys.to_string().contains(&second), "secrets are never listed");

    let key_id = v["id"].as_str().unwrap();
    // Unknown accounts are 404; a key is revoked only through its own account.
    assert_eq!(app.post_empty("/v1/accounts/999999/keys", ADMIN).await.status(), 404);
    assert_eq!(app.get("/v1/accounts/999999/keys", ADMIN).await.status(), 404);
    let (other, _) = app.create_account("other").await;
    let r = app.delete(&format!("/v1/accounts/{other}/keys/{key_id}"), ADMIN).await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.get("/v1/queue", &second).await.status(), 200);
    let r = app.delete(&format!("/v1/accounts/{id}/keys/{key_id}"), ADMIN).await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.get("/v1/queue", &second).await.status(), 401);
    assert_eq!(app.get("/v1/queue", &first).await.status(), 200);
    let r = app.delete(&format!("/v1/accounts/{id}/keys/key_nope"), ADMIN).await;
    assert_eq!(r.status(), 404);
}

/// SPEC §5: size defaults to 1,000; lease_seconds to 300, at most 43,200.
async fn fetch_defaults_to_1000_events_and_a_300_s_lease_of_at_most_12_h(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(1_001)).await;
    let lease = |batch: &Value| {
        let t = chrono::DateTime::parse_from_rfc3339(batch["expires_at"].as_str().unwrap()).unwrap();
        (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
    };
    let v = app.fetch(&key, &json!({})).await;
    assert_eq!(v["count"], 1_000);
    assert_eq!(v["remaining"], 1);
    assert!((290..=300).contains(&lease(&v)), "{}", lease(&v));
    let v = app
        .fetch(&key, &json!({"consumer": "long", "lease_seconds": 43_200}))
        .await;
    assert_eq!(v["count"], 1);
    assert!((43_190..=43_200).contains(&lease(&v)), "{}", lease(&v));
}

/// `remaining`: the fetched triggers' events still waiting after the batch,
/// exact beyond 10,000, less what open batches (this one and others') hold,
/// and back up when a batch is released.
async fn remaining_is_exact_at_any_depth_per_trigger_and_after_open_batches(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    for _ in 0..12 {
        app.ingest(&key, &opens(1_000)).await;
    }
    let clicks: Vec<Value> = (0..7)
        .map(|i| json!({"trigger": "CLICK", "recipient": format!("c{i}@x.test"), "url": "https://x.test/"}))
        .collect();
    app.ingest(&key, &Value::Array(clicks)).await;

    let v = app.fetch(&key, &json!({"size": 5, "consumer": "a"})).await;
    assert_eq!(v["count"], 5);
    assert_eq!(v["remaining"], 12_007 - 5);
    let a = v["batch_id"].as_str().unwrap().to_string();
    // The same batch handed out again says the same.
    let v = app.fetch(&key, &json!({"size": 5, "consumer": "a"})).await;
    assert_eq!(v["batch_id"], a.as_str());
    assert_eq!(v["remaining"], 12_007 - 5);

    let v = app
        .fetch(&key, &json!({"size": 2, "consumer": "b", "triggers": ["CLICK"]}))
        .await;
    assert_eq!(v["count"], 2);
    assert_eq!(v["remaining"], 5, "CLICKs only");
    let v = app
        .fetch(&key, &json!({"size": 3, "consumer": "c", "triggers": ["OPEN"]}))
        .await;
    assert_eq!(v["remaining"], 12_000 - 5 - 3, "OPENs after a's and c's");
    let c = v["batch_id"].as_str().unwrap().to_string();

    let r = app.post_empty(&format!("/v1/batches/{a}/release"), &key).await;
    assert_eq!(r.status(), 200);
    let r = app.post_empty(&format!("/v1/batches/{c}/read"), &key).await;
    assert_eq!(r.status(), 200);
    let v = app.fetch(&key, &json!({"size": 1, "consumer": "d"})).await;
    assert_eq!(v["remaining"], 12_007 - 3 - 2 - 1, "a's back, c's read, b's held");
}

/// A batch of thousands of events (its payloads read after its claim
/// commits) holds each event once, in ingest order, fresh and when handed
/// out again.
async fn a_large_batch_holds_every_event_once_in_ingest_order(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let mut sent = Vec::new();
    for r in 0..5 {
        let events: Vec<Value> = (0..1_000)
            .map(|i| {
                let recipient = format!("r{r}-{i}@x.test");
                sent.push(recipient.clone());
                json!({"trigger": "OPEN", "recipient": recipient})
            })
            .collect();
        app.ingest(&key, &Value::Array(events)).await;
    }
    let fresh = app.fetch(&key, &json!({"size": 10000, "consumer": "big"})).await;
    assert_eq!(recipients(&fresh), sent);
    let again = app.fetch(&key, &json!({"size": 10000, "consumer": "big"})).await;
    assert_eq!(again["batch_id"], fresh["batch_id"]);
    assert_eq!(recipients(&again), sent);
}
