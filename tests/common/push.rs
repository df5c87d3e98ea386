//! For push tests: a local HTTP receiver that records every request and
//! answers as told per path, and helpers to configure push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::{spawn_app_with, Backend, TestApp};

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub method: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Status(u16),
    /// Fail this many requests with 500, then answer 200.
    FailFirst(u32),
    /// Never answer (the sender's timeout ends it).
    Hang,
    /// 503 with Retry-After: 1.
    RetryAfter,
    /// 429 with Retry-After: 1.
    Limited,
    /// 503 with Retry-After: this many seconds.
    RetryAfterSecs(u64),
    /// Answer 200 after this many milliseconds.
    Slow(u64),
    /// 200 with a body of 3,000 bytes (`0123456789` repeated).
    LongBody,
    /// 302 to /elsewhere.
    Redirect,
}

#[derive(Default)]
pub struct Recv {
    hits: Mutex<Vec<Hit>>,
    modes: Mutex<HashMap<String, Mode>>,
    served: Mutex<HashMap<String, u32>>,
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<Recv>,
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<Arc<Recv>>) -> HttpResponse {
    let name = req.match_info().get("name").unwrap_or("").to_string();
    let hit = Hit {
        path: name.clone(),
        method: req.method().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    };
    st.hits.lock().unwrap().push(hit);
    let mode = st
        .modes
        .lock()
        .unwrap()
        .get(&name)
        .copied()
        .unwrap_or(Mode::Status(200));
    let served = {
        let mut s = st.served.lock().unwrap();
        let n = s.entry(name).or_default();
        *n += 1;
        *n
    };
    match mode {
        Mode::Status(code) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).body(format!("answer {code}"))
        }
        Mode::FailFirst(n) if served <= n => HttpResponse::InternalServerError().body("not yet"),
        Mode::FailFirst(_) => HttpResponse::Ok().body("ok"),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
        Mode::Redirect => HttpResponse::Found().insert_header(("Location", "/elsewhere")).finish(),
        Mode::RetryAfter => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .finish(),
        Mode::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            HttpResponse::Ok().body("slow ok")
        }
        Mode::LongBody => HttpResponse::Ok().body("0123456789".repeat(300)),
        Mode::Limited => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .finish(),
        Mode::RetryAfterSecs(s) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", s.to_string()))
            .finish(),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Recv::default());
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/{name}", web::to(receive)))
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        tokio::spawn(server);
        Receiver { port, state }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    pub fn set(&self, name: &str, mode: Mode) {
        self.state.modes.lock().unwrap().insert(name.to_string(), mode);
    }

    pub fn hits(&self, name: &str) -> Vec<Hit> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == name)
            .cloned()
            .collect()
    }
}

/// Polls `f` until it returns Some, for up to 60 s (generous: CI machines are loaded).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub const FAST: [&str; 5] = [
    "--allow-private-targets",
    "--push-retry-schedule",
    "30ms*3",
    "--push-poll-interval",
    "20ms",
];

pub async fn fast_app(b: Backend, extra: &[&str]) -> TestApp {
    let mut args: Vec<&str> = FAST.to_vec();
    if extra.contains(&"--push-retry-schedule") {
        args.drain(1..3);
    }
    args.extend_from_slice(extra);
    spawn_app_with(b, &args).await
}

pub async fn put(app: &TestApp, key: &str, trigger: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/triggers/{trigger}")))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Sets an http destination and returns the PUT's answer.
pub async fn push_to(app: &TestApp, key: &str, trigger: &str, http: Value) -> Value {
    let r = put(app, key, trigger, &json!({"destination": "http", "http": http})).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

pub async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let r = app.get(path, key).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

pub async fn deliveries(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    get_json(app, key, &format!("/v1/deliveries?{query}")).await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until exactly `n` deliveries of the account are delivered.
pub async fn until_delivered(app: &TestApp, key: &str, n: usize, what: &str) {
    eventually(what, || async {
        (deliveries(app, key, "status=delivered").await.len() == n).then_some(())
    })
    .await;
}

/// Waits until a trigger's push destination is in `state`.
pub async fn until_state(app: &TestApp, key: &str, trigger: &str, state: &str, what: &str) {
    eventually(what, || async {
        let t = get_json(app, key, &format!("/v1/triggers/{trigger}")).await;
        (t["push"]["state"] == state).then_some(())
    })
    .await;
}

/// The `recipient` of each request received, in arrival order.
pub fn hit_recipients(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| h.json()["recipient"].as_str().unwrap().to_string())
        .collect()
}

pub fn opens_of(n: usize, trigger: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"trigger": trigger, "recipient": format!("r{i}@x.test")}))
            .collect(),
    )
}

/// What a request's signature covers (README): the body, or for a GET the
/// query string as sent.
pub fn signed_content(hit: &Hit) -> &[u8] {
    if hit.method == "GET" {
        hit.query.as_bytes()
    } else {
        &hit.body
    }
}

/// Standard Webhooks verification written here, independent of the
/// product's signer: does any `v1,` signature of the request match `secret`
/// over its [`signed_content`]?
pub fn verifies(secret: &str, hit: &Hit) -> bool {
    signed_over(secret, hit, signed_content(hit))
}

/// Does any `v1,` signature of the request match `secret` over `content`?
pub fn signed_over(secret: &str, hit: &Hit, content: &[u8]) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(hit.header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(hit.header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(content);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    hit.header("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}
