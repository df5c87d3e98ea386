//! What the storage floor's speed must not break (group commit, maintained
//! queue counters, leases as seq ranges, migrations), on both backends.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{fresh_database, previous_schema, recipients, spawn_app, Backend, TestApp, ADMIN};
use serde_json::{json, Value};

both!(
    a_failing_request_in_a_group_does_not_fail_its_neighbours,
    external_id_is_idempotent_within_and_across_groups,
    fetch_order_is_commit_order_per_account,
    accepted_means_committed_even_after_kill_9,
    queue_counters_follow_ingest_fetch_read_release_and_expiry,
    claims_skip_leased_ranges_and_filtered_claims_skip_other_triggers,
    migration_keeps_every_queued_event_batch_and_delivery,
    payload_once_migration_keeps_every_queued_event_and_delivery,
    a_duplicate_makes_no_delivery_and_no_queue_row,
    a_batch_whose_row_went_missing_is_read_and_swept,
    a_read_batch_keeps_its_rows_until_swept_and_they_never_return,
    a_read_batch_is_swept_soon,
);

fn exec_sql(app: &TestApp, sql: &str) {
    common::exec_sql(app.backend, &app.db_url, sql);
}

/// Every event of the account, fetched and marked read: recipients in order.
async fn drain(app: &TestApp, key: &str) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let b = app.fetch(key, &json!({"size": 10000, "consumer": "drain"})).await;
        let got = recipients(&b);
        if got.is_empty() {
            return all;
        }
        all.extend(got);
        let id = b["batch_id"].as_str().unwrap();
        assert_eq!(
            app.post_empty(&format!("/v1/batches/{id}/read"), key).await.status(),
            200
        );
    }
}

async fn a_failing_request_in_a_group_does_not_fail_its_neighbours(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    // A database trigger makes one request's insert fail inside the
    // transaction its group shares with the others.
    match b {
        Backend::Sqlite => exec_sql(
            &app,
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.external_id = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        ),
        Backend::Postgres => exec_sql(
            &app,
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.external_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();",
        ),
    }
    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (client, url, key) = (app.client.clone(), app.url("/v1/events"), key.clone());
            let body = match i % 10 {
                // Invalid: refused before it could join a group.
                3 => json!([{"trigger": "OPEN", "recipient": format!("ok{round}-{i}@x.test")}, {"trigger": "NOPE"}]),
                // Valid, but its insert fails in the database.
                7 => json!([{"trigger": "OPEN", "recipient": format!("bad{round}-{i}@x.test")},
                            {"trigger": "OPEN", "recipient": "p@x.test", "external_id": "poison"}]),
                _ => json!([{"trigger": "OPEN", "recipient": format!("ok{round}-{i}@x.test")},
                            {"trigger": "CLICK", "recipient": format!("ok{round}-{i}@x.test"), "url": "https://x.test"}]),
            };
            tasks.push(tokio::spawn(async move {
                let r = client.post(url).bearer_auth(key).json(&body).send().await.unwrap();
                (i, r.status().as_u16())
            }));
        }
        for t in tasks {
            let (i, status) = t.await.unwrap();
            let want = match i % 10 {
                3 => 422,
                7 => 500,
                _ => 202,
            };
            assert_eq!(status, want, "request {i} of round {round}");
        }
    }
    let got = drain(&app, &key).await;
    // Each accepted request whole (2 events), nothing of the others.
    assert_eq!(got.len(), 3 * 32 * 2, "{got:?}");
    assert!(got.iter().all(|r| r.starts_with("ok")), "{got:?}");
}

async fn external_id_is_idempotent_within_and_across_groups(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let (_, other) = app.create_account("other").await;
    // 30 concurrent requests (they share groups), each with the keys
    // k0..k9 (one of them twice), for two accounts.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (client, url) = (app.client.clone(), app.url("/v1/events"));
        let k = if i % 2 == 0 { key.clone() } else { other.clone() };
        let mut events: Vec<Value> = (0..10)
            .map(|j| json!({"trigger": "OPEN", "recipient": format!("r{i}-{j}@x.test"), "external_id": format!("k{}", (i + j) % 10)}))
            .collect();
        events.push(
            json!({"trigger": "OPEN", "recipient": format!("dup{i}@x.test"), "external_id": format!("k{}", i % 10)}),
        );
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(k).json(&events).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()
        }));
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for t in tasks {
        let v = t.await.unwrap();
        accepted += v["accepted"].as_i64().unwrap();
        duplicates += v["duplicates"].as_i64().unwrap();
    }
    // Ten keys per account are stored once each; everything else is a duplicate.
    assert_eq!((accepted, duplicates), (20, 30 * 11 - 20));
    // A later request (another group) finds them too.
    let again: Vec<Value> = (0..10)
        .map(|j| json!({"trigger": "OPEN", "recipient": "late@x.test", "external_id": format!("k{j}")}))
        .collect();
    assert_eq!(
        app.ingest(&key, &Value::Array(again)).await,
        json!({"accepted": 0, "duplicates": 10})
    );
    assert_eq!(drain(&app, &key).await.len(), 10);
    assert_eq!(drain(&app, &other).await.len(), 10);
}

