//! The `eventd` binary's subcommands (SPEC §3, §7): accounts, keys,
//! migrate, worker; the first-start `default` account; migrations when
//! several nodes start at once; the schema's keys. On both backends.

mod common;

use std::process::Output;

use common::push::{deliveries, eventually, push_to, Mode, Receiver};
use common::{eventd_command, free_port, fresh_database, sigterm, spawn_app_with, wait_up, Backend};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::json;

both!(
    accounts_and_keys_from_the_command_line,
    migrate_applies_each_migration_once_even_when_run_at_once,
    first_start_without_a_token_creates_a_default_account,
    worker_subcommand_delivers_and_stops_on_sigterm,
    every_key_leads_with_account_id,
);

/// Runs `eventd ARGS` to completion; asserts success; returns stdout.
fn eventd(args: &[&str]) -> String {
    let out: Output = eventd_command().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "eventd {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value after `label` on a line of `eventd` output.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in {out}"))
        .trim()
        .to_string()
}

async fn accounts_and_keys_from_the_command_line(b: Backend) {
    let (db, _tmp) = fresh_database(b);
    let _pg = common::drop_pg_later(b, &db);
    let out = eventd(&["accounts", "--database-url", &db, "create", "acme"]);
    let first = field(&out, "api key ");
    assert!(first.starts_with("evk_"), "{out}");
    let out = eventd(&["keys", "--database-url", &db, "create", "acme"]);
    let (second_id, second) = (field(&out, "key id "), field(&out, "api key "));
    let list = eventd(&["keys", "--database-url", &db, "list", "acme"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(&second_id) && !list.contains(&second) && !list.contains(&first));
    assert!(list.lines().all(|l| l.ends_with("active")), "{list}");
    let accounts = eventd(&["accounts", "--database-url", &db, "list"]);
    assert!(accounts.contains("\tacme\t"), "{accounts}");

    // A server on that database takes both keys; a revoked one stops at once.
    let app = common::spawn_app_on(b, &db, &[]).await;
    assert_eq!(app.get("/v1/queue", &first).await.status(), 200);
    assert_eq!(app.get("/v1/queue", &second).await.status(), 200);
    let out = eventd(&["keys", "--database-url", &db, "revoke", "acme", &second_id]);
    assert!(out.contains(&second_id));
    assert_eq!(app.get("/v1/queue", &second).await.status(), 401);
    assert_eq!(app.get("/v1/queue", &first).await.status(), 200);
    let list = eventd(&["keys", "--database-url", &db, "list", "acme"]);
    assert!(
        list.lines().any(|l| l.starts_with(&second_id) && l.contains("revoked")),
        "{list}"
    );
    // Unknown accounts and keys: an error exit naming them, nothing created.
    let out = eventd_command()
        .args(["keys", "--database-url", &db, "create", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    let out = eventd_command()
        .args(["keys", "--database-url", &db, "revoke", "acme", "key_nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        eventd(&["keys", "--database-url", &db, "list", "acme"]).lines().count(),
        2
    );
}

fn applied(out: &str) -> usize {
    out.split_whitespace().next().unwrap().parse().unwrap()
}

async fn migrate_applies_each_migration_once_even_when_run_at_once(b: Backend) {
    let (db, _tmp) = fresh_database(b);
    let _pg = common::drop_pg_later(b, &db);
    // Four `migrate` at the same moment: each migration is applied by exactly one.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            eventd_command()
                .args(["migrate", "--database-url", &db])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        total += applied(&String::from_utf8_lossy(&out.stdout));
    }
    let dir = match b {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let count = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .count();
    assert_eq!(total, count);
    assert_eq!(applied(&eventd(&["migrate", "--database-url", &db])), 0);

    // Three servers starting at once on another fresh database all come up.
    let (db, _tmp2) = fresh_database(b);
    let _pg2 = common::drop_pg_later(b, &db);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut children: Vec<_> = ports.iter().map(|p| common::start_binary(&db, *p, &[])).collect();
    let client = reqwest::Client::new();
    for p in &ports {
        let base = format!("http://127.0.0.1:{p}");
        wait_up(&client, &base).await;
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for c in &children {
        sigterm(c);
    }
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(applied(&eventd(&["migrate", "--database-url", &db])), 0);
}

async fn first_start_without_a_token_creates_a_default_account(b: Backend) {
    let (db, _tmp) = fresh_database(b);
    let _pg = common::drop_pg_later(b, &db);
    let port = free_port();
    let start = || {
        eventd_command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database-url", &db])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let child = start();
    wait_up(&client, &base).await;
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("evk_"))
        .unwrap_or_else(|| panic!("no key printed: {stdout}"))
        .to_string();
    assert!(stdout.contains("'default'"), "{stdout}");
    // The key works, for an account named `default`; a second start prints none.
    let mut child = start();
    wait_up(&client, &base).await;
    let r = client
        .get(format!("{base}/v1/queue"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sigterm(&child);
    child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut rest).unwrap();
    assert!(!rest.contains("evk_"), "{rest}");
    let accounts = eventd(&["accounts", "--database-url", &db, "list"]);
    assert_eq!(accounts.lines().count(), 1);
    assert!(accounts.contains("\tdefault\t"), "{accounts}");
    // With an operator token, an empty database stays empty.
    let (db, _tmp2) = fresh_database(b);
    let _pg2 = common::drop_pg_later(b, &db);
    let port = free_port();
    let mut child = common::start_binary(&db, port, &[]);
    wait_up(&client, &format!("http://127.0.0.1:{port}")).await;
    sigterm(&child);
    child.wait().unwrap();
    assert_eq!(eventd(&["accounts", "--database-url", &db, "list"]), "");
}

async fn worker_subcommand_delivers_and_stops_on_sigterm(b: Backend) {
    let rx = Receiver::start().await;
    rx.set("slow", Mode::Slow(1500));
    let app = spawn_app_with(b, &["--no-worker", "--allow-private-targets"]).await;
    let (_, key) = app.create_account("acme").await;
    push_to(&app, &key, "OPEN", json!({"url": rx.url("slow")})).await;
    app.ingest(&key, &common::opens(1)).await;
    let mut worker = eventd_command()
        .args(["worker", "--database-url", &app.db_url, "--allow-private-targets"])
        .args(["--push-poll-interval", "20ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGTERM while the request is in flight: the worker waits for the
    // answer, records it, then exits 0.
    eventually("the request in flight", || async {
        (!rx.hits("slow").is_empty()).then_some(())
    })
    .await;
    sigterm(&worker);
    let status = tokio::task::spawn_blocking(move || worker.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let list = deliveries(&app, &key, "").await;
    assert_eq!(list[0]["status"], "delivered", "{list:?}");
    assert_eq!(list[0]["attempts"], 1);
    assert_eq!(rx.hits("slow").len(), 1);
}

#[derive(QueryableByName, Debug)]
struct KeyColumn {
    #[diesel(sql_type = Text)]
    t: String,
    #[diesel(sql_type = Text)]
    idx: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    col: String,
    #[diesel(sql_type = BigInt)]
    pos: i64,
}

const PG_KEYS: &str = "SELECT t.relname::text AS t, i.relname::text AS idx, \
     CASE WHEN x.indisprimary THEN 'pk' ELSE 'unique' END AS kind, a.attname::text AS col, k.ord AS pos \
     FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace \
     CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
     WHERE n.nspname = 'public' AND x.indisunique";

const SQLITE_KEYS: &str = "SELECT m.name AS t, 'pk' AS idx, 'pk' AS kind, p.name AS col, p.pk AS pos \
     FROM sqlite_master m, pragma_table_info(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND p.pk > 0 \
     UNION ALL SELECT m.name, l.name, 'unique', i.name, i.seqno + 1 \
     FROM sqlite_master m, pragma_index_list(m.name) l, pragma_index_info(l.name) i \
     WHERE m.type = 'table' AND l.\"unique\" = 1 AND l.origin <> 'pk'";

/// SPEC §7 (Citus): every primary key starts with account_id, every unique
/// key includes it. Exempt, as docs/ARCHITECTURE.md says: `accounts` (its
/// id is the account id), the global key lookup `api_keys.key_hash` and
/// `server_secrets` (reference tables), and diesel's migration table. PostgreSQL only: Citus
/// distributes PostgreSQL, while the embedded SQLite schema keys its
/// insert-ordered tables by rowid (`pull_queue.seq`, `deliveries.id`).
async fn every_key_leads_with_account_id(b: Backend) {
    if b == Backend::Sqlite {
        return;
    }
    let app = common::spawn_app(b).await;
    let rows: Vec<KeyColumn> = match b {
        Backend::Sqlite => diesel::sql_query(SQLITE_KEYS)
            .load(&mut diesel::SqliteConnection::establish(&app.db_url).unwrap())
            .unwrap(),
        Backend::Postgres => diesel::sql_query(PG_KEYS)
            .load(&mut diesel::PgConnection::establish(&app.db_url).unwrap())
            .unwrap(),
    };
    let mut keys: std::collections::BTreeMap<(String, String, String), Vec<(i64, String)>> = Default::default();
    for r in rows {
        keys.entry((r.t, r.idx, r.kind)).or_default().push((r.pos, r.col));
    }
    let mut tables = std::collections::BTreeSet::new();
    for ((t, idx, kind), mut cols) in keys {
        cols.sort();
        let cols: Vec<String> = cols.into_iter().map(|(_, c)| c).collect();
        if t == "accounts"
            || t == "server_secrets"
            || t == "__diesel_schema_migrations"
            || (t == "api_keys" && cols == ["key_hash"])
        {
            continue;
        }
        if kind == "pk" {
            tables.insert(t.clone());
            assert_eq!(cols[0], "account_id", "primary key of {t}: {cols:?}");
        } else {
            assert!(
                cols.iter().any(|c| c == "account_id"),
                "unique key {idx} of {t}: {cols:?}"
            );
        }
    }
    for t in ["events", "pull_queue", "batches", "deliveries", "api_keys"] {
        assert!(tables.contains(t), "{t} has a primary key: {tables:?}");
    }
}
