//! Several nodes (docs/RELIABILITY.md): three `eventd serve` processes on
//! one PostgreSQL database, started at once. Consumers fetching through
//! different nodes at once get disjoint batches; a long poll on one node
//! answers when another node ingests (LISTEN/NOTIFY); the push workers of
//! every node never send one delivery twice at once, even with requests
//! longer than the lease (the heartbeat renews it); a node SIGKILLed
//! mid-work loses nothing. And, on both backends: a worker killed with a
//! request in flight sees it sent again by another after its short lease.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{Ledger, Node, Workload, PUSH};
use common::push::{deliveries, eventually, push_to, Mode, Receiver};
use common::{eventd_command, fresh_database, metric, spawn_app_with, Backend, ADMIN};
use serde_json::{json, Value};

both!(a_killed_workers_request_is_sent_again_after_its_lease);

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_postgresql_database() {
    if common::skip_postgres() {
        return;
    }
    let (db, _) = fresh_database(Backend::Postgres);
    let _pg = common::drop_pg_later(Backend::Postgres, &db);
    let logs = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ledger = Ledger::start().await;
    let flags = [
        "--push-retry-schedule",
        "50ms*1000",
        "--push-poll-interval",
        "20ms",
        "--push-lease",
        "1s",
        "--push-destination-concurrency",
        "4",
    ];
    // Started at once: one applies the migrations, the others wait for it.
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&db, logs.path(), &flags)).collect();
    for n in &nodes {
        n.up(&client).await;
        assert_eq!(client.get(n.url("/readyz")).send().await.unwrap().status(), 200);
    }
    let applied = nodes
        .iter()
        .filter(|n| {
            std::fs::read_to_string(&n.log)
                .unwrap()
                .contains("database migrations applied")
        })
        .count();
    assert_eq!(applied, 1, "exactly one node applies the migrations");
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    disjoint_batches_through_different_nodes(&client, &bases).await;
    long_poll_wakes_on_ingest_through_another_node(&client, &bases).await;
    push_is_never_sent_twice_at_once(&client, &bases, &ledger).await;

    // A node SIGKILLed mid-work: nothing acknowledged is lost.
    ledger.set_delay(0, 100);
    ledger
        .state
        .fail_per_mille
        .store(100, std::sync::atomic::Ordering::Relaxed);
    let work = Workload::setup(&bases[0], &ledger, 2).await;
    work.set_targets(bases.clone());
    let tasks = work.run(3, 3, rand::random());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    nodes[2].kill();
    work.set_targets(bases[..2].to_vec());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let summary = work.drain_and_check(&ledger, tasks).await;
    eprintln!("three nodes, one killed: {summary}");
}