/// (On PostgreSQL this test once got a 500: two ingest writers inserting
/// these external_ids in different orders deadlocked. Now each chunk is
/// inserted in key order and a deadlock is retried.)
async fn a_duplicate_makes_no_delivery_and_no_queue_row(b: Backend) {
    let app = common::spawn_app_with(b, &["--allow-private-targets"]).await;
    let (_, key) = app.create_account("acme").await;
    // OPEN events become deliveries (listed whatever their state), CLICK
    // events are queued.
    let rx = common::push::Receiver::start().await;
    common::push::push_to(&app, &key, "OPEN", json!({"url": rx.url("open")})).await;
    // 20 concurrent requests (they share groups), each with the external
    // ids o0..o4 (OPEN) and c0..c4 (CLICK), in a different order.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, url, key) = (app.client.clone(), app.url("/v1/events"), key.clone());
        let events: Vec<Value> = (0..5)
            .flat_map(|j| {
                let k = (i + j) % 5;
                [
                    json!({"trigger": "OPEN", "recipient": format!("o{k}@x.test"), "external_id": format!("o{k}")}),
                    json!({"trigger": "CLICK", "recipient": format!("c{k}@x.test"), "url": "https://x.test", "external_id": format!("c{k}")}),
                ]
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(key).json(&events).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap()["accepted"].as_i64().unwrap();
    }
    assert_eq!(accepted, 10);
    let list: Value = app.get("/v1/deliveries?limit=100", &key).await.json().await.unwrap();
    let delivered: HashSet<&str> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (list["deliveries"].as_array().unwrap().len(), delivered.len()),
        (5, 5),
        "{list}"
    );
    let mut queued = drain(&app, &key).await;
    queued.sort_unstable();
    let want: Vec<String> = (0..5).map(|k| format!("c{k}@x.test")).collect();
    assert_eq!(queued, want);
    assert_eq!(app.queue(&key).await["pending"], 0);
}

/// Two transactions inserting the same new external_ids in opposite orders
/// deadlock, and PostgreSQL cancels one of them. When it cancels the
/// ingest's, the ingest runs again: the request gets 202, not 500, and its
/// events are stored once. (PostgreSQL only: SQLite has one writer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlocked_ingest_is_run_again_postgres() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    if common::skip_postgres() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let (account, key) = app.create_account("acme").await;
    let insert = move |x: &str| {
        format!(
            "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload) \
             VALUES ({account}, 'other-{x}', 'OPEN', 0, '{x}', '{{}}')"
        )
    };
    // Another transaction holds external_id "b". Its deadlock_timeout is
    // long, so the ingest's backend (1 s) is the one that detects the
    // deadlock and is cancelled.
    let (held, is_held) = std::sync::mpsc::channel();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let url = app.db_url.clone();
    let other = std::thread::spawn(move || {
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        c.batch_execute("BEGIN; SET LOCAL deadlock_timeout = '60s';").unwrap();
        c.batch_execute(&insert("b")).unwrap();
        held.send(()).unwrap();
        wait_go.recv().unwrap();
        // Waits for the ingest's "a" until PostgreSQL cancels the ingest.
        c.batch_execute(&insert("a")).unwrap();
        c.batch_execute("ROLLBACK").unwrap();
    });
    is_held.recv().unwrap();
    let (client, url, k) = (app.client.clone(), app.url("/v1/events"), key.clone());
    let request = tokio::spawn(async move {
        let events = json!([
            {"trigger": "OPEN", "recipient": "b@x.test", "external_id": "b"},
            {"trigger": "OPEN", "recipient": "a@x.test", "external_id": "a"},
        ]);
        let r = client.post(url).bearer_auth(k).json(&events).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let db = app.db_url.clone();
    common::until(
        "the ingest waits for the other transaction",
        Duration::from_secs(10),
        || {
            let db = db.clone();
            async move {
                let waiting = common::pg_count(
                    &db,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                );
                (waiting > 0).then_some(())
            }
        },
    )
    .await;
    go.send(()).unwrap();
    let (status, body) = request.await.unwrap();
    other.join().unwrap();
    assert_eq!(status, 202, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"accepted": 2, "duplicates": 0}));
    let mut got = drain(&app, &key).await;
    got.sort_unstable();
    assert_eq!(got, ["a@x.test", "b@x.test"]);
}

