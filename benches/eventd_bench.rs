//! eventd benchmark: starts the release `eventd` binary on a fresh database,
//! drives it over HTTP and prints one line per figure (SPEC §8).
//!
//!     cargo bench --bench eventd_bench -- [--quick] [--backend sqlite|postgres|both] [--big N]
//!
//! `--quick` runs small sizes (under a minute, for smoke runs); `--big N`
//! adds the fetch/ack latency with N events pending (10,000,000 in SPEC §8);
//! `--big-only` skips the other figures; `--ingest-only` runs only the
//! ingest figures (single events from 64 clients, batches of 100 and 1,000);
//! `--shapes-only` only the queue-shape figures (`GET /v1/queue` deep, a
//! one-trigger fetch behind other triggers, fetch while 30/100 consumers
//! hold batches); `--fetch-only` only fetch 10,000 + mark read (JSON), with
//! the p50 of its parts. `EVENTD_BENCH_BIN=path` benchmarks another eventd
//! binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::Client;
use serde_json::{json, Value};

const ADMIN: &str = "bench-operator-token-0123456789abcdef";

struct Opts {
    quick: bool,
    backends: Vec<&'static str>,
    big: usize,
    /// Skip the standard figures; only the `--big` measurement.
    big_only: bool,
    /// Only the ingest figures (single events with 64 clients, batches).
    ingest_only: bool,
    /// Only the queue-shape figures (status, filtered fetch, many consumers).
    shapes_only: bool,
    /// Only push end to end (`--push-only`).
    push_only: bool,
    /// Only fetch 10,000 + mark read, JSON, with its parts (`--fetch-only`).
    fetch_only: bool,
    /// Run the churn test with this many events (0: not run); alone.
    churn: usize,
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
        ingest_only: args.iter().any(|a| a == "--ingest-only"),
        shapes_only: args.iter().any(|a| a == "--shapes-only"),
        push_only: args.iter().any(|a| a == "--push-only"),
        fetch_only: args.iter().any(|a| a == "--fetch-only"),
        churn: val("--churn").and_then(|v| v.parse().ok()).unwrap_or(0),
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
    start_with(backend, &[]).await
}

/// Starts eventd on a fresh database with extra `serve` arguments. Push
/// to the bench's own receiver on 127.0.0.1 needs `--allow-private-targets`
/// (given always; it changes nothing else).
async fn start_with(backend: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg_db) = database(backend, &dir);
    let port = free_port();
    // EVENTD_BENCH_BIN runs another build (e.g. the previous version) for a
    // before/after comparison in the same conditions.
    let bin = std::env::var("EVENTD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_eventd").to_string());
    let child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
            "--allow-private-targets",
        ])
        .args(extra)
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
    events_of(n, offset, None)
}

/// Like [`events`], all of one trigger when `only` is given.
fn events_of(n: usize, offset: usize, only: Option<&str>) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let trigger = only.unwrap_or(if i % 3 == 0 { "CLICK" } else { "OPEN" });
                json!({"trigger": trigger, "recipient": format!("user{}@example.com", offset + i),
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
    ingest_timed(client, base, key, total, per, conc).await.0
}

/// Like [`ingest`]; also returns the p50 and p99 request latency in ms.
async fn ingest_timed(
    client: &Client,
    base: &str,
    key: &str,
    total: usize,
    per: usize,
    conc: usize,
) -> (f64, f64, f64) {
    ingest_of(client, base, key, total, per, conc, None).await
}

async fn ingest_of(
    client: &Client,
    base: &str,
    key: &str,
    total: usize,
    per: usize,
    conc: usize,
    only: Option<&str>,
) -> (f64, f64, f64) {
    let bodies: Vec<String> = (0..conc)
        .map(|c| events_of(per, c * 1_000_000, only).to_string())
        .collect();
    let requests = total / per;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, body) in bodies.into_iter().enumerate() {
        let (client, url, key) = (client.clone(), format!("{base}/v1/events"), key.to_string());
        let mine = requests / conc + usize::from(c < requests % conc);
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
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
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms
        }));
    }
    let mut ms = Vec::with_capacity(requests);
    for t in tasks {
        ms.extend(t.await.unwrap());
    }
    let rate = (requests * per) as f64 / started.elapsed().as_secs_f64();
    (rate, pct(&mut ms, 0.5), pct(&mut ms, 0.99))
}

