//! eventd benchmark: starts the release `eventd` binary on a fresh database,
//! drives it over HTTP and prints one line per figure (SPEC §8).
//!
//!     cargo bench --bench eventd_bench -- [--quick] [--backend sqlite|postgres|both] [--big N]
//!
//! `--quick` runs small sizes (under a minute, for smoke runs); `--big N`
//! adds the fetch/ack latency with N events pending (10,000,000 in SPEC §8);
//! `--big-only` skips the other figures.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::Client;
use serde_json::{json, Value};

const ADMIN: &str = "bench-operator";

struct Opts {
    quick: bool,
    backends: Vec<&'static str>,
    big: usize,
    /// Skip the standard figures; only the `--big` measurement.
    big_only: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let val = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let backends = match val("--backend").as_deref() {
        Some("sqlite") => vec!["sqlite"],
        Some("postgres") => vec!["postgres"],
        _ => vec!["sqlite", "postgres"],
    };
    Opts {
        quick: args.iter().any(|a| a == "--quick"),
        backends,
        big: val("--big").and_then(|v| v.parse().ok()).unwrap_or(0),
        big_only: args.iter().any(|a| a == "--big-only"),
    }
}

struct Server {
    child: Child,
    base: String,
    url: String,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(db) = &self.pg_db {
            if let Ok(mut c) =
                PgConnection::establish(&format!("{}/postgres?sslmode=disable&gssencmode=disable", pg_base()))
            {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut c);
            }
        }
    }
}

fn pg_base() -> String {
    std::env::var("EVENTD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn database(backend: &str, dir: &tempfile::TempDir) -> (String, Option<String>) {
    if backend == "sqlite" {
        return (dir.path().join("bench.db").to_string_lossy().into(), None);
    }
    let name = format!("eventd_bench_{}", std::process::id());
    let mut c = PgConnection::establish(&format!("{}/postgres?sslmode=disable&gssencmode=disable", pg_base()))
        .expect("PostgreSQL reachable");
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .unwrap();
    (
        format!("{}/{name}?sslmode=disable&gssencmode=disable", pg_base()),
        Some(name),
    )
}

async fn start(backend: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg_db) = database(backend, &dir);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_eventd"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
        ])
        .env("EVENTD_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("eventd starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        base,
        url,
        _dir: dir,
        pg_db,
    }
}

fn rss_peak_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn events(n: usize, offset: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"trigger": if i % 3 == 0 { "CLICK" } else { "OPEN" }, "recipient": format!("user{}@example.com", offset + i),
                       "campaign_id": "c-2026-11", "message_id": format!("m{}", offset + i),
                       "url": "https://example.com/landing?utm=bench", "ip": "192.0.2.10"})
            })
            .collect(),
    )
}

async fn account(client: &Client, base: &str, name: &str) -> String {
    let v: Value = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["api_key"].as_str().unwrap().to_string()
}

/// Ingests `total` events in requests of `per` with `conc` concurrent clients.
async fn ingest(client: &Client, base: &str, key: &str, total: usize, per: usize, conc: usize) -> f64 {
    let bodies: Vec<String> = (0..conc).map(|c| events(per, c * 1_000_000).to_string()).collect();
    let requests = total / per;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, body) in bodies.into_iter().enumerate() {
        let (client, url, key) = (client.clone(), format!("{base}/v1/events"), key.to_string());
        let mine = requests / conc + usize::from(c < requests % conc);
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (requests * per) as f64 / started.elapsed().as_secs_f64()
}