async fn fetch_order_is_commit_order_per_account(b: Backend) {
    let app = spawn_app(b).await;
    // Eight accounts, each with a producer sending one event per request,
    // one after the other (each after the previous 202), all at once.
    let mut keys = Vec::new();
    for a in 0..8 {
        keys.push(app.create_account(&format!("acct{a}")).await.1);
    }
    let mut tasks = Vec::new();
    for key in keys.clone() {
        let (client, url) = (app.client.clone(), app.url("/v1/events"));
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                let body = json!({"trigger": if i % 2 == 0 { "OPEN" } else { "CLICK" }, "recipient": format!("r{i:03}@x.test")});
                let r = client.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<String> = (0..60).map(|i| format!("r{i:03}@x.test")).collect();
    for key in &keys {
        assert_eq!(drain(&app, key).await, want);
    }
}

/// A server in a child process of its own (so it can be killed with SIGKILL).
struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_process(db_url: &str) -> Process {
    let port = common::free_port();
    let child = common::eventd_command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db_url,
        ])
        .env("EVENTD_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("eventd starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Process { child, base }
}

async fn accepted_means_committed_even_after_kill_9(b: Backend) {
    let (db_url, _tmp) = fresh_database(b);
    let _drop = common::drop_pg_later(b, &db_url);
    let mut server = start_process(&db_url).await;
    let client = reqwest::Client::new();
    let v: Value = client
        .post(format!("{}/v1/accounts", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = v["api_key"].as_str().unwrap().to_string();
    // 16 producers send single events as fast as they can; the server is
    // killed while they do. Every event answered 202 must survive.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for p in 0..16 {
        let (client, url, key, acked) = (
            client.clone(),
            format!("{}/v1/events", server.base),
            key.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let r = format!("p{p}-{i}@x.test");
                let sent = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"trigger": "OPEN", "recipient": r}))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 202 => acked.lock().unwrap().push(r),
                    _ => return,
                }
            }
        }));
    }
    // Kill once a good number were acknowledged (or after a while).
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "only {} events acknowledged", acked.len());

    let server = start_process(&db_url).await;
    let mut stored = HashSet::new();
    loop {
        let b: Value = client
            .post(format!("{}/v1/batches", server.base))
            .bearer_auth(&key)
            .json(&json!({"size": 10000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let got = recipients(&b);
        if got.is_empty() {
            break;
        }
        stored.extend(got);
        let id = b["batch_id"].as_str().unwrap();
        client
            .post(format!("{}/v1/batches/{id}/read", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    let lost: Vec<&String> = acked.iter().filter(|r| !stored.contains(*r)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost: {lost:?}", lost.len());
}

/// A mark-read answers the counts recorded at fetch and leaves the rows
/// to the sweeper, which deletes what is there: with one row gone behind
/// the batch's back (here by hand), the batch is read all the same and
/// the rest is swept.
async fn a_batch_whose_row_went_missing_is_read_and_swept(b: Backend) {
    let app = spawn_app(b).await;
    let (account, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(3)).await;
    let batch = app.fetch(&key, &json!({"size": 3})).await;
    let id = batch["batch_id"].as_str().unwrap();
    exec_sql(
        &app,
        &format!(
            "DELETE FROM pull_queue WHERE account_id = {account} \
             AND seq = (SELECT MIN(seq) FROM pull_queue WHERE account_id = {account})"
        ),
    );
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 3);
    queue_rows_reach(&app, account, 0).await;
    // Marked read all the same: nothing left to fetch, nothing pending.
    assert_eq!(drain(&app, &key).await, Vec::<String>::new());
    assert_eq!(app.queue(&key).await["triggers"]["OPEN"]["pending"], 0);
}

/// Waits (up to 10 s) until the account has `n` rows in the pull queue.
async fn queue_rows_reach(app: &TestApp, account: i64, n: i64) {
    let sql = format!("SELECT COUNT(*) AS n FROM pull_queue WHERE account_id = {account}");
    common::until("the read batch's rows swept", Duration::from_secs(10), || async {
        (common::sql_count(app.backend, &app.db_url, &sql) == n).then_some(())
    })
    .await;
}

/// Marking read takes the events out of the queue at once; their rows are
/// deleted later by the sweeper (`--sweep-delay`), and until then they
/// stay with their batch even past its lease: never fetched again.
async fn a_read_batch_keeps_its_rows_until_swept_and_they_never_return(b: Backend) {
    let app = common::spawn_app_with(b, &["--sweep-delay", "1h"]).await;
    let (account, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(5)).await;
    let batch = app
        .fetch(&key, &json!({"size": 3, "consumer": "a", "lease_seconds": 1}))
        .await;
    let read = recipients(&batch);
    let id = batch["batch_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 3);
    let q = app.queue(&key).await;
    assert_eq!(
        (&q["triggers"]["OPEN"]["pending"], &q["triggers"]["OPEN"]["in_flight"]),
        (&json!(2), &json!(0))
    );
    // Past the read batch's lease, its rows (not swept: the delay is an
    // hour) are still not handed out.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let rest = recipients(&app.fetch(&key, &json!({"size": 10, "consumer": "b"})).await);
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(
        rest.iter().all(|r| !read.contains(r)),
        "read events handed out again: {rest:?}"
    );
    // Nothing is pending now (2 in an open batch, 3 read): the oldest
    // pending age is not that of the unswept rows.
    let age = common::metric(&app.metrics().await, "eventd_queue_oldest_pending_age_seconds");
    assert_eq!(age, 0.0);
    let rows = format!("SELECT COUNT(*) AS n FROM pull_queue WHERE account_id = {account}");
    assert_eq!(common::sql_count(b, &app.db_url, &rows), 5);
    // Read again: idempotent; release: refused.
    let again = app.post_empty(&format!("/v1/batches/{id}/read"), &key).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{id}/release"), &key)
            .await
            .status(),
        409
    );
}

/// With the default delay, a read batch's rows are gone soon after.
async fn a_read_batch_is_swept_soon(b: Backend) {
    let app = spawn_app(b).await;
    let (account, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(4)).await;
    let batch = app.fetch(&key, &json!({"size": 3})).await;
    let id = batch["batch_id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{id}/read"), &key).await.status(),
        200
    );
    queue_rows_reach(&app, account, 1).await;
}

async fn queue_counters_follow_ingest_fetch_read_release_and_expiry(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let clicks: Vec<Value> = (0..5)
        .map(|i| json!({"trigger": "CLICK", "recipient": format!("c{i}@x.test"), "url": "https://x.test"}))
        .collect();
    app.ingest(&key, &common::opens(10)).await;
    app.ingest(&key, &Value::Array(clicks)).await;
    let depth = |q: &Value, t: &str| {
        (
            q["triggers"][t]["pending"].as_i64().unwrap(),
            q["triggers"][t]["in_flight"].as_i64().unwrap(),
        )
    };
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(15), Some(0)));
    assert_eq!((depth(&q, "OPEN"), depth(&q, "CLICK")), ((10, 0), (5, 0)));

    // A batch of 12 (10 OPEN, 2 CLICK) in flight.
    let b1 = app.fetch(&key, &json!({"size": 12, "consumer": "a"})).await;
    let q = app.queue(&key).await;
    assert_eq!((depth(&q, "OPEN"), depth(&q, "CLICK")), ((0, 10), (3, 2)));
    // A release puts them back; a new claim of CLICK only, then read.
    let id1 = b1["batch_id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{id1}/release"), &key)
            .await
            .status(),
        200
    );
    let q = app.queue(&key).await;
    assert_eq!((depth(&q, "OPEN"), depth(&q, "CLICK")), ((10, 0), (5, 0)));
    let b2 = app
        .fetch(&key, &json!({"size": 3, "consumer": "b", "triggers": ["CLICK"]}))
        .await;
    assert_eq!(recipients(&b2), ["c0@x.test", "c1@x.test", "c2@x.test"]);
    let id2 = b2["batch_id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{id2}/read"), &key).await.status(),
        200
    );
    let q = app.queue(&key).await;
    assert_eq!((depth(&q, "OPEN"), depth(&q, "CLICK")), ((10, 0), (2, 0)));
    assert_eq!(q["pending"], 12);

    // Expiry of unread events (maintenance) lowers the counters too.
    let app2 = common::spawn_app_with(b, &["--queue-max-age", "1s", "--maintenance-interval", "1s"]).await;
    let (_, key2) = app2.create_account("old").await;
    app2.ingest(&key2, &common::opens(4)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = app2.queue(&key2).await;
        if q["pending"] == 0 {
            assert_eq!(depth(&q, "OPEN"), (0, 0));
            break;
        }
        assert!(Instant::now() < deadline, "the events never expired: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drain(&app2, &key2).await.is_empty());
}

async fn claims_skip_leased_ranges_and_filtered_claims_skip_other_triggers(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    // o0 c0 o1 c1 … o9 c9
    let events: Vec<Value> = (0..10)
        .flat_map(|i| {
            [
                json!({"trigger": "OPEN", "recipient": format!("o{i}@x.test")}),
                json!({"trigger": "CLICK", "recipient": format!("c{i}@x.test"), "url": "https://x.test"}),
            ]
        })
        .collect();
    app.ingest(&key, &Value::Array(events)).await;
    // a: CLICK c0..c2 (a range of the queue holding CLICK only).
    let a = app
        .fetch(&key, &json!({"size": 3, "consumer": "a", "triggers": ["CLICK"]}))
        .await;
    assert_eq!(recipients(&a), ["c0@x.test", "c1@x.test", "c2@x.test"]);
    // b: everything else in order, around a's holes.
    let bb = app.fetch(&key, &json!({"size": 6, "consumer": "b"})).await;
    assert_eq!(
        recipients(&bb),
        [
            "o0@x.test",
            "o1@x.test",
            "o2@x.test",
            "o3@x.test",
            "c3@x.test",
            "o4@x.test"
        ]
    );
    // c: OPEN and BOUNCE only: after b's range.
    let c = app
        .fetch(
            &key,
            &json!({"size": 2, "consumer": "c", "triggers": ["OPEN", "BOUNCE"]}),
        )
        .await;
    assert_eq!(recipients(&c), ["o5@x.test", "o6@x.test"]);
    // a releases: its clicks are available again although b's range spans them.
    let ida = a["batch_id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{ida}/release"), &key)
            .await
            .status(),
        200
    );
    let d = app.fetch(&key, &json!({"size": 100, "consumer": "d"})).await;
    assert_eq!(
        recipients(&d),
        [
            "c0@x.test",
            "c1@x.test",
            "c2@x.test",
            "c4@x.test",
            "c5@x.test",
            "c6@x.test",
            "o7@x.test",
            "c7@x.test",
            "o8@x.test",
            "c8@x.test",
            "o9@x.test",
            "c9@x.test"
        ]
    );
    assert_eq!(d["remaining"], 0);
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(20)));
    // Everything was handed out exactly once.
    let all: BTreeSet<String> = [&bb, &c, &d].iter().flat_map(|x| recipients(x)).collect();
    assert_eq!(all.len(), 20);
}