/// Single-event ingest from `conc` keep-alive connections, each sending
/// `POST /v1/events` with one event per request and waiting for its answer
/// (what reqwest does, minus its per-request work: the request's bytes are
/// built once per connection and the answer is read by a minimal HTTP/1.1
/// parser, like a load generator such as wrk). On two shared cores the
/// client's CPU is taken from the server's. Returns (events/s, p50, p99).
async fn ingest_single_raw(base: &str, key: &str, total: usize, conc: usize) -> (f64, f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let body = events_of(1, c * 1_000_000, None).to_string();
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let mine = total / conc + usize::from(c < total % conc);
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut sock = tokio::net::TcpStream::connect(&host).await.unwrap();
            sock.set_nodelay(true).unwrap();
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            let mut ms = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
                sock.write_all(&request).await.unwrap();
                // The answer: status line and headers, then Content-Length bytes.
                let (end, len) = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = std::str::from_utf8(&buf[..i]).unwrap();
                        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
                        let len: usize = head
                            .split("\r\n")
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse().ok())?
                            })
                            .expect("content-length in the answer");
                        break (i + 4, len);
                    }
                    let at = buf.len();
                    buf.resize(at + 4096, 0);
                    let n = sock.read(&mut buf[at..]).await.unwrap();
                    assert!(n > 0, "eventd closed the connection");
                    buf.truncate(at + n);
                };
                while buf.len() < end + len {
                    let at = buf.len();
                    buf.resize(at + 4096, 0);
                    let n = sock.read(&mut buf[at..]).await.unwrap();
                    assert!(n > 0, "eventd closed the connection");
                    buf.truncate(at + n);
                }
                buf.drain(..end + len);
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms
        }));
    }
    let mut ms = Vec::with_capacity(total);
    for t in tasks {
        ms.extend(t.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, pct(&mut ms, 0.5), pct(&mut ms, 0.99))
}

/// One fetch + mark read; returns (ms, events).
async fn fetch_ack(client: &Client, base: &str, key: &str, size: usize) -> (f64, usize) {
    fetch_with(client, base, key, json!({"size": size}), "read").await
}

/// A batch as a consumer reads it: typed records, as a CRM client would
/// declare them (every field of SPEC's event; `data` kept as raw JSON), not
/// a generic JSON tree (which costs the client ~1.4 times as much to build
/// for 10,000 events; `--fetch-only` prints both).
#[derive(serde::Deserialize)]
struct BatchIn {
    batch_id: Option<String>,
    events: Vec<EventIn>,
}

#[allow(dead_code)] // read as a consumer would; the bench only counts them
#[derive(serde::Deserialize)]
struct EventIn {
    id: String,
    trigger: String,
    occurred_at: String,
    received_at: String,
    recipient: Option<String>,
    campaign_id: Option<String>,
    message_id: Option<String>,
    list_id: Option<String>,
    url: Option<String>,
    bounce_type: Option<String>,
    bounce_reason: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    external_id: Option<String>,
    data: Option<Box<serde_json::value::RawValue>>,
}

