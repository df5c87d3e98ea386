//! Test harness: starts the real server on port 0 against a fresh database
//! (a temp SQLite file, or a new PostgreSQL database dropped afterwards) and
//! talks HTTP to it.
#![allow(dead_code)]

use diesel::{Connection, PgConnection, RunQueryDsl};
use eventd::config::ServeSettings;
use eventd::startup::Application;
use reqwest::{Client, Response};
use serde_json::{json, Value};

pub mod cluster;
pub mod mail_ftp;
pub mod paint;
pub mod process;
pub mod push;

/// The operator token of test servers (32+ characters, as a production token must be).
pub const ADMIN: &str = "test-operator-token-0123456789abcdef";

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
                    if $crate::common::skip_postgres() {
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// `serve` settings from these flags only: the environment of the test
/// process (a developer's `EVENTD_…`, `DATABASE_URL`) is not read.
pub fn serve_settings(args: Vec<String>) -> ServeSettings {
    parse_without_env::<ServeSettings>("serve", args)
}

/// `worker` settings from these flags only (see [`serve_settings`]).
pub fn worker_settings(args: Vec<String>) -> eventd::config::WorkerSettings {
    parse_without_env::<eventd::config::WorkerSettings>("worker", args)
}

fn parse_without_env<T: clap::Parser>(name: &str, args: Vec<String>) -> T {
    let cmd = T::command().mut_args(|a| a.env(None));
    let mut all = vec![name.to_string()];
    all.extend(args);
    let matches = cmd.get_matches_from(all);
    T::from_arg_matches(&matches).expect("valid test flags")
}

/// A command for the `eventd` binary (or another program) that does not
/// inherit the test process's `EVENTD_…` or `DATABASE_URL` variables.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("EVENTD_") || name == "DATABASE_URL" {
            c.env_remove(&k);
        }
    }
    c
}

/// Whether CI is set to anything truthy (`1`, `true`, `yes`…): then a
/// missing interop tool fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    })
}

/// Polls `f` until it returns Some; fails after `limit` with `what`.
pub async fn until<T, F, Fut>(what: &str, limit: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of one sample in Prometheus text (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Whether to skip the PostgreSQL variant of a test: only when neither a
/// truthy `CI` nor `EVENTD_TEST_PG` asks for PostgreSQL and nothing listens
/// on the default 127.0.0.1:5432. Says so once per test binary, on stderr
/// (not captured by the test harness).
pub fn skip_postgres() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| {
        let skip = pg_skip_policy(in_ci(), std::env::var_os("EVENTD_TEST_PG").is_some(), || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
        });
        if skip {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: PostgreSQL tests skipped: nothing listens on 127.0.0.1:5432 (start PostgreSQL there, \
                 or set EVENTD_TEST_PG=postgres://user@host:port; with CI=true they fail instead)"
            );
        }
        skip
    })
}