async fn migration_keeps_every_queued_event_batch_and_delivery(b: Backend) {
    let (db_url, _tmp) = fresh_database(b);
    let _drop = common::drop_pg_later(b, &db_url);
    previous_schema(b, &db_url, &["queue_depth_and_pieces", "payload_once"]);
    // Rows as the previous version wrote them: six queued events (4 OPEN,
    // 2 CLICK), an open batch holding seqs 1 and 2 (a member list, no
    // pieces), and a pending push delivery.
    let event = |seq: i64, trigger: &str| {
        format!(
            r#"{{"id":"0190-{seq}","trigger":"{trigger}","occurred_at":"2026-12-01T00:00:00Z","received_at":"2026-12-01T00:00:00Z","recipient":"m{seq}@x.test"}}"#
        )
    };
    let mut sql = String::from("INSERT INTO accounts (id, name, created_at) VALUES (7, 'legacy', 0);\n");
    for (seq, trigger) in [
        (1, "OPEN"),
        (2, "CLICK"),
        (3, "OPEN"),
        (4, "CLICK"),
        (5, "OPEN"),
        (6, "OPEN"),
    ] {
        let payload = event(seq, trigger);
        sql.push_str(&format!(
            "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload) \
             VALUES (7, '0190-{seq}', '{trigger}', {now}, NULL, '{payload}');\n\
             INSERT INTO pull_queue (account_id, seq, trigger, received_at, payload) \
             VALUES (7, {seq}, '{trigger}', {now}, '{payload}');\n",
            now = 1_780_000_000_000i64 + seq
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO batches (account_id, id, consumer, state, created_at, expires_at, event_count, seqs, closed_count) \
         VALUES (7, 'old-batch', 'old', 'open', 0, {}, 2, '[1,2]', 0);\n\
         INSERT INTO deliveries (account_id, trigger, event_id, payload, status, attempts, next_at, created_at, updated_at) \
         VALUES (7, 'BOUNCE', 'd-1', '{{}}', 'pending', 0, 0, 0, 0);\n",
        i64::MAX / 2
    ));
    if b == Backend::Postgres {
        // The previous version's sequences, past the rows written by hand.
        sql.push_str(
            "SELECT setval('accounts_id_seq', 7); SELECT setval('pull_queue_seq_seq', 6); \
             SELECT setval('deliveries_id_seq', 1);",
        );
    }
    common::exec_sql(b, &db_url, &sql);

    // The new version migrates at start.
    let app = common::spawn_app_on(b, &db_url, &[]).await;
    let r = app.post_empty("/v1/accounts/7/keys", ADMIN).await;
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let q = app.queue(&key).await;
    assert_eq!(
        (q["pending"].as_i64(), q["in_flight"].as_i64()),
        (Some(4), Some(2)),
        "{q}"
    );
    assert_eq!(q["triggers"]["CLICK"], json!({"pending": 1, "in_flight": 1}));
    assert_eq!(q["open_batches"][0]["batch_id"], "old-batch");
    // New events queue behind the old ones; the old batch's events stay
    // out of new batches.
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "new@x.test"}))
        .await;
    let got = app.fetch(&key, &json!({"size": 100, "consumer": "new"})).await;
    assert_eq!(
        recipients(&got),
        ["m3@x.test", "m4@x.test", "m5@x.test", "m6@x.test", "new@x.test"]
    );
    // The old batch is marked read like any other.
    let r = app.post_empty("/v1/batches/old-batch/read", &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);
    let id = got["batch_id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/batches/{id}/read"), &key).await.status(),
        200
    );
    let q = app.queue(&key).await;
    assert_eq!(
        (q["pending"].as_i64(), q["in_flight"].as_i64()),
        (Some(0), Some(0)),
        "{q}"
    );
    // The delivery is still there for the push worker.
    let d: Value = app.get("/v1/deliveries", &key).await.json().await.unwrap();
    assert_eq!(d["deliveries"].as_array().map(Vec::len), Some(1), "{d}");
}