/// One fetch with `body`, then `then` ("read" or "release") on its batch;
/// returns (ms, events).
async fn fetch_with(client: &Client, base: &str, key: &str, body: Value, then: &str) -> (f64, usize) {
    let started = Instant::now();
    // A fetch again by the same consumer returns its open batch, and a
    // mark-read or release is idempotent, so a request on a keep-alive
    // connection the server was closing is simply sent again.
    let bytes = retried(|| client.post(format!("{base}/v1/batches")).bearer_auth(key).json(&body))
        .await
        .bytes()
        .await
        .unwrap();
    let v: BatchIn = serde_json::from_slice(&bytes).unwrap();
    let n = v.events.len();
    if let Some(id) = v.batch_id.as_deref().filter(|_| then != "none") {
        let r = retried(|| client.post(format!("{base}/v1/batches/{id}/{then}")).bearer_auth(key)).await;
        assert_eq!(r.status(), 200);
    }
    (started.elapsed().as_secs_f64() * 1000.0, n)
}

/// [`fetch_ack`] in parts, in ms: the fetch until its last byte, the
/// client's parse of the JSON (as `fetch_ack` does it), the mark-read.
async fn fetch_parts(client: &Client, base: &str, key: &str, size: usize) -> [f64; 4] {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let body = json!({"size": size});
    let bytes = retried(|| client.post(format!("{base}/v1/batches")).bearer_auth(key).json(&body))
        .await
        .bytes()
        .await
        .unwrap();
    let fetch = ms(t);
    let t = Instant::now();
    let v: BatchIn = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v.events.len(), size);
    let parse = ms(t);
    // For comparison only (not in the total): the same bytes as a generic
    // JSON tree, as the bench parsed them before.
    let t = Instant::now();
    let tree: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(tree["events"].as_array().map(|a| a.len()), Some(size));
    let tree_ms = ms(t);
    let t = Instant::now();
    let id = v.batch_id.as_deref().unwrap();
    let r = retried(|| client.post(format!("{base}/v1/batches/{id}/read")).bearer_auth(key)).await;
    assert_eq!(r.status(), 200);
    [fetch, parse, ms(t), tree_ms]
}

/// Sends a request, again (up to 3 times) if the connection failed.
async fn retried(make: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    let mut tries = 0;
    loop {
        match make().send().await {
            Ok(r) => return r,
            Err(e) if tries < 3 && (e.is_request() || e.is_connect()) => tries += 1,
            Err(e) => panic!("request failed: {e}"),
        }
    }
}

/// p50 of `reps` runs of `f`, in ms.
async fn p50_of<F, Fut>(reps: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        ms.push(f().await);
    }
    pct(&mut ms, 0.5)
}

