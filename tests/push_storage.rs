//! Push storage across its migrations, on both backends: the deliveries
//! and attempt logs a database of the previous schema holds are listed the
//! same afterwards, and a pending delivery is still sent.

mod common;

use common::push::{eventually, Receiver};
use common::{fresh_database, previous_schema, Backend, ADMIN};
use serde_json::{json, Value};

both!(push_storage_migration_keeps_every_delivery_and_its_attempt_log);

/// (status, attempts, attempt log's status codes) of each listed delivery,
/// newest first.
fn summary(list: &Value) -> Vec<(String, i64, Vec<Option<i64>>)> {
    list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["status"].as_str().unwrap().to_string(),
                d["attempts"].as_i64().unwrap(),
                d["attempt_log"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["status_code"].as_i64())
                    .collect(),
            )
        })
        .collect()
}

/// A database written before `push_hot_updates` with a delivered, a dead
/// and a pending delivery and their attempts: after the migration the log
/// shows the same three with the same attempts, filters by status as
/// before, and the pending one is sent with its event.
async fn push_storage_migration_keeps_every_delivery_and_its_attempt_log(b: Backend) {
    let (db_url, _tmp) = fresh_database(b);
    let _drop = common::drop_pg_later(b, &db_url);
    previous_schema(b, &db_url, &["push_hot_updates"]);
    let uid = |n: u32| format!("00000000-0000-7000-8000-{n:012}");
    // Months old: push backfill (7 days) does not take these again.
    let old = 1_767_225_600_000i64;
    let mut sql = String::from("INSERT INTO accounts (id, name, created_at) VALUES (7, 'legacy', 0);\n");
    for n in 1..=3 {
        sql += &format!(
            "INSERT INTO events (account_id, id, trigger, received_at, external_id, payload) VALUES (7, '{id}', \
             'OPEN', {old}, NULL, '{{\"id\":\"{id}\",\"trigger\":\"OPEN\",\"recipient\":\"r{n}@x.test\"}}');\n",
            id = uid(n)
        );
    }
    for (id, status, attempts, error) in [
        (1, "delivered", 1, "NULL"),
        (2, "dead", 2, "'HTTP 500'"),
        (3, "pending", 0, "NULL"),
    ] {
        sql += &format!(
            "INSERT INTO deliveries (account_id, id, trigger, event_id, status, attempts, failures, next_at, \
             created_at, updated_at, last_error) VALUES (7, {id}, 'OPEN', '{}', '{status}', {attempts}, \
             {attempts}, {old}, {old}, {old}, {error});\n",
            uid(id)
        );
    }
    for (id, delivery, code) in [(1, 1, 200), (2, 2, 500), (3, 2, 500)] {
        sql += &format!(
            "INSERT INTO delivery_attempts (account_id, id, delivery_id, attempted_at, url, status_code, latency_ms) \
             VALUES (7, {id}, {delivery}, {old}, 'https://old.example/hook', {code}, 5);\n"
        );
    }
    if b == Backend::Postgres {
        sql += "SELECT setval('accounts_id_seq', 7); SELECT setval('deliveries_id_seq', 3); \
                SELECT setval('delivery_attempts_id_seq', 3);";
    }
    common::exec_sql(b, &db_url, &sql);

    // The new version migrates at start.
    let app = common::spawn_app_on(b, &db_url, &["--allow-private-targets", "--push-poll-interval", "20ms"]).await;
    let r = app.post_empty("/v1/accounts/7/keys", ADMIN).await;
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let list: Value = app.get("/v1/deliveries", &key).await.json().await.unwrap();
    assert_eq!(
        summary(&list),
        [
            ("pending".to_string(), 0, vec![]),
            ("dead".to_string(), 2, vec![Some(500), Some(500)]),
            ("delivered".to_string(), 1, vec![Some(200)]),
        ],
        "{list}"
    );
    assert_eq!(list["deliveries"][1]["last_error"], "HTTP 500", "{list}");
    assert_eq!(list["deliveries"][1]["event_id"], uid(2), "{list}");
    let dead: Value = app.get("/v1/deliveries?status=dead", &key).await.json().await.unwrap();
    assert_eq!(summary(&dead), [("dead".to_string(), 2, vec![Some(500), Some(500)])]);

    // The pending delivery is sent with its event once the trigger has an
    // http destination, and logged as delivered.
    let rx = Receiver::start().await;
    let r = app
        .put(
            "/v1/triggers/OPEN",
            &key,
            &json!({"destination": "http", "http": {"url": rx.url("new")}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let hits = eventually("the pending delivery sent", || async {
        let h = rx.hits("new");
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(hits[0].json()["recipient"], "r3@x.test");
    let list = eventually("logged as delivered", || async {
        let l: Value = app.get("/v1/deliveries", &key).await.json().await.unwrap();
        (l["deliveries"][0]["status"] == "delivered").then_some(l)
    })
    .await;
    assert_eq!(
        summary(&list),
        [
            ("delivered".to_string(), 1, vec![Some(200)]),
            ("dead".to_string(), 2, vec![Some(500), Some(500)]),
            ("delivered".to_string(), 1, vec![Some(200)]),
        ],
        "{list}"
    );
    assert_eq!(rx.hits("new").len(), 1, "sent once");
}