/// Before `payload_once`, queue rows and deliveries held a copy of their
/// event's JSON, and the history was pruned after 7 days whatever the queue
/// held: the migration must keep every queued event and delivery, also those
/// whose history row is gone.
async fn payload_once_migration_keeps_every_queued_event_and_delivery(b: Backend) {
    use common::push::{eventually, Receiver};
    let (db_url, _tmp) = fresh_database(b);
    let _drop = common::drop_pg_later(b, &db_url);
    previous_schema(b, &db_url, &["payload_once"]);
    // Old UUIDv7-like ids (retention compares ids with the cutoff's).
    let uid = |name: &str| format!("00000000-0000-7000-8000-{name:0>12}");
    let event = |id: &str, trigger: &str, who: &str| {
        let id = uid(id);
        format!(
            r#"{{"id":"{id}","trigger":"{trigger}","occurred_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z","recipient":"{who}@x.test"}}"#
        )
    };
    // Months old: push backfill (7 days) does not take these again.
    let old = 1_767_225_600_000i64;
    let history = |id: &str, trigger: &str, who: &str| {
        format!(
            "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload) \
             VALUES (7, '{}', '{trigger}', {old}, NULL, '{}');\n",
            uid(id),
            event(id, trigger, who)
        )
    };
    let queued = |seq: i64, id: &str, trigger: &str, who: &str| {
        format!(
            "INSERT INTO pull_queue (account_id, seq, trigger, received_at, payload) \
             VALUES (7, {seq}, '{trigger}', {old}, '{}');\n",
            event(id, trigger, who)
        )
    };
    let delivery = |id: &str, who: &str| {
        format!(
            "INSERT INTO deliveries (account_id, trigger, event_id, payload, status, attempts, next_at, created_at, updated_at) \
             VALUES (7, 'BOUNCE', '{}', '{}', 'pending', 0, 0, {old}, {old});\n",
            uid(id),
            event(id, "BOUNCE", who)
        )
    };
    let mut sql = String::from("INSERT INTO accounts (id, name, created_at) VALUES (7, 'legacy', 0);\n");
    // Queued: q1 (held by an open batch) and q2 with their history rows,
    // q3 whose history row was pruned.
    sql += &(history("q1", "OPEN", "q1") + &queued(1, "q1", "OPEN", "q1"));
    sql += &(history("q2", "CLICK", "q2") + &queued(2, "q2", "CLICK", "q2"));
    sql += &queued(3, "q3", "OPEN", "q3");
    sql += "INSERT INTO queue_depth (account_id, trigger, events) VALUES (7, 'OPEN', 2), (7, 'CLICK', 1);\n";
    sql += &format!(
        "INSERT INTO batches (account_id, id, consumer, state, created_at, expires_at, event_count, seqs, \
         closed_count, pieces, trigger_counts) VALUES (7, 'held', 'old', 'open', 0, {}, 1, '[1]', 0, \
         '[[1,1,32767]]', '{{\"OPEN\":1}}');\n",
        i64::MAX / 2
    );
    // Pending deliveries: d1 with its history row, d2 without; and an
    // event in the history only (retention may delete it).
    sql += &(history("d1", "BOUNCE", "d1") + &delivery("d1", "d1") + &delivery("d2", "d2"));
    sql += &history("h1", "OPEN", "h1");
    if b == Backend::Postgres {
        sql += "SELECT setval('accounts_id_seq', 7); SELECT setval('pull_queue_seq_seq', 3);";
    }
    common::exec_sql(b, &db_url, &sql);

    // The new version migrates at start.
    let app = common::spawn_app_on(b, &db_url, &["--allow-private-targets", "--push-poll-interval", "20ms"]).await;
    // History retention with a cutoff of now keeps every event the queue
    // and the deliveries refer to: it deletes h1 only.
    let store = eventd::store::Store::connect(&db_url, 1).unwrap();
    let cutoff = eventd::domain::time::now_ms() + 1;
    assert_eq!(store.prune_history(cutoff, 2).unwrap(), 1);
    let r = app.post_empty("/v1/accounts/7/keys", ADMIN).await;
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let q = app.queue(&key).await;
    assert_eq!(
        (q["pending"].as_i64(), q["in_flight"].as_i64()),
        (Some(2), Some(1)),
        "{q}"
    );
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "new@x.test"}))
        .await;
    let got = app.fetch(&key, &json!({"size": 100, "consumer": "new"})).await;
    assert_eq!(recipients(&got), ["q2@x.test", "q3@x.test", "new@x.test"]);
    assert_eq!(got["events"][1]["id"], uid("q3"));
    let held = app.fetch(&key, &json!({"size": 100, "consumer": "old"})).await;
    assert_eq!(held["batch_id"], "held");
    assert_eq!(recipients(&held), ["q1@x.test"]);
    // Both deliveries are sent with their event, once the trigger has an
    // http destination again.
    let rx = Receiver::start().await;
    let r = app
        .put(
            "/v1/triggers/BOUNCE",
            &key,
            &json!({"destination": "http", "http": {"url": rx.url("b")}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let hits = eventually("2 delivered", || async {
        let h = rx.hits("b");
        (h.len() >= 2).then_some(h)
    })
    .await;
    let mut sent: Vec<String> = hits
        .iter()
        .map(|h| h.json()["recipient"].as_str().unwrap().to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, ["d1@x.test", "d2@x.test"]);
}

/// SQLite: the WAL is copied back into the database file in the background
/// while the server runs (a checkpoint thread, every 50 ms), not only once
/// a commit finds it past its limit (16 MiB), so ingest never waits for a
/// checkpoint and the file itself is at most moments behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_the_wal_back_in_the_background() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    let path = app.db_url.strip_prefix("sqlite://").unwrap_or(&app.db_url).to_string();
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap();
    // The account's commit is written back too; then 2,000 events (about a
    // megabyte, far below the limit).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = size();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = size();
        if now == before {
            break;
        }
        before = now;
    }
    app.ingest(&key, &common::opens(2000)).await;
    while size() <= before {
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {before} bytes: the WAL was not checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
