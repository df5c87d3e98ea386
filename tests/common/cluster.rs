//! For the tests of several nodes and of crashes: `eventd serve` processes
//! killed with SIGKILL at will, a push receiver that keeps a ledger (which
//! events it answered 2xx; whether one event was ever in two requests at the
//! same time), and a workload of ingest, fetch/mark-read and push that checks
//! the promises as it goes and at the end:
//! - every event acknowledged with 202 is delivered (fetched, or answered
//!   2xx by the receiver);
//! - no event is in two open batches at once, nor fetched again after its
//!   batch was marked read;
//! - no delivery is marked delivered without a 2xx from the receiver, and
//!   none is sent twice at the same time.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{free_port, serve_command, ADMIN};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One `eventd serve` process; SIGKILLed when dropped.
pub struct Node {
    pub port: u16,
    pub base: String,
    pub log: PathBuf,
    child: Child,
}

impl Node {
    /// Starts `eventd serve` on a free port, its log in `dir`.
    pub fn start(db_url: &str, dir: &std::path::Path, extra: &[&str]) -> Node {
        let port = free_port();
        let log = dir.join(format!("node-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = serve_command(db_url, port, &["--db-pool-size", "6", "--allow-private-targets"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(file)
            .spawn()
            .expect("eventd binary starts");
        Node {
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    /// Waits until it answers /healthz (fails with its log otherwise).
    pub async fn up(&self, client: &reqwest::Client) {
        for _ in 0..600 {
            if client.get(self.url("/healthz")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "node on port {} did not come up in 30 s; its log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the ledger receiver saw.
#[derive(Default)]
pub struct LedgerState {
    /// Event id → requests carrying it that are being answered now.
    in_flight: Mutex<HashMap<String, u32>>,
    /// Event ids seen in two requests at the same time.
    pub overlaps: Mutex<Vec<String>>,
    /// Event ids answered 2xx, and their recipients.
    pub ok_ids: Mutex<HashSet<String>>,
    pub ok_recipients: Mutex<HashSet<String>>,
    pub requests: AtomicU64,
    /// Per mille of requests answered 500.
    pub fail_per_mille: AtomicU32,
    /// Each answer waits between these many milliseconds.
    pub delay_min_ms: AtomicU64,
    pub delay_max_ms: AtomicU64,
}

/// Decrements an event's in-flight count however the request ends (its
/// sender may drop the connection: then actix drops the handler).
struct InFlight(Arc<LedgerState>, Vec<String>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = lock(&self.0.in_flight);
        for id in &self.1 {
            if let Some(n) = m.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    m.remove(id);
                }
            }
        }
    }
}

async fn ledger_receive(body: web::Bytes, st: web::Data<Arc<LedgerState>>) -> HttpResponse {
    let st: Arc<LedgerState> = st.get_ref().clone();
    st.requests.fetch_add(1, Ordering::Relaxed);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let events: Vec<Value> = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let ids: Vec<String> = events
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    {
        let mut m = lock(&st.in_flight);
        for id in &ids {
            let n = m.entry(id.clone()).or_default();
            if *n > 0 {
                lock(&st.overlaps).push(id.clone());
            }
            *n += 1;
        }
    }
    let _guard = InFlight(st.clone(), ids.clone());
    let (lo, hi) = (
        st.delay_min_ms.load(Ordering::Relaxed),
        st.delay_max_ms.load(Ordering::Relaxed),
    );
    let (delay, fail) = {
        let mut rng = rand::thread_rng();
        (
            if hi > lo { rng.gen_range(lo..=hi) } else { lo },
            rng.gen_range(0..1000) < st.fail_per_mille.load(Ordering::Relaxed),
        )
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fail {
        return HttpResponse::InternalServerError().body("try again");
    }
    // Recorded before the answer leaves: a 2xx the sender may never see
    // (it died) counts as seen here, which only makes the checks stricter.
    lock(&st.ok_ids).extend(ids);
    lock(&st.ok_recipients).extend(events.iter().filter_map(|e| e["recipient"].as_str().map(String::from)));
    HttpResponse::Ok().body("ok")
}

pub struct Ledger {
    pub port: u16,
    pub state: Arc<LedgerState>,
}

impl Ledger {
    pub async fn start() -> Ledger {
        let state = Arc::new(LedgerState::default());
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(ledger_receive))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Ledger { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn set_delay(&self, min_ms: u64, max_ms: u64) {
        self.state.delay_min_ms.store(min_ms, Ordering::Relaxed);
        self.state.delay_max_ms.store(max_ms, Ordering::Relaxed);
    }

    pub fn overlaps(&self) -> Vec<String> {
        lock(&self.state.overlaps).clone()
    }
}

/// A batch as a consumer last knew it.
#[derive(Debug, Clone)]
struct Held {
    batch: String,
    expires_at_ms: i64,
    /// Released, or a release was sent (its outcome maybe unknown): its
    /// events may be fetched again at once.
    released: bool,
    /// Marked read with a 200: its events are gone for good.
    read: bool,
}

/// Ingest, fetch/mark-read and push through whichever nodes are listed in
/// `targets`, recording what the promises are checked against.
pub struct Workload {
    pub key: String,
    /// Base URLs to use, round robin (the test changes them as nodes die
    /// and come back).
    pub targets: RwLock<Vec<String>>,
    client: reqwest::Client,
    next: AtomicU64,
    pub lease_seconds: u64,
    stop_ingest: AtomicBool,
    stop_consume: AtomicBool,
    /// Recipients of events answered 202, by trigger kind.
    pub acked_pull: Mutex<HashSet<String>>,
    pub acked_push: Mutex<HashSet<String>>,
    /// Pull events fetched at least once, and how often in all.
    pub fetched: Mutex<HashSet<String>>,
    pub fetches: AtomicU64,
    holder: Mutex<HashMap<String, Held>>,
    pub violations: Mutex<Vec<String>>,
    pub requests_failed: AtomicU64,
}

/// The pull trigger and the push trigger of the workload.
pub const PULL: &str = "OPEN";
pub const PUSH: &str = "CLICK";

impl Workload {
    /// Creates an account through `node` and sends CLICK to the ledger (a
    /// retry schedule of its own, so nothing dies).
    pub async fn setup(node: &str, ledger: &Ledger, lease_seconds: u64) -> Arc<Workload> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let r = client
            .post(format!("{node}/v1/accounts"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": format!("acct{}", free_port())}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let key = r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string();
        let r = client
            .put(format!("{node}/v1/triggers/{PUSH}"))
            .bearer_auth(&key)
            .json(&json!({"destination": "http", "http": {"url": ledger.url(), "timeout_seconds": 10}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        Arc::new(Workload {
            key,
            targets: RwLock::new(vec![node.to_string()]),
            client,
            next: AtomicU64::new(0),
            lease_seconds,
            stop_ingest: AtomicBool::new(false),
            stop_consume: AtomicBool::new(false),
            acked_pull: Mutex::default(),
            acked_push: Mutex::default(),
            fetched: Mutex::default(),
            fetches: AtomicU64::new(0),
            holder: Mutex::default(),
            violations: Mutex::default(),
            requests_failed: AtomicU64::new(0),
        })
    }

    pub fn set_targets(&self, bases: Vec<String>) {
        *self.targets.write().unwrap() = bases;
    }

    fn target(&self, n: u64) -> Option<String> {
        let t = self.targets.read().unwrap();
        (!t.is_empty()).then(|| t[n as usize % t.len()].clone())
    }

    fn violation(&self, what: String) {
        lock(&self.violations).push(what);
    }

    /// Starts `ingesters` ingest loops and `consumers` fetch loops.
    pub fn run(self: &Arc<Self>, ingesters: usize, consumers: usize, seed: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for i in 0..ingesters {
            let w = self.clone();
            tasks.push(tokio::spawn(async move { w.ingest_loop(seed ^ (i as u64 + 1)).await }));
        }
        for i in 0..consumers {
            let w = self.clone();
            tasks.push(tokio::spawn(async move {
                w.consume_loop(i, seed ^ (0x100 + i as u64)).await
            }));
        }
        tasks
    }

    pub fn stop_ingest(&self) {
        self.stop_ingest.store(true, Ordering::SeqCst);
    }

    pub fn stop_consuming(&self) {
        self.stop_consume.store(true, Ordering::SeqCst);
    }

    async fn ingest_loop(&self, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut n = 0u64;
        while !self.stop_ingest.load(Ordering::SeqCst) {
            n += 1;
            let Some(base) = self.target(n) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let count = rng.gen_range(1..=20);
            let mut events = Vec::new();
            let mut pull = Vec::new();
            let mut push = Vec::new();
            for _ in 0..count {
                let r = format!("e{}@x.test", self.next.fetch_add(1, Ordering::SeqCst));
                let trigger = if rng.gen_range(0..4) == 0 { PUSH } else { PULL };
                events.push(json!({"trigger": trigger, "recipient": r}));
                if trigger == PUSH {
                    push.push(r)
                } else {
                    pull.push(r)
                }
            }
            let sent = self
                .client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&self.key)
                .json(&events)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => {
                    lock(&self.acked_pull).extend(pull);
                    lock(&self.acked_push).extend(push);
                }
                // Not acknowledged: stored or not, nothing is promised.
                _ => {
                    self.requests_failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    async fn consume_loop(&self, i: usize, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut n = i as u64;
        while !self.stop_consume.load(Ordering::SeqCst) {
            n += 1;
            let Some(base) = self.target(n) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            // 1 in 20 batches is left to expire: fetch under a new consumer name.
            let consumer = format!("c{i}-{}", n / 20);
            let size = rng.gen_range(1..=60);
            let got = self.fetch_once(&base, &consumer, size).await;
            let Some((batch, count)) = got else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            if count == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                continue;
            }
            match rng.gen_range(0..20) {
                0 => {} // left open until its lease ends
                1 | 2 => self.release(&base, &batch).await,
                _ => self.mark_read(&base, &batch).await,
            }
        }
    }

    /// One fetch; checks the batch against what other batches hold.
    /// Returns (batch id, event count), or None on a failed request.
    async fn fetch_once(&self, base: &str, consumer: &str, size: usize) -> Option<(String, usize)> {
        let r = self
            .client
            .post(format!("{base}/v1/batches"))
            .bearer_auth(&self.key)
            .json(&json!({"consumer": consumer, "size": size, "lease_seconds": self.lease_seconds}))
            .send()
            .await;
        let v: Value = match r {
            Ok(r) if r.status() == 200 => r.json().await.ok()?,
            _ => {
                self.requests_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        // The claim happened between `sent_at` and now.
        let got_at = now_ms();
        let events = v["events"].as_array()?;
        let Some(batch) = v["batch_id"].as_str() else {
            return Some((String::new(), 0));
        };
        let expires_at_ms = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str()?)
            .ok()?
            .timestamp_millis();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut holder = lock(&self.holder);
        let mut fetched = lock(&self.fetched);
        for e in events {
            let r = e["recipient"].as_str().unwrap_or_default().to_string();
            if let Some(prev) = holder.get(&r) {
                if prev.batch != batch {
                    if prev.read {
                        self.violation(format!(
                            "{r} fetched in {batch} after its batch {} was marked read",
                            prev.batch
                        ));
                    } else if !prev.released && prev.expires_at_ms > got_at {
                        self.violation(format!(
                            "{r} in {batch} while batch {} held it for {} ms more",
                            prev.batch,
                            prev.expires_at_ms - got_at
                        ));
                    }
                }
            }
            fetched.insert(r.clone());
            holder.insert(
                r,
                Held {
                    batch: batch.to_string(),
                    expires_at_ms,
                    released: false,
                    read: false,
                },
            );
        }
        Some((batch.to_string(), events.len()))
    }

    fn update_batch(&self, batch: &str, f: impl Fn(&mut Held)) {
        for h in lock(&self.holder).values_mut().filter(|h| h.batch == batch) {
            f(h);
        }
    }

    async fn release(&self, base: &str, batch: &str) {
        // Its outcome may stay unknown: from now on its events may come back.
        self.update_batch(batch, |h| h.released = true);
        let _ = self
            .client
            .post(format!("{base}/v1/batches/{batch}/release"))
            .bearer_auth(&self.key)
            .send()
            .await;
    }

    async fn mark_read(&self, base: &str, batch: &str) {
        let r = self
            .client
            .post(format!("{base}/v1/batches/{batch}/read"))
            .bearer_auth(&self.key)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => self.update_batch(batch, |h| h.read = true),
            // Its lease ended and another batch took its events.
            Ok(r) if r.status() == 409 => {}
            Ok(r) if r.status().is_client_error() => self.violation(format!("mark read of {batch}: {}", r.status())),
            _ => {
                self.requests_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops ingest; fetches and marks read until the queue is empty and
    /// every acknowledged push event reached the receiver; then checks
    /// every promise. Returns a summary line.
    pub async fn drain_and_check(
        self: &Arc<Self>,
        ledger: &Ledger,
        consumers: Vec<tokio::task::JoinHandle<()>>,
    ) -> String {
        self.stop_ingest();
        self.stop_consuming();
        for t in consumers {
            let _ = t.await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut n = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "not drained in 120 s: {} acked pull events not fetched, {} acked push events not answered 2xx",
                self.missing_pull().len(),
                self.missing_push(ledger).len()
            );
            n += 1;
            let base = self.target(n).expect("a node to drain through");
            if let Some((batch, count)) = self.fetch_once(&base, "drain", 1000).await {
                if count > 0 {
                    self.mark_read(&base, &batch).await;
                    continue;
                }
            }
            let queue = self.get(&base, "/v1/queue").await;
            let empty = queue.as_ref().is_some_and(|q| q["pending"] == 0 && q["in_flight"] == 0);
            if empty && self.missing_push(ledger).is_empty() && self.pending_deliveries(&base).await == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let violations = lock(&self.violations).clone();
        assert!(
            violations.is_empty(),
            "{} violations: {:?}",
            violations.len(),
            &violations[..violations.len().min(10)]
        );
        let missing = self.missing_pull();
        assert!(missing.is_empty(), "acknowledged, never fetched: {missing:?}");
        let overlaps = ledger.overlaps();
        assert!(overlaps.is_empty(), "sent twice at the same time: {overlaps:?}");
        let base = self.target(0).unwrap();
        let delivered = self.delivered_event_ids(&base).await;
        let ok = lock(&ledger.state.ok_ids).clone();
        let unseen: Vec<&String> = delivered.iter().filter(|id| !ok.contains(*id)).collect();
        assert!(
            unseen.is_empty(),
            "marked delivered without a 2xx at the receiver: {unseen:?}"
        );
        format!(
            "{} pull and {} push events acknowledged; {} batches fetched; {} push requests ({} delivered); {} requests failed on dead nodes",
            lock(&self.acked_pull).len(),
            lock(&self.acked_push).len(),
            self.fetches.load(Ordering::Relaxed),
            ledger.state.requests.load(Ordering::Relaxed),
            delivered.len(),
            self.requests_failed.load(Ordering::Relaxed),
        )
    }

    fn missing_pull(&self) -> Vec<String> {
        let fetched = lock(&self.fetched);
        lock(&self.acked_pull)
            .iter()
            .filter(|r| !fetched.contains(*r))
            .cloned()
            .collect()
    }

    fn missing_push(&self, ledger: &Ledger) -> Vec<String> {
        let ok = lock(&ledger.state.ok_recipients);
        lock(&self.acked_push)
            .iter()
            .filter(|r| !ok.contains(*r))
            .cloned()
            .collect()
    }

    async fn get(&self, base: &str, path: &str) -> Option<Value> {
        let r = self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(&self.key)
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().await.ok()
    }

    async fn pending_deliveries(&self, base: &str) -> Option<usize> {
        let v = self.get(base, "/v1/deliveries?status=pending&limit=10").await?;
        Some(v["deliveries"].as_array()?.len())
    }

    /// Event ids of every delivered delivery (all pages).
    async fn delivered_event_ids(&self, base: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v1/deliveries?status=delivered&limit=1000".to_string();
            if let Some(c) = &cursor {
                path += &format!("&cursor={c}");
            }
            let v = self.get(base, &path).await.expect("delivery list");
            for d in v["deliveries"].as_array().unwrap() {
                ids.push(d["event_id"].as_str().unwrap().to_string());
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        ids
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
