//! Test harness: starts the real server on port 0 against a fresh database
//! (a temp SQLite file, or a new PostgreSQL database dropped afterwards) and
//! talks HTTP to it.
#![allow(dead_code)]

use diesel::{Connection, PgConnection, RunQueryDsl};
use eventd::config::ServeSettings;
use eventd::startup::Application;
use reqwest::{Client, Response};
use serde_json::{json, Value};

pub const ADMIN: &str = "test-operator-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body on both backends: `both!(name, body_fn)` makes
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn pg_base() -> String {
    std::env::var("EVENTD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// The URL of one database on the test server. TLS and GSSAPI are off:
/// libpq would otherwise load OpenSSL and Kerberos, whose exit-time cleanup
/// can abort the test process while test servers' threads still hold
/// connections (seen: `krb5int_getspecific` assertion).
pub fn pg_url(db: &str) -> String {
    format!("{}/{db}?sslmode=disable&gssencmode=disable", pg_base())
}

/// The database name in a URL made by [`pg_url`].
fn db_name(url: &str) -> String {
    let last = url.rsplit('/').next().unwrap_or_default();
    last.split('?').next().unwrap_or_default().to_string()
}

struct PgDb {
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = PgConnection::establish(&pg_url("postgres")) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
            }
        })
        .join();
    }
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub backend: Backend,
    pub db_url: String,
    pub client: Client,
    _tmp: Option<tempfile::TempDir>,
    _pg: Option<PgDb>,
}

pub fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = dir.path().join("eventd.db").to_string_lossy().to_string();
            (url, Some(dir))
        }
        Backend::Postgres => {
            let name = format!("eventd_t_{}", uuid::Uuid::now_v7().simple());
            let mut c = PgConnection::establish(&pg_url("postgres"))
                .expect("PostgreSQL must be reachable for the tests (see .ci/run)");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .unwrap();
            (pg_url(&name), None)
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts a server with extra command-line flags.
pub async fn spawn_app_with(backend: Backend, extra: &[&str]) -> TestApp {
    let (db_url, tmp) = fresh_database(backend);
    let pg = (backend == Backend::Postgres).then(|| PgDb { name: db_name(&db_url) });
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        db_url.clone(),
        "--admin-token".into(),
        ADMIN.into(),
        "--http-workers".into(),
        "2".into(),
        "--db-pool-size".into(),
        "4".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let settings = ServeSettings::from_args(args);
    let app = Application::build(settings).await.expect("the server starts");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        backend,
        db_url,
        client: Client::new(),
        _tmp: tmp,
        _pg: pg,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an account through the operator API; returns (id, api key).
    pub async fn create_account(&self, name: &str) -> (i64, String) {
        let r = self
            .client
            .post(self.url("/v1/accounts"))
            .bearer_auth(ADMIN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "creating account {name}");
        let v: Value = r.json().await.unwrap();
        (v["id"].as_i64().unwrap(), v["api_key"].as_str().unwrap().to_string())
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_empty(&self, path: &str, key: &str) -> Response {
        self.client.post(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    /// GET without credentials (WSDLs, /metrics); returns the body text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Ingests and asserts 202; returns the response body.
    pub async fn ingest(&self, key: &str, events: &Value) -> Value {
        let r = self.post("/v1/events", key, events).await;
        assert_eq!(r.status(), 202, "ingest");
        r.json().await.unwrap()
    }

    /// Fetches a batch and asserts 200; returns the body.
    pub async fn fetch(&self, key: &str, body: &Value) -> Value {
        let r = self.post("/v1/batches", key, body).await;
        assert_eq!(r.status(), 200, "fetch");
        r.json().await.unwrap()
    }

    pub async fn queue(&self, key: &str) -> Value {
        let r = self.get("/v1/queue", key).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// `n` OPEN events with recipients r0@x.test, r1@x.test, …
pub fn opens(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"trigger": "OPEN", "recipient": format!("r{i}@x.test")}))
            .collect(),
    )
}

/// The recipients of a fetched batch's events, in order.
pub fn recipients(batch: &Value) -> Vec<String> {
    batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["recipient"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The median of measured durations (for the ignored measurement tests).
pub fn median(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() / 2]
}

/// For databases made with [`fresh_database`] outside [`spawn_app`]: drops
/// the PostgreSQL database when the returned guard goes.
pub fn drop_pg_later(backend: Backend, db_url: &str) -> Option<impl Drop> {
    (backend == Backend::Postgres).then(|| PgDb { name: db_name(db_url) })
}