/// One fetch + mark read; returns (ms, events).
async fn fetch_ack(client: &Client, base: &str, key: &str, size: usize) -> (f64, usize) {
    let started = Instant::now();
    let v: Value = client
        .post(format!("{base}/v1/batches"))
        .bearer_auth(key)
        .json(&json!({"size": size}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = v["events"].as_array().map(|a| a.len()).unwrap_or(0);
    if let Some(id) = v["batch_id"].as_str() {
        let r = client
            .post(format!("{base}/v1/batches/{id}/read"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    (started.elapsed().as_secs_f64() * 1000.0, n)
}

/// One SOAP 1.1 fetchBatch + markBatchRead of a non-empty batch; returns ms.
async fn soap_fetch_ack(client: &Client, base: &str, key: &str, size: usize) -> f64 {
    let call = |op: String| {
        let body = format!(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:e="urn:eventd:eventNotification"><s:Body>{op}</s:Body></s:Envelope>"#
        );
        client
            .post(format!("{base}/soap/eventNotification"))
            .basic_auth("bench", Some(key))
            .header("content-type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
    };
    let started = Instant::now();
    let text = call(format!("<e:fetchBatch><e:size>{size}</e:size></e:fetchBatch>"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = text
        .split("batchId>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("")
        .to_string();
    assert!(!id.is_empty(), "SOAP fetch returned no batch: {text:.300}");
    let r = call(format!(
        "<e:markBatchRead><e:batchId>{id}</e:batchId></e:markBatchRead>"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    started.elapsed().as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(backend: &str, o: &Opts) {
    let server = start(backend).await;
    let pid = server.child.id();
    let client = Client::new();
    let base = server.base.clone();
    let key = account(&client, &base, "bench").await;
    let scale = if o.quick { 1 } else { 10 };

    if !o.big_only {
        let mut ingest_1000 = 0.0;
        for (per, conc, total) in [
            (1usize, 8usize, 2_000 * scale),
            (100, 4, 20_000 * scale),
            (1000, 4, 40_000 * scale),
        ] {
            let rate = ingest(&client, &base, &key, total, per, conc).await;
            ingest_1000 = rate;
            println!("{backend}\tingest batch={per:<5} clients={conc}\t{rate:>10.0} events/s");
        }
        // Empty the queue before measuring latencies.
        while fetch_ack(&client, &base, &key, 10_000).await.1 > 0 {}

        for size in [100usize, 1_000, 10_000] {
            let reps = if o.quick { 5 } else { 20 };
            ingest(&client, &base, &key, size * reps, size.min(1000), 2).await;
            let mut ms = Vec::new();
            for _ in 0..reps {
                let (t, n) = fetch_ack(&client, &base, &key, size).await;
                assert_eq!(n, size);
                ms.push(t);
            }
            println!(
                "{backend}\tfetch+read JSON size={size:<6}\tp50 {:>7.1} ms\tp99 {:>7.1} ms",
                pct(&mut ms, 0.5),
                pct(&mut ms, 0.99)
            );
            ingest(&client, &base, &key, size * reps, size.min(1000), 2).await;
            let mut ms = Vec::new();
            for _ in 0..reps {
                ms.push(soap_fetch_ack(&client, &base, &key, size).await);
            }
            println!(
                "{backend}\tfetch+read SOAP size={size:<6}\tp50 {:>7.1} ms\tp99 {:>7.1} ms",
                pct(&mut ms, 0.5),
                pct(&mut ms, 0.99)
            );
            // Whatever SOAP left (it is counted by the JSON drain below).
            while fetch_ack(&client, &base, &key, 10_000).await.1 > 0 {}
        }

        let drain = if o.quick { 100_000 } else { 1_000_000 };
        let floor_n = if o.quick { 50_000 } else { 200_000 };
        ingest(&client, &base, &key, drain, 1000, 4).await;
        let started = Instant::now();
        let mut got = 0;
        loop {
            let (_, n) = fetch_ack(&client, &base, &key, 10_000).await;
            if n == 0 {
                break;
            }
            got += n;
        }
        let drain_secs = started.elapsed().as_secs_f64();
        println!("{backend}\tdrain {got} events by 10,000\t{drain_secs:>7.2} s");

        // The raw floor: the same rows written and deleted by direct SQL on the
        // same database, in the same transaction sizes, with no HTTP or JSON.
        let (ins, del) = floor(&server.url, floor_n);
        println!("{backend}\tfloor: direct SQL insert (history + queue), 1,000/tx\t{ins:>10.0} events/s");
        println!("{backend}\tfloor: direct SQL select+delete by 10,000\t{del:>10.0} events/s");
        println!(
            "{backend}\teventd vs floor: ingest(1000) {:.0}%  drain {:.0}%",
            100.0 * ingest_1000 / ins,
            100.0 * (got as f64 / drain_secs) / del
        );
    }

    if o.big > 0 {
        let mut empty = Vec::new();
        for _ in 0..5 {
            ingest(&client, &base, &key, 10_000, 1000, 2).await;
            empty.push(fetch_ack(&client, &base, &key, 10_000).await.0);
        }
        let started = Instant::now();
        ingest(&client, &base, &key, o.big, 1000, 4).await;
        println!(
            "{backend}\tloaded {} pending in {:.0} s",
            o.big,
            started.elapsed().as_secs_f64()
        );
        let mut full = Vec::new();
        for _ in 0..5 {
            full.push(fetch_ack(&client, &base, &key, 10_000).await.0);
        }
        println!(
            "{backend}\tfetch+read 10,000 with {} pending\tp50 {:>7.1} ms (empty queue: {:.1} ms)",
            o.big,
            pct(&mut full, 0.5),
            pct(&mut empty, 0.5)
        );
    }
    println!("{backend}\tserver RSS peak\t{:>7.1} MB", rss_peak_mb(pid));
}

/// Direct SQL on the server's database: (insert events/s, drain events/s).
fn floor(url: &str, n: usize) -> (f64, f64) {
    use eventd::on_conn;
    let store = eventd::store::Store::connect(url, 1).expect("database");
    let account = 900_000_000i64;
    let payload = events(1, 0)[0].to_string().replace('\'', "''");
    let started = Instant::now();
    for chunk in 0..n / 1000 {
        let mut ev =
            String::from("INSERT INTO events (account_id, id, trigger, received_at, external_id, payload) VALUES ");
        let mut q = String::from("INSERT INTO pull_queue (account_id, trigger, received_at, payload) VALUES ");
        for i in 0..1000 {
            let sep = if i > 0 { "," } else { "" };
            ev.push_str(&format!(
                "{sep}({account}, '{}', 'OPEN', 0, NULL, '{payload}')",
                uuid::Uuid::now_v7()
            ));
            q.push_str(&format!("{sep}({account}, 'OPEN', {chunk}, '{payload}')"));
        }
        store
            .write(|conn| {
                on_conn!(conn, |c| {
                    diesel::sql_query(&ev).execute(c)?;
                    diesel::sql_query(&q).execute(c)?;
                });
                Ok(())
            })
            .expect("floor insert");
    }
    let ins = n as f64 / started.elapsed().as_secs_f64();

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    let started = Instant::now();
    let mut gone = 0usize;
    loop {
        let n = store
            .write(|conn| {
                let rows: Vec<Row> = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                    "SELECT seq, payload FROM pull_queue WHERE account_id = {account} ORDER BY seq LIMIT 10000"
                ))
                .load(c))?;
                let bytes: usize = rows.iter().map(|r| r.payload.len()).sum();
                assert!(bytes > 0 || rows.is_empty());
                if let Some(last) = rows.last() {
                    on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                        "DELETE FROM pull_queue WHERE account_id = {account} AND seq <= {}",
                        last.seq
                    ))
                    .execute(c))?;
                }
                Ok(rows.len())
            })
            .expect("floor drain");
        if n == 0 {
            break;
        }
        gone += n;
    }
    (ins, gone as f64 / started.elapsed().as_secs_f64())
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for b in o.backends.clone() {
        rt.block_on(run(b, &o));
    }
}