/// [`skip_postgres`]'s rule: PostgreSQL is required under a truthy `CI` or
/// with `EVENTD_TEST_PG` set; otherwise its tests are skipped when the
/// default server is unreachable.
pub fn pg_skip_policy(ci: bool, test_pg_set: bool, reachable: impl FnOnce() -> bool) -> bool {
    !ci && !test_pg_set && !reachable()
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

/// The schema a previous version wrote: applies, from the source tree, the
/// migrations older than the latest of those named in `new`, except the
/// named ones (later migrations would expect what those create).
pub fn previous_schema(b: Backend, db_url: &str, new: &[&str]) {
    use diesel::migration::{MigrationConnection, MigrationSource};
    use diesel_migrations::{FileBasedMigrations, MigrationHarness};
    macro_rules! apply {
        ($conn:ty, $db:ty, $dir:expr) => {{
            let mut c = <$conn>::establish(db_url).unwrap();
            let source = FileBasedMigrations::from_path($dir).unwrap();
            let mut all = MigrationSource::<$db>::migrations(&source).unwrap();
            all.sort_by_key(|m| m.name().to_string());
            c.setup().unwrap();
            let is_new =
                |m: &&Box<dyn diesel::migration::Migration<$db>>| new.iter().any(|n| m.name().to_string().contains(n));
            let last_new = all
                .iter()
                .rposition(|m| is_new(&m))
                .expect("a migration named in `new`");
            for m in all[..last_new].iter().filter(|m| !is_new(m)) {
                c.run_migration(&**m).unwrap();
            }
        }};
    }
    match b {
        Backend::Sqlite => apply!(diesel::SqliteConnection, diesel::sqlite::Sqlite, "migrations/sqlite"),
        Backend::Postgres => apply!(diesel::PgConnection, diesel::pg::Pg, "migrations/postgres"),
    }
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
    start_app(backend, db_url, tmp, pg, extra).await
}

/// Starts a server on an existing database (the caller keeps it).
pub async fn spawn_app_on(backend: Backend, db_url: &str, extra: &[&str]) -> TestApp {
    start_app(backend, db_url.to_string(), None, None, extra).await
}

async fn start_app(
    backend: Backend,
    db_url: String,
    tmp: Option<tempfile::TempDir>,
    pg: Option<PgDb>,
    extra: &[&str],
) -> TestApp {
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
    // The free-disk watermark would make results depend on the machine's
    // disk; the storage tests set their own.
    if !extra.iter().any(|a| a.starts_with("--min-free-disk")) {
        args.extend(["--min-free-disk".into(), "0".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let settings = serve_settings(args);
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

    /// GET without credentials (WSDLs); returns the body text.
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

    /// `/metrics` as the operator reads it.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics", ADMIN).await;
        assert_eq!(r.status(), 200, "/metrics");
        r.text().await.unwrap()
    }

    /// Waits until `n` long polls wait on this server (its waiter gauge).
    pub async fn until_waiting(&self, n: f64) {
        until(
            &format!("{n} long poll(s) waiting"),
            std::time::Duration::from_secs(30),
            || async { (metric(&self.metrics().await, "eventd_long_poll_waiters") == n).then_some(()) },
        )
        .await
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

/// Starts `eventd serve` (the binary of this build) on 127.0.0.1:`port`
/// with the test operator token and trace logs, stdout and stderr piped.
/// Starts `eventd serve` on `port`; its output is discarded.
pub fn start_binary(db_url: &str, port: u16, extra: &[&str]) -> std::process::Child {
    serve_command(db_url, port, extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("eventd binary starts")
}

/// Starts `eventd serve` on `port` with every log line (trace level)
/// written to `log`: a file, not a pipe, so a chatty server never blocks
/// on a full pipe nobody reads while the test runs.
pub fn start_binary_logged(db_url: &str, port: u16, extra: &[&str], log: &std::path::Path) -> std::process::Child {
    let file = std::fs::File::create(log).expect("log file");
    serve_command(db_url, port, extra)
        .env("RUST_LOG", "trace")
        .stderr(file)
        .spawn()
        .expect("eventd binary starts")
}

fn serve_command(db_url: &str, port: u16, extra: &[&str]) -> std::process::Command {
    let mut cmd = eventd_command();
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        db_url,
        "--http-workers",
        "2",
    ])
    .args(extra)
    .env("EVENTD_ADMIN_TOKEN", ADMIN)
    .stdout(std::process::Stdio::null());
    cmd
}

/// The `eventd` binary of this build, with a clean environment.
pub fn eventd_command() -> std::process::Command {
    let mut c = clean_command(env!("CARGO_BIN_EXE_eventd"));
    // Servers started from the binary ignore the free-disk watermark unless
    // a test passes `--min-free-disk` (results must not depend on the disk).
    c.env("EVENTD_MIN_FREE_DISK", "0");
    c
}

/// Waits until a server answers /healthz.
pub async fn wait_up(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sigterm(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Runs SQL statements straight on a test database (to set up what the API
/// cannot, such as old events, or to read the schema).
pub fn exec_sql(backend: Backend, db_url: &str, sql: &str) {
    use diesel::connection::SimpleConnection;
    match backend {
        Backend::Sqlite => diesel::SqliteConnection::establish(db_url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
        Backend::Postgres => PgConnection::establish(db_url).unwrap().batch_execute(sql).unwrap(),
    }
}

/// The `n` (a `bigint`) of one row of `sql`, run on a PostgreSQL test database.
pub fn pg_count(db_url: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = PgConnection::establish(db_url).unwrap();
    diesel::sql_query(sql).get_result::<Row>(&mut c).unwrap().n
}

/// The `n` (a `bigint`) of one row of `sql`, run on a test database of
/// either backend.
pub fn sql_count(backend: Backend, db_url: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    match backend {
        Backend::Sqlite => {
            let mut c = diesel::SqliteConnection::establish(db_url).unwrap();
            diesel::sql_query(sql).get_result::<Row>(&mut c).unwrap().n
        }
        Backend::Postgres => pg_count(db_url, sql),
    }
}

/// A simulated storage failure: renames every table but `accounts`,
/// `api_keys`, `paint_contexts` and the migrations' (so logins still work
/// and every queue statement fails); [`restore_tables`] undoes it.
pub fn hide_tables(backend: Backend, db_url: &str) {
    rename_tables(backend, db_url, true)
}

pub fn restore_tables(backend: Backend, db_url: &str) {
    rename_tables(backend, db_url, false)
}

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

fn rename_tables(backend: Backend, db_url: &str, hide: bool) {
    let list = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        Backend::Postgres => "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public'",
    };
    let names: Vec<TableName> = match backend {
        Backend::Sqlite => diesel::sql_query(list)
            .load(&mut diesel::SqliteConnection::establish(db_url).unwrap())
            .unwrap(),
        Backend::Postgres => diesel::sql_query(list)
            .load(&mut PgConnection::establish(db_url).unwrap())
            .unwrap(),
    };
    let keep = ["accounts", "api_keys", "paint_contexts", "__diesel_schema_migrations"];
    let mut sql = String::new();
    for TableName { name } in names {
        if keep.contains(&name.as_str()) {
            continue;
        }
        match (hide, name.strip_suffix("_hidden")) {
            (true, None) => sql += &format!("ALTER TABLE {name} RENAME TO {name}_hidden;"),
            (false, Some(orig)) => sql += &format!("ALTER TABLE {name} RENAME TO {orig};"),
            _ => {}
        }
    }
    assert!(!sql.is_empty());
    exec_sql(backend, db_url, &sql);
}

/// What `//soap:address/@location` finds in a WSDL for an XPath tool that
/// takes its prefixes from the document (PHP's DOMXPath does): the
/// `location` of every `address` element in the namespace the root element
/// binds to `soap`, provided that is the WSDL SOAP 1.1 binding namespace.
pub fn soap_address_locations(wsdl: &str) -> Vec<String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    const WSDL_SOAP: &[u8] = b"http://schemas.xmlsoap.org/wsdl/soap/";
    let mut reader = quick_xml::reader::NsReader::from_str(wsdl);
    let mut soap_ns: Option<Vec<u8>> = None;
    let mut root = true;
    let mut found = Vec::new();
    loop {
        match reader.read_resolved_event().expect("well-formed WSDL") {
            (ns, Event::Start(e)) | (ns, Event::Empty(e)) => {
                if root {
                    root = false;
                    soap_ns = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"xmlns:soap")
                        .map(|a| a.value.to_vec());
                }
                let in_soap = matches!(ns, ResolveResult::Bound(n) if Some(n.as_ref()) == soap_ns.as_deref());
                if in_soap && soap_ns.as_deref() == Some(WSDL_SOAP) && e.local_name().as_ref() == b"address" {
                    if let Some(a) = e.attributes().flatten().find(|a| a.key.as_ref() == b"location") {
                        found.push(String::from_utf8_lossy(&a.value).into_owned());
                    }
                }
            }
            (_, Event::Eof) => break,
            _ => {}
        }
    }
    found
}