/// Consumers fetching through different nodes at once get disjoint batches.
async fn disjoint_batches_through_different_nodes(client: &reqwest::Client, bases: &[String]) {
    let key = account(client, &bases[0]).await;
    let total = 3000;
    for (i, chunk) in (0..total).collect::<Vec<_>>().chunks(100).enumerate() {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"trigger": "OPEN", "recipient": format!("d{n}@x.test")}))
            .collect();
        let r = client
            .post(format!("{}/v1/events", bases[i % 3]))
            .bearer_auth(&key)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let key = Arc::new(key);
    let consumers: Vec<_> = (0..6)
        .map(|c| {
            let (client, key, base) = (client.clone(), key.clone(), bases[c % 3].clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let r = client
                        .post(format!("{base}/v1/batches"))
                        .bearer_auth(&*key)
                        .json(&json!({"consumer": format!("c{c}"), "size": 41}))
                        .send()
                        .await
                        .unwrap();
                    let v = json_of(r).await;
                    let Some(id) = v["batch_id"].as_str() else {
                        return got;
                    };
                    for e in v["events"].as_array().unwrap() {
                        got.push(e["recipient"].as_str().unwrap().to_string());
                    }
                    let r = client
                        .post(format!("{base}/v1/batches/{id}/read"))
                        .bearer_auth(&*key)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_consumer = Vec::new();
    for c in consumers {
        let got = c.await.unwrap();
        per_consumer.push(got.len());
        for r in got {
            *seen.entry(r).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), total, "every event fetched");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events in two batches, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(
        per_consumer.iter().filter(|n| **n > 0).count() > 1,
        "the consumers shared the work: {per_consumer:?}"
    );
}

/// A long poll on one node answers within a second of an ingest through
/// another (the database re-check of a waiting long poll is 5 s apart).
async fn long_poll_wakes_on_ingest_through_another_node(client: &reqwest::Client, bases: &[String]) {
    let key = account(client, &bases[0]).await;
    for round in 0..3 {
        let (poll_at, ingest_at) = (&bases[round], &bases[(round + 1) % 3]);
        let poll = {
            let (client, key, url) = (client.clone(), key.clone(), format!("{poll_at}/v1/batches"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(&key)
                    .json(&json!({"wait_seconds": 20}))
                    .send()
                    .await
                    .unwrap();
                (json_of(r).await, Instant::now())
            })
        };
        common::until("the long poll waits", Duration::from_secs(30), || async {
            let text = client
                .get(format!("{poll_at}/metrics"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (metric(&text, "eventd_long_poll_waiters") == 1.0).then_some(())
        })
        .await;
        let sent = Instant::now();
        let r = client
            .post(format!("{ingest_at}/v1/events"))
            .bearer_auth(&key)
            .json(&json!({"trigger": "OPEN", "recipient": format!("lp{round}@x.test")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let (batch, answered) = poll.await.unwrap();
        assert_eq!(batch["events"][0]["recipient"], format!("lp{round}@x.test"));
        let waited = answered - sent;
        assert!(
            waited < Duration::from_secs(1),
            "round {round}: answered {waited:?} after the ingest"
        );
        let id = batch["batch_id"].as_str().unwrap();
        let r = client
            .post(format!("{poll_at}/v1/batches/{id}/read"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Requests last longer than the 1 s lease, and every node's worker wants
/// the work: the receiver never sees one event in two requests at once.
async fn push_is_never_sent_twice_at_once(client: &reqwest::Client, bases: &[String], ledger: &Ledger) {
    ledger.set_delay(1100, 1400);
    let key = account(client, &bases[0]).await;
    let r = client
        .put(format!("{}/v1/triggers/{PUSH}", bases[1]))
        .bearer_auth(&key)
        .json(&json!({"destination": "http", "http": {"url": ledger.url(), "timeout_seconds": 10}}))
        .send()
        .await
        .unwrap();
    json_of(r).await;
    let total = 60;
    for n in 0..total {
        let r = client
            .post(format!("{}/v1/events", bases[n % 3]))
            .bearer_auth(&key)
            .json(&json!({"trigger": PUSH, "recipient": format!("p{n}@x.test")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    common::until("every push answered 2xx", Duration::from_secs(90), || async {
        let ok = ledger.state.ok_recipients.lock().unwrap();
        (0..total).all(|n| ok.contains(&format!("p{n}@x.test"))).then_some(())
    })
    .await;
    assert_eq!(ledger.overlaps(), Vec::<String>::new(), "sent twice at the same time");
}

async fn account(client: &reqwest::Client, base: &str) -> String {
    let r = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": format!("n{}", common::free_port())}))
        .send()
        .await
        .unwrap();
    json_of(r).await["api_key"].as_str().unwrap().to_string()
}

/// A worker SIGKILLed while its request hangs: another worker sends the
/// delivery again once the killed one's lease (2 s here) ends, not after
/// minutes.
async fn a_killed_workers_request_is_sent_again_after_its_lease(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("hook", Mode::Hang);
    let app = spawn_app_with(b, &["--no-worker", "--allow-private-targets"]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(
        &app,
        &key,
        "OPEN",
        json!({"url": rx.url("hook"), "timeout_seconds": 60}),
    )
    .await;
    app.ingest(&key, &common::opens(1)).await;
    let worker = || {
        KillOnDrop(
            eventd_command()
                .args(["worker", "--database-url", &app.db_url, "--allow-private-targets"])
                .args(["--push-poll-interval", "20ms", "--push-lease", "2s"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let first = worker();
    eventually("the first request", || async {
        (rx.hits("hook").len() == 1).then_some(())
    })
    .await;
    rx.set("hook", Mode::Status(200));
    drop(first);
    let second = worker();
    let list = eventually("the delivery sent again and delivered", || async {
        let list = deliveries(&app, &key, "").await;
        (list[0]["status"] == "delivered").then_some(list)
    })
    .await;
    drop(second);
    assert_eq!(rx.hits("hook").len(), 2, "sent once by each worker");
    assert_eq!(list[0]["attempts"], 1, "the killed worker's attempt was never recorded");
}

/// A worker process SIGKILLed when dropped (also when the test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
