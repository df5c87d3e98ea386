//! Revoking a key ends what was opened with it, at once and on every node:
//! PAINT contexts logged in with the key stop working (issue 11, item 2:
//! getBatch kept working 8 minutes after the revocation, and each call
//! renewed the context's idle timer).

mod common;

use common::paint::{call, item, login, request, text};
use common::{opens, spawn_app, spawn_app_on, Backend, TestApp, ADMIN};
use eventd::soapxml::map::MapValue;
use serde_json::{json, Value};

both!(
    revoking_a_key_ends_its_paint_contexts_on_every_node,
    a_revoked_key_ingests_nothing_on_any_node_though_ingest_remembers_keys,
    a_remembered_revoked_key_sharing_commits_with_a_live_one_stores_only_the_live_ones,
);

/// Two nodes on one database and an account `acme` with two keys.
struct Nodes {
    a: TestApp,
    node_b: TestApp,
    id: i64,
    first: String,
    key_id: String,
    second: String,
}

async fn two_nodes(b: Backend) -> Nodes {
    let a = spawn_app(b).await;
    let node_b = spawn_app_on(b, &a.db_url, &[]).await;
    let (id, first) = a.create_account("acme").await;
    let r = a.post_empty(&format!("/v1/accounts/{id}/keys"), ADMIN).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let (key_id, second) = (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    );
    Nodes {
        a,
        node_b,
        id,
        first,
        key_id,
        second,
    }
}

/// Twenty concurrent single-event requests, alternately with the `live`
/// and the `revoked` key: the live key's are 202, the revoked key's 401.
async fn alternate_one_event_each(a: &TestApp, live: &str, revoked: &str) {
    let one = opens(1);
    let sends = (0..20).map(|i| {
        let key = if i % 2 == 0 { live } else { revoked };
        a.post("/v1/events", key, &one)
    });
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let expected: Vec<u16> = (0..20).map(|i| if i % 2 == 0 { 202 } else { 401 }).collect();
    assert_eq!(statuses, expected);
}

/// Revokes the account's second key through node B.
async fn revoke_through_b(node_b: &TestApp, id: i64, key_id: &str) {
    let r = node_b.delete(&format!("/v1/accounts/{id}/keys/{key_id}"), ADMIN).await;
    assert_eq!(r.status(), 204);
}

async fn get_batch(app: &TestApp, ctx: &str, mark_read: &str) -> MapValue {
    let process = item("markAsReadInd", mark_read) + &item("maxNotifications", "10");
    call(
        app,
        request(Some(ctx), "bus_facade_eventNotification", "getBatch", "", &process),
    )
    .await
}

fn event_count(r: &MapValue) -> i64 {
    match r
        .get("resultData")
        .and_then(|d| d.get("bus_entity_eventNotificationBatch"))
        .and_then(|b| b.get("eventCount"))
    {
        Some(MapValue::Int(n)) => *n,
        other => panic!("no eventCount in {r:?}: {other:?}"),
    }
}

/// Two nodes on one database: a context opened on node A with a second key
/// of the account; the key is revoked through node B; the context's next
/// getBatch on node A (with markAsReadInd Y or N) is a security error and
/// deletes nothing, while a context of the account's other key works on.
async fn revoking_a_key_ends_its_paint_contexts_on_every_node(b: Backend) {
    let Nodes {
        a,
        node_b,
        id,
        first,
        key_id,
        second,
    } = two_nodes(b).await;
    a.ingest(&first, &opens(3)).await;

    let doomed = login(&a, "acme", &second).await;
    let kept = login(&a, "acme", &first).await;
    // The context works before the revocation (and leaves the events queued).
    let r = get_batch(&a, &doomed, "N").await;
    assert_eq!(text(r.get("result")), "success", "{r:?}");
    assert_eq!(event_count(&r), 3);

    revoke_through_b(&node_b, id, &key_id).await;

    for mark in ["Y", "N", "Y"] {
        let r = get_batch(&a, &doomed, mark).await;
        assert_eq!(
            text(r.get("result")),
            "bean_exception_security",
            "markAsReadInd {mark}: {r:?}"
        );
        let r = get_batch(&node_b, &doomed, mark).await;
        assert_eq!(
            text(r.get("result")),
            "bean_exception_security",
            "node B, {mark}: {r:?}"
        );
    }
    // Nothing was marked read: the three events are all still queued.
    assert_eq!(a.queue(&first).await["pending"], json!(3), "{}", a.queue(&first).await);
    // Logging in again with the revoked key fails; the other key's context works.
    let entity = item("userName", "acme") + &item("password", &second);
    let r = call(&a, request(None, "bus_facade_context", "login", &entity, "")).await;
    assert_eq!(text(r.get("result")), "bean_exception_security", "{r:?}");
    let r = get_batch(&node_b, &kept, "Y").await;
    assert_eq!(event_count(&r), 3, "{r:?}");
    assert_eq!(a.queue(&first).await["pending"], json!(0));
}

/// Ingest remembers keys it verified (no database query per request), yet
/// a key revoked through another node stops ingesting at once: node A has
/// just ingested with the key (so it knows it), node B revokes it, and A's
/// next ingests with it are 401 and store nothing, singly and in concurrent
/// requests that share a commit with the account's other, live key.
async fn a_revoked_key_ingests_nothing_on_any_node_though_ingest_remembers_keys(b: Backend) {
    let Nodes {
        a,
        node_b,
        id,
        first,
        key_id,
        second,
    } = two_nodes(b).await;
    a.ingest(&second, &opens(2)).await;
    a.ingest(&second, &opens(1)).await;

    revoke_through_b(&node_b, id, &key_id).await;

    let r = a.post("/v1/events", &second, &opens(5)).await;
    assert_eq!(r.status(), 401);
    alternate_one_event_each(&a, &first, &second).await;
    // The 3 events before the revocation and the live key's 10.
    assert_eq!(a.queue(&first).await["pending"], json!(13));
}

/// Node A still remembers the revoked key when a burst of requests from it
/// and from the account's live key arrives, so they share commits (one
/// PostgreSQL statement checks every key of the group): each of the revoked
/// key's requests is 401 and stores nothing, each of the live key's is 202
/// and stored, whichever group it shared. (Ten 401s: more from one client
/// would be throttled, `auth_hardening`.)
async fn a_remembered_revoked_key_sharing_commits_with_a_live_one_stores_only_the_live_ones(b: Backend) {
    let Nodes {
        a,
        node_b,
        id,
        first,
        key_id,
        second,
    } = two_nodes(b).await;
    a.ingest(&second, &opens(2)).await;
    revoke_through_b(&node_b, id, &key_id).await;

    alternate_one_event_each(&a, &first, &second).await;
    assert_eq!(a.queue(&first).await["pending"], json!(2 + 10));
}
