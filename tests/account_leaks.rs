//! What one account could learn of the others (issue 11, item 6): delivery
//! ids were one global sequence (the gaps between an account's ids were the
//! others' push traffic), and `/metrics` showed server-wide queue depth to
//! anyone. Now ids are opaque and `/metrics` is the operator's.

mod common;

use common::push::{deliveries, eventually, fast_app, get_json, opens_of, push_to, Mode, Receiver};
use common::{free_port, metric, spawn_app_with, Backend, ADMIN};
use serde_json::{json, Value};

both!(
    delivery_ids_are_opaque_and_work_in_every_route,
    metrics_need_the_operator_or_their_own_address
);

fn is_opaque(id: &str) -> bool {
    id.len() == 36
        && id.starts_with("dlv_")
        && id[4..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Two accounts push through one server; each sees ids `dlv_` + 32 hex
/// digits, from which nothing about the other's deliveries follows (no
/// number to subtract). The ids work in GET, retry and the cursor, only for
/// their own account; a changed digit or the old numeric form is unknown.
async fn delivery_ids_are_opaque_and_work_in_every_route(b: Backend) {
    let rx = Receiver::start().await;
    let app = fast_app(b, &[]).await;
    let (_, a) = app.create_account("a").await;
    let (_, other) = app.create_account("b").await;
    push_to(&app, &a, "OPEN", json!({"url": rx.url("a")})).await;
    push_to(&app, &other, "OPEN", json!({"url": rx.url("b")})).await;
    rx.set("a", Mode::Status(500));
    app.ingest(&a, &opens_of(1, "OPEN")).await;
    app.ingest(&other, &opens_of(5, "OPEN")).await;
    app.ingest(&a, &opens_of(2, "OPEN")).await;
    let mine = eventually("a's 3 deliveries dead", || async {
        let d = deliveries(&app, &a, "status=dead").await;
        (d.len() == 3).then_some(d)
    })
    .await;
    let theirs = eventually("b's 5 delivered", || async {
        let d = deliveries(&app, &other, "status=delivered").await;
        (d.len() == 5).then_some(d)
    })
    .await;
    let ids: Vec<String> = mine.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    for d in mine.iter().chain(&theirs) {
        let id = d["id"].as_str().unwrap();
        assert!(is_opaque(id), "{id}");
        assert!(id[4..].parse::<u128>().is_err() || id[4..].len() == 32);
    }
    // No id is a neighbour of another (the old ids were n, n+1, n+6…).
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3);

    // GET and retry by id, for the owner only.
    let one = get_json(&app, &a, &format!("/v1/deliveries/{}", ids[0])).await;
    assert_eq!(one["id"], ids[0].as_str());
    assert_eq!(one["status"], "dead");
    let r = app.post_empty(&format!("/v1/deliveries/{}/retry", ids[0]), &a).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], ids[0].as_str());
    let mut altered = ids[1].clone().into_bytes();
    altered[20] = if altered[20] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    for (key, path) in [
        (&other, format!("/v1/deliveries/{}", ids[1])),
        (&a, format!("/v1/deliveries/{altered}")),
        (&a, "/v1/deliveries/1".to_string()),
        (&a, format!("/v1/deliveries/{}", ids[1].to_uppercase())),
    ] {
        let r = app.get(&path, key).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "delivery_not_found");
    }
    let r = app
        .post_empty(&format!("/v1/deliveries/{}/retry", ids[1]), &other)
        .await;
    assert_eq!(r.status(), 404);

    // The cursor is opaque too, and pages through the account's own rows.
    let page = get_json(&app, &a, "/v1/deliveries?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    assert!(is_opaque(cursor), "{cursor}");
    let rest = get_json(&app, &a, &format!("/v1/deliveries?limit=2&cursor={cursor}")).await;
    let mut paged: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["deliveries"].as_array().unwrap())
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    paged.sort();
    assert_eq!(paged, sorted.iter().map(String::as_str).collect::<Vec<_>>());
    let r = app.get(&format!("/v1/deliveries?cursor={cursor}"), &other).await;
    assert_eq!(r.status(), 400, "another account's cursor");
}

/// `/metrics` on the main address: 401 without credentials, 403 with an
/// account key, 200 for the operator. With `--metrics-listen`, the main
/// address does not serve it and the metrics address serves it alone.
async fn metrics_need_the_operator_or_their_own_address(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(2)).await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.get("/metrics", &key).await.status(), 403);
    let r = app.get("/metrics", ADMIN).await;
    assert_eq!(r.status(), 200);
    assert_eq!(metric(&r.text().await.unwrap(), "eventd_queue_depth"), 2.0);

    let port = free_port();
    let separate = spawn_app_with(b, &["--metrics-listen", &format!("127.0.0.1:{port}")]).await;
    let (_, key) = separate.create_account("acme").await;
    separate.ingest(&key, &common::opens(3)).await;
    for k in [ADMIN, key.as_str()] {
        assert_eq!(separate.get("/metrics", k).await.status(), 404, "main address");
    }
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "eventd_queue_depth"), 3.0, "{text}");
    let r = reqwest::get(format!("http://127.0.0.1:{port}/v1/queue")).await.unwrap();
    assert_eq!(r.status(), 404, "the metrics address serves nothing else");
}