/// The queue-shape figures of issue 13, each on a fresh account: status with
/// `deep` pending, a one-trigger fetch behind `deep` events of another
/// trigger, and fetch+read of `size` while 30 and 100 other consumers each
/// hold an open batch of `size`.
async fn shapes(client: &Client, base: &str, backend: &str, deep: usize, size: usize) {
    let key = account(client, base, "shapes-deep").await;
    ingest_of(client, base, &key, deep, 1000, 4, Some("OPEN")).await;
    ingest_of(client, base, &key, 10, 10, 1, Some("CLICK")).await;
    let status = p50_of(9, || async {
        let t = Instant::now();
        let r = client
            .get(format!("{base}/v1/queue"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        t.elapsed().as_secs_f64() * 1000.0
    })
    .await;
    println!("{backend}\tGET /v1/queue with {deep} pending\tp50 {status:>7.1} ms");
    let filtered = p50_of(9, || async {
        let body = json!({"size": 10, "triggers": ["CLICK"], "consumer": "f"});
        let (ms, n) = fetch_with(client, base, &key, body, "release").await;
        assert_eq!(n, 10);
        ms
    })
    .await;
    let unfiltered = p50_of(9, || async {
        let (ms, n) = fetch_with(client, base, &key, json!({"size": 10, "consumer": "u"}), "release").await;
        assert_eq!(n, 10);
        ms
    })
    .await;
    println!(
        "{backend}\tfetch 10 CLICK behind {deep} OPEN (+release)\tp50 {filtered:>7.1} ms (unfiltered: {unfiltered:.1} ms, {:.1}x)",
        filtered / unfiltered
    );

    for holders in [30usize, 100] {
        let key = account(client, base, &format!("shapes-held-{holders}")).await;
        let reps = 5;
        ingest_of(client, base, &key, size * (holders + 2 * reps), 1000.min(size), 4, None).await;
        let one = |consumer: &'static str| {
            let key = key.clone();
            async move {
                let (ms, n) = fetch_with(client, base, &key, json!({"size": size, "consumer": consumer}), "read").await;
                assert_eq!(n, size);
                ms
            }
        };
        let none_held = p50_of(reps, || one("x")).await;
        for h in 0..holders {
            let (_, n) = fetch_with(
                client,
                base,
                &key,
                json!({"size": size, "consumer": format!("holder{h}")}),
                "none",
            )
            .await;
            assert_eq!(n, size);
        }
        let held = p50_of(reps, || one("x")).await;
        println!(
            "{backend}\tfetch+read {size} while {holders} consumers hold {size} each\tp50 {held:>7.1} ms (none held: {none_held:.1} ms, {:.2}x)",
            held / none_held
        );
    }
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

    let push_n = if o.quick { 10_000 } else { 100_000 };
    if o.push_only {
        let (rate, floor) = push_e2e(&client, &base, push_n).await;
        println!("{backend}\tTABLE push end to end, batch_size 1, {push_n} events\t{rate:>8.0} deliveries/s\tfloor (plain client -> receiver, 32 connections) {floor:.0}/s");
        println!("{backend}	server RSS peak\t{:>7.1} MB", rss_peak_mb(pid));
        return;
    }
    if o.fetch_only {
        let reps = if o.quick { 5 } else { 20 };
        ingest(&client, &base, &key, 10_000 * reps, 1000, 2).await;
        let (mut total, mut fetch, mut parse, mut read, mut tree) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let p = fetch_parts(&client, &base, &key, 10_000).await;
            total.push(p[0] + p[1] + p[2]);
            fetch.push(p[0]);
            parse.push(p[1]);
            read.push(p[2]);
            tree.push(p[3]);
        }
        println!(
            "{backend}	TABLE fetch 10,000 + mark read, JSON	p50 {:>6.1} ms	p99 {:>6.1} ms	(p50 of the parts: fetch to last byte {:.1} ms, client parse into typed events {:.1} ms, mark read {:.1} ms; not counted: the same parse into a generic JSON tree {:.1} ms)",
            pct(&mut total, 0.5),
            pct(&mut total, 0.99),
            pct(&mut fetch, 0.5),
            pct(&mut parse, 0.5),
            pct(&mut read, 0.5),
            pct(&mut tree, 0.5)
        );
        println!("{backend}	server RSS peak\t{:>7.1} MB", rss_peak_mb(pid));
        return;
    }
    if o.shapes_only {
        let (deep, size) = if o.quick { (50_000, 1_000) } else { (500_000, 10_000) };
        shapes(&client, &base, backend, deep, size).await;
        println!("{backend}\tserver RSS peak\t{:>7.1} MB", rss_peak_mb(pid));
        return;
    }
    if !o.big_only {
        let mut ingest_1000 = 0.0;
        let mut single = (0.0, 0.0);
        for (per, conc, total) in [
            (1usize, 64usize, 10_000 * scale),
            (100, 4, 20_000 * scale),
            (1000, 4, 40_000 * scale),
        ] {
            let (rate, p50, p99) = if per == 1 {
                ingest_single_raw(&base, &key, total, conc).await
            } else {
                ingest_timed(&client, &base, &key, total, per, conc).await
            };
            ingest_1000 = rate;
            if per == 1 {
                single = (rate, p99);
            }
            println!(
                "{backend}\tingest batch={per:<5} clients={conc:<3}\t{rate:>10.0} events/s\trequest p50 {p50:>6.1} ms  p99 {p99:>6.1} ms"
            );
        }
        if o.ingest_only {
            println!("{backend}\tserver RSS peak\t{:>7.1} MB", rss_peak_mb(pid));
            return;
        }
        // Empty the queue before measuring latencies.
        while fetch_ack(&client, &base, &key, 10_000).await.1 > 0 {}

        let mut json_10000 = 0.0;
        for size in [100usize, 1_000, 10_000] {
            let reps = if o.quick { 5 } else { 20 };
            ingest(&client, &base, &key, size * reps, size.min(1000), 2).await;
            let mut ms = Vec::new();
            for _ in 0..reps {
                let (t, n) = fetch_ack(&client, &base, &key, size).await;
                assert_eq!(n, size);
                ms.push(t);
            }
            json_10000 = pct(&mut ms, 0.5);
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
        let conns = if backend == "sqlite" { 1 } else { 8 };
        let one = floor_single(&server.url, if o.quick { 2_000 } else { 20_000 }, conns);
        let (push, push_floor) = push_e2e(&client, &base, push_n).await;
        // The issue's table, each figure beside its floor.
        println!(
            "{backend}\tTABLE ingest, one event per request, 64 clients\t{:>8.0} events/s p99 {:.1} ms\tfloor (direct SQL, one event per transaction, {conns} connection(s)) {one:.0} events/s",
            single.0, single.1
        );
        println!("{backend}\tTABLE ingest, batches of 1,000, 4 clients\t{ingest_1000:>8.0} events/s\tfloor (direct SQL, 1,000 per transaction) {ins:.0} events/s");
        println!(
            "{backend}\tTABLE fetch 10,000 + mark read, JSON\tp50 {json_10000:>6.1} ms\tfloor (direct SQL select + payloads + delete of 10,000) {:.1} ms",
            10_000.0 / del * 1000.0
        );
        println!("{backend}\tTABLE push end to end, batch_size 1, {push_n} events\t{push:>8.0} deliveries/s\tfloor (plain client -> receiver, 32 connections) {push_floor:.0}/s");
        let (deep, size) = if o.quick { (50_000, 1_000) } else { (500_000, 10_000) };
        shapes(&client, &base, backend, deep, size).await;
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
/// The rows are those eventd writes: the history row with the payload and
/// a narrow queue row referring to it.
fn floor(url: &str, n: usize) -> (f64, f64) {
    use eventd::on_conn;
    let store = eventd::store::Store::connect(url, 1).expect("database");
    let account = 900_000_000i64;
    // Seqs of their own (SQLite numbers every account's rows in one series).
    let base = 1_000_000_000_000i64;
    let payload = events(1, 0)[0].to_string().replace('\'', "''");
    let started = Instant::now();
    for chunk in 0..n / 1000 {
        let mut ev = String::from(
            "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload, seq) VALUES ",
        );
        let mut q = String::from("INSERT INTO pull_queue (account_id, seq, trigger, received_at, event_id) VALUES ");
        for i in 0..1000 {
            let sep = if i > 0 { "," } else { "" };
            let id = uuid::Uuid::now_v7();
            let seq = base + (chunk * 1000 + i) as i64;
            ev.push_str(&format!(
                "{sep}({account}, '{id}', 'OPEN', 0, NULL, '{payload}', {seq})"
            ));
            q.push_str(&format!("{sep}({account}, {seq}, 'OPEN', {chunk}, '{id}')"));
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
        event_id: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    let started = Instant::now();
    let mut gone = 0usize;
    loop {
        let n = store
            .write(|conn| {
                let rows: Vec<Row> = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                    "SELECT seq, event_id FROM pull_queue WHERE account_id = {account} ORDER BY seq LIMIT 10000"
                ))
                .load(c))?;
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                    return Ok(0);
                };
                let payloads: Vec<Payload> = on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                    "SELECT payload FROM events WHERE account_id = {account} AND id >= '{}' AND id <= '{}' ORDER BY id",
                    first.event_id, last.event_id
                ))
                .load(c))?;
                let bytes: usize = payloads.iter().map(|r| r.payload.len()).sum();
                assert!(bytes > 0);
                on_conn!(&mut *conn, |c| diesel::sql_query(format!(
                    "DELETE FROM pull_queue WHERE account_id = {account} AND seq <= {}",
                    last.seq
                ))
                .execute(c))?;
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

/// Direct SQL, one event (history + queue row) per transaction from `conns`
/// threads at once (SQLite: one writer): events/s. What ingest would cost
/// without group commit.
fn floor_single(url: &str, n: usize, conns: usize) -> f64 {
    use eventd::on_conn;
    let store = eventd::store::Store::connect(url, conns as u32).expect("database");
    let payload = events(1, 0)[0].to_string().replace('\'', "''");
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|t| {
            let (store, payload) = (store.clone(), payload.clone());
            std::thread::spawn(move || {
                for i in 0..n / conns {
                    let id = uuid::Uuid::now_v7();
                    let seq = 2_000_000_000_000i64 + (t * 10_000_000 + i) as i64;
                    store
                        .write(|conn| {
                            on_conn!(conn, |c| {
                                diesel::sql_query(format!(
                                    "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload, seq) \
                                     VALUES (900000001, '{id}', 'OPEN', 0, NULL, '{payload}', {seq})"
                                ))
                                .execute(c)?;
                                diesel::sql_query(format!(
                                    "INSERT INTO pull_queue (account_id, seq, trigger, received_at, event_id) \
                                     VALUES (900000001, {seq}, 'OPEN', 0, '{id}')"
                                ))
                                .execute(c)?;
                            });
                            Ok(())
                        })
                        .expect("floor single insert");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (n / conns * conns) as f64 / started.elapsed().as_secs_f64()
}

/// A minimal HTTP/1.1 receiver answering 200 with an empty body to every
/// request (keep-alive), counting requests: the cheapest possible push
/// target, like an nginx `return 200`. Returns its base URL and the count.
async fn receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + len);
                    seen.fetch_add(1, Ordering::Relaxed);
                    if sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

/// Push end to end with the default push settings and `batch_size` 1: an
/// http destination for OPEN on the bench receiver, `n` events ingested
/// (batches of 1,000, 4 clients), timed from the first ingest request to
/// the receiver's last request. Floor: the same number of POSTs sent
/// straight to the receiver by a plain client with 32 connections (the
/// default per-destination concurrency). Returns (deliveries/s, floor/s).
async fn push_e2e(client: &Client, base: &str, n: usize) -> (f64, f64) {
    use std::sync::atomic::Ordering;
    let (url, count) = receiver().await;
    let key = account(client, base, "push-e2e").await;
    let r = client
        .put(format!("{base}/v1/triggers/OPEN"))
        .bearer_auth(&key)
        .json(&json!({"destination": "http", "http": {"url": format!("{url}/hook")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let started = Instant::now();
    ingest_of(client, base, &key, n, 1000, 4, Some("OPEN")).await;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while count.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "push did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();

    let (url2, count2) = receiver().await;
    let body = events_of(1, 0, Some("OPEN"))[0].to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (c, url, body) = (Client::new(), format!("{url2}/hook"), body.clone());
            tokio::spawn(async move {
                for _ in 0..n / 32 {
                    let r = c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let floor = count2.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, floor)
}

/// Bytes the database takes: SQLite, the file and its WAL; PostgreSQL,
/// the database and (queue) `pull_queue` with its indexes and `batches`.
fn db_size(url: &str) -> (u64, u64) {
    if !url.starts_with("postgres") {
        let f = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        return (f(url.to_string()) + f(format!("{url}-wal")), 0);
    }
    #[derive(diesel::QueryableByName)]
    struct Sizes {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        db: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        queue: i64,
    }
    let mut c = PgConnection::establish(url).expect("database");
    let s: Sizes = diesel::sql_query(
        "SELECT pg_database_size(current_database()) AS db, \
         pg_total_relation_size('pull_queue') + pg_total_relation_size('batches') AS queue",
    )
    .get_result(&mut c)
    .expect("sizes");
    (s.db as u64, s.queue as u64)
}

/// Churn: `n` events through the queue while it is read, on a server with
/// `--history-days 0` (what is read leaves the history at the next
/// maintenance, every 10 s), so that only bloat could make it grow. Four
/// producers ingest batches of 1,000 while a consumer fetches and reads
/// batches of 10,000; producers pause while more than 200,000 are pending.
/// One line per million ingested: database size, ingest rate and fetch+read
/// p50 over that million.
async fn churn(backend: &str, n: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let server = start_with(backend, &["--history-days", "0", "--maintenance-interval", "10s"]).await;
    let client = Client::new();
    let base = server.base.clone();
    let key = account(&client, &base, "churn").await;
    let (ingested, consumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let fetches: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut tasks = Vec::new();
    for p in 0..4 {
        let (client, base, key, ingested, consumed) = (
            client.clone(),
            base.clone(),
            key.clone(),
            ingested.clone(),
            consumed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = events_of(1000, p * 1_000_000, None).to_string();
            while ingested.fetch_add(1000, Ordering::SeqCst) + 1000 <= n {
                while ingested
                    .load(Ordering::SeqCst)
                    .saturating_sub(consumed.load(Ordering::SeqCst))
                    > 200_000
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    {
        let (client, base, key, ingested, consumed, fetches) = (
            client.clone(),
            base.clone(),
            key.clone(),
            ingested.clone(),
            consumed.clone(),
            fetches.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while consumed.load(Ordering::SeqCst) < n / 1000 * 1000 {
                // Fetch full batches: wait until 10,000 are committed (up to
                // four requests of 1,000 may be in flight), except at the end.
                let backlog = ingested
                    .load(Ordering::SeqCst)
                    .min(n)
                    .saturating_sub(consumed.load(Ordering::SeqCst));
                if backlog < 14_000 && ingested.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let (ms, got) = fetch_ack(&client, &base, &key, 10_000).await;
                if got == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                consumed.fetch_add(got, Ordering::SeqCst);
                if got == 10_000 {
                    fetches.lock().unwrap().push(ms);
                }
            }
        }));
    }
    let started = Instant::now();
    let (mut mark, mut last) = (1_000_000usize, started);
    while mark <= n {
        // The events of this million are committed when the next are asked for.
        if ingested.load(Ordering::SeqCst).min(n) >= mark {
            let now = Instant::now();
            let mut ms = std::mem::take(&mut *fetches.lock().unwrap());
            let p50 = if ms.is_empty() { f64::NAN } else { pct(&mut ms, 0.5) };
            let (db, queue) = db_size(&server.url);
            println!(
                "{backend}\tchurn million {:>3}\tingest {:>8.0} events/s\tfetch+read 10,000 p50 {p50:>6.1} ms\tdb {:>7.1} MB\tqueue tables {:>6.1} MB\tpending {}",
                mark / 1_000_000,
                1_000_000.0 / (now - last).as_secs_f64(),
                db as f64 / 1e6,
                queue as f64 / 1e6,
                ingested.load(Ordering::SeqCst).min(n) - consumed.load(Ordering::SeqCst).min(n),
            );
            last = now;
            mark += 1_000_000;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{backend}\tchurn {n} events through the queue\t{:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (ins, del) = floor(&server.url, 200_000);
    println!("{backend}\tchurn floor: direct SQL insert 1,000/tx {ins:.0} events/s, select+delete by 10,000 {del:.0} events/s");
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for b in o.backends.clone() {
        if o.churn > 0 {
            rt.block_on(churn(b, o.churn));
        } else {
            rt.block_on(run(b, &o));
        }
    }
}
