//! PAINT compatibility (`/soap/paint`) over HTTP, on both backends.

mod common;

use base64::Engine;
use common::paint::{call, item, login, nil_item, post, request, result, text, S11};
use common::{spawn_app, spawn_app_with, Backend, TestApp};
use eventd::soapxml::envelope::parse_envelope;
use eventd::soapxml::map::{self, MapValue};
use serde_json::json;

both!(
    wsdl_is_rpc_encoded_with_this_servers_address,
    login_get_batch_and_logout,
    mark_as_read_y_deletes_and_n_keeps,
    csv_quotes_commas_quotes_newlines_and_non_ascii,
    contexts_expire_and_belong_to_their_account,
    validation_errors_name_the_problem,
    signup_is_the_paint_name_of_optin,
    hostile_and_malformed_documents_are_client_faults,
    axis_style_multi_references_are_resolved,
    max_notifications_defaults_to_1000_and_is_capped_at_10000,
    storage_failures_are_bean_exception_system,
    another_accounts_key_counts_as_a_failed_login,
);

/// getBatch with processData from (key, value) pairs; returns the result map.
async fn get_batch(app: &TestApp, ctx: &str, params: &[(&str, &str)]) -> MapValue {
    let body: String = params.iter().map(|(k, v)| item(k, v)).collect();
    call(
        app,
        request(Some(ctx), "bus_facade_eventNotification", "getBatch", "", &body),
    )
    .await
}

struct Batch {
    count: i64,
    meta: Vec<(String, String)>,
    rows: Vec<Vec<String>>,
}

fn batch(r: &MapValue) -> Batch {
    assert_eq!(result(r), "success", "{r:?}");
    let b = r
        .get("resultData")
        .and_then(|d| d.get("bus_entity_eventNotificationBatch"))
        .unwrap();
    let count = match b.get("eventCount") {
        Some(MapValue::Int(n)) => *n,
        other => panic!("eventCount: {other:?}"),
    };
    let meta = match b.get("eventMeta") {
        Some(MapValue::Map(items)) => items.iter().map(|(k, v)| (k.clone(), text(Some(v)))).collect(),
        other => panic!("eventMeta: {other:?}"),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text(b.get("eventData")))
        .unwrap();
    let rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw.as_slice())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    Batch { count, meta, rows }
}

impl Batch {
    /// A row's value in the column `name` of its trigger's header.
    fn col(&self, row: usize, name: &str) -> String {
        let r = &self.rows[row];
        let header = &self.meta.iter().find(|(t, _)| *t == r[0]).unwrap().1;
        let i = header.split(',').position(|h| h == name).unwrap();
        r[i].clone()
    }
}

async fn wsdl_is_rpc_encoded_with_this_servers_address(b: Backend) {
    let app = spawn_app(b).await;
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wsdl/paint.wsdl")).unwrap();
    let served = app.get_text("/soap/paint?wsdl").await;
    let here = format!("http://127.0.0.1:{}/soap/paint", app.port);
    assert_eq!(served, file.replace("http://localhost:8080/soap/paint", &here));
    assert!(served.contains(r#"targetNamespace="urn:localhost-paint""#));
    assert!(served.contains(r#"style="rpc""#) && served.contains(r#"use="encoded""#));
    // Tools reading the endpoint with `//soap:address/@location` find it.
    assert_eq!(common::soap_address_locations(&served), [here.as_str()]);
    let r = app.client.get(app.url("/soap/paint")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

async fn login_get_batch_and_logout(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &json!([{"trigger": "OPEN", "recipient": "a@x.test"}, {"trigger": "BOUNCE", "recipient": "b@x.test", "bounce_type": "hard"}]))
        .await;
    let ctx = login(&app, "acme", &key).await;
    assert!(!ctx.is_empty());

    // Parameters in entityData work too; nil maxNotifications is the default.
    let body = item("notificationTypes", "open, bounce") + &nil_item("maxNotifications") + &item("markAsReadInd", "Y");
    let r = call(
        &app,
        request(Some(&ctx), "bus_facade_eventNotification", "getBatch", &body, ""),
    )
    .await;
    let bt = batch(&r);
    assert_eq!(bt.count, 2);
    assert_eq!(bt.rows.len(), 2);
    assert_eq!(
        bt.meta.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["OPEN", "BOUNCE"]
    );
    assert!(bt.meta[1].1.starts_with("type,email,"));
    assert_eq!(bt.col(1, "bounceType"), "hard");
    assert_eq!(bt.col(0, "email"), "a@x.test");
    assert_eq!(app.queue(&key).await["pending"], 0);

    let r = call(&app, request(Some(&ctx), "bus_facade_context", "logout", "", "")).await;
    assert_eq!(result(&r), "success");
    let r = get_batch(&app, &ctx, &[("notificationTypes", "OPEN")]).await;
    assert_eq!(result(&r), "bean_exception_security");
    assert!(text(r.get("resultData")).contains("context"));
}

async fn mark_as_read_y_deletes_and_n_keeps(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(3)).await;
    app.ingest(&key, &json!({"trigger": "CLICK", "recipient": "c@x.test"}))
        .await;
    let ctx = login(&app, "acme", &key).await;

    // N twice: the same events both times, nothing deleted, nothing left leased.
    let p = [
        ("notificationTypes", "OPEN"),
        ("maxNotifications", "2"),
        ("markAsReadInd", "N"),
    ];
    let first = batch(&get_batch(&app, &ctx, &p).await);
    let second = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!(first.count, 2);
    assert_eq!(first.rows, second.rows);
    assert_eq!(first.col(1, "email"), "r1@x.test");
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(4), Some(0)));

    // Y: the returned events are gone; the next call gets the rest.
    let p = [
        ("notificationTypes", "OPEN"),
        ("maxNotifications", "2"),
        ("markAsReadInd", "Y"),
    ];
    let y = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!(y.rows, first.rows);
    let rest = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!(rest.count, 1);
    assert_eq!(rest.col(0, "email"), "r2@x.test");
    // Nothing left: eventMeta still holds the requested type's header (an
    // empty Map would decode as NULL in PHP, not as an array).
    let none = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!((none.count, none.rows.len()), (0, 0));
    assert_eq!(none.meta.len(), 1, "{:?}", none.meta);
    assert_eq!(none.meta[0].0, "OPEN");
    assert!(none.meta[0].1.starts_with("type,email,eventId,"), "{:?}", none.meta);
    // The CLICK was never asked for and is still there.
    let p = [
        ("notificationTypes", "CLICK,OPEN"),
        ("maxNotifications", "50000"),
        ("markAsReadInd", "y"),
    ];
    let click = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!(click.count, 1);
    assert_eq!(click.rows[0][0], "CLICK");
    assert_eq!(app.queue(&key).await["pending"], 0);
}

async fn csv_quotes_commas_quotes_newlines_and_non_ascii(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let tricky = "Smith, \"Jo\"\r\nsecond line";
    app.ingest(
        &key,
        &json!({"trigger": "CLICK", "recipient": "zoë@x.test", "url": "https://x.test/?a=1,2&b=\"3\"",
                "data": {"name": tricky, "city": "Zürich", "n": 7, "flag": true}}),
    )
    .await;
    let ctx = login(&app, "acme", &key).await;
    // customFieldNames as a SOAP-encoded array (what PHP sends for a list).
    let custom = r#"<item><key x:type="s:string">customFieldNames</key><value x:type="enc:Array" enc:arrayType="s:string[5]"><item x:type="s:string">name</item><item x:type="s:string">city</item><item x:type="s:string">n</item><item x:type="s:string">flag</item><item x:type="s:string">absent</item></value></item>"#;
    let body = item("notificationTypes", "CLICK") + &item("markAsReadInd", "N") + custom;
    let r = call(
        &app,
        request(Some(&ctx), "bus_facade_eventNotification", "getBatch", "", &body),
    )
    .await;
    let bt = batch(&r);
    assert_eq!(bt.count, 1);
    assert_eq!(
        bt.meta[0].1,
        "type,email,eventId,eventDate,receivedDate,campaignId,messageId,listId,url,ip,userAgent,externalId,name,city,n,flag,absent"
    );
    assert_eq!(bt.rows[0][0], "CLICK");
    assert_eq!(bt.col(0, "email"), "zoë@x.test");
    assert_eq!(bt.col(0, "url"), "https://x.test/?a=1,2&b=\"3\"");
    assert_eq!(bt.col(0, "name"), tricky);
    assert_eq!(bt.col(0, "city"), "Zürich");
    assert_eq!(bt.col(0, "n"), "7");
    assert_eq!(bt.col(0, "flag"), "true");
    assert_eq!(bt.col(0, "absent"), "");

    // The raw bytes: RFC 4180 quoting (doubled quotes, quoted CR LF), CRLF rows.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text(
            r.get("resultData")
                .and_then(|d| d.get("bus_entity_eventNotificationBatch"))
                .and_then(|b| b.get("eventData")),
        ))
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        raw.contains("\"Smith, \"\"Jo\"\"\r\nsecond line\",Zürich,7,true,\r\n"),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n"));

    // customFieldNames as a comma list works too.
    let r = get_batch(
        &app,
        &ctx,
        &[("notificationTypes", "CLICK"), ("customFieldNames", "city, n")],
    )
    .await;
    assert!(batch(&r).meta[0].1.ends_with(",externalId,city,n"));
}

async fn contexts_expire_and_belong_to_their_account(b: Backend) {
    let app = spawn_app_with(b, &["--paint-context-idle-seconds", "2"]).await;
    let (_, key) = app.create_account("acme").await;
    let (other_id, other_key) = app.create_account("other").await;
    app.ingest(&key, &common::opens(1)).await;
    app.ingest(&other_key, &common::opens(2)).await;

    // Wrong password, unknown user, another account's key: security errors.
    for (user, pw) in [
        ("acme", "evk_wrong"),
        ("nobody", key.as_str()),
        ("acme", other_key.as_str()),
    ] {
        let r = call(
            &app,
            request(
                None,
                "bus_facade_context",
                "login",
                &(item("userName", user) + &item("password", pw)),
                "",
            ),
        )
        .await;
        assert_eq!(result(&r), "bean_exception_security", "{user}");
    }

    let ctx = login(&app, "acme", &key).await;
    let p = [("notificationTypes", "OPEN"), ("markAsReadInd", "N")];
    assert_eq!(batch(&get_batch(&app, &ctx, &p).await).count, 1);
    // A context id pointed at another account is refused; made-up ones too.
    let (_, secret) = ctx.split_once('-').unwrap();
    for forged in [format!("{other_id}-{secret}"), "garbage".to_string(), String::new()] {
        let r = get_batch(&app, &forged, &p).await;
        assert_eq!(result(&r), "bean_exception_security", "{forged}");
    }
    assert_eq!(app.queue(&other_key).await["pending"], 2);

    // Idle for longer than the timeout: expired.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let r = get_batch(&app, &ctx, &p).await;
    assert_eq!(result(&r), "bean_exception_security");
}

/// Logging in as one account with another account's key fails like a wrong
/// key and counts towards the client's failure limit: after
/// `--auth-failure-burst` failures, logins are answered 429.
async fn another_accounts_key_counts_as_a_failed_login(b: Backend) {
    let app = spawn_app_with(b, &["--auth-failure-burst", "3", "--auth-failure-interval", "1h"]).await;
    app.create_account("acme").await;
    let (_, other_key) = app.create_account("other").await;
    let login_as_acme = || {
        let entity = item("userName", "acme") + &item("password", &other_key);
        request(None, "bus_facade_context", "login", &entity, "")
    };
    let r = call(&app, login_as_acme()).await;
    assert_eq!(result(&r), "bean_exception_security");
    let mut statuses = vec![];
    for _ in 0..5 {
        statuses.push(post(&app, login_as_acme()).await.0);
    }
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
}

/// PAINT calls a sign-up through a form `SIGNUP`; eventd's trigger is OPTIN.
/// A getBatch answers with the name it was asked for.
async fn signup_is_the_paint_name_of_optin(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(
        &key,
        &json!([{"trigger": "OPTIN", "recipient": "s@x.test"}, {"trigger": "OPEN", "recipient": "o@x.test"}]),
    )
    .await;
    let ctx = login(&app, "acme", &key).await;
    let p = [("notificationTypes", "signup"), ("markAsReadInd", "N")];
    let b = batch(&get_batch(&app, &ctx, &p).await);
    assert_eq!(b.count, 1);
    assert_eq!(b.meta.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["SIGNUP"]);
    assert_eq!(
        (b.rows[0][0].as_str(), b.col(0, "email").as_str()),
        ("SIGNUP", "s@x.test")
    );
    // Asked as OPTIN, it is called OPTIN; both names in one call: the first wins.
    let b = batch(&get_batch(&app, &ctx, &[("notificationTypes", "OPTIN,OPEN")]).await);
    assert_eq!(
        b.meta.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["OPTIN", "OPEN"]
    );
    assert_eq!(b.rows[0][0], "OPTIN");
    let b = batch(&get_batch(&app, &ctx, &[("notificationTypes", "SIGNUP,OPTIN")]).await);
    assert_eq!(b.meta.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["SIGNUP"]);
    assert_eq!((b.count, b.rows[0][0].as_str()), (1, "SIGNUP"));
    assert_eq!(app.queue(&key).await["pending"], 2);
}

async fn validation_errors_name_the_problem(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(1)).await;
    let ctx = login(&app, "acme", &key).await;

    type Case = (Vec<(&'static str, &'static str)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![("notificationTypes", "OPEN,SIGNUP,nope,SIGN_UP")],
            "notificationTypes",
            "unknown notification type(s): nope, SIGN_UP;",
        ),
        (vec![("maxNotifications", "0")], "maxNotifications", "1 to 10000"),
        (vec![("maxNotifications", "lots")], "maxNotifications", "whole number"),
        (vec![("markAsReadInd", "maybe")], "markAsReadInd", "Y or N"),
        (vec![("clientType", "PUSH")], "clientType", "CLIENT_PULL"),
        (vec![("encoding", "base64")], "encoding", "plain"),
        (vec![("markAsProcessingInd", "Y")], "markAsProcessingInd", "only N"),
    ];
    for (params, field, needle) in cases {
        let r = get_batch(&app, &ctx, &params).await;
        assert_eq!(result(&r), "bean_exception_validation", "{params:?}");
        let msg = text(r.get("resultData").and_then(|d| d.get(field)));
        assert!(msg.contains(needle), "{params:?}: {msg}");
    }
    let r = call(&app, request(Some(&ctx), "bus_facade_campaign_email", "search", "", "")).await;
    assert_eq!(result(&r), "bean_exception_validation");
    assert!(text(r.get("resultData").and_then(|d| d.get("className"))).contains("bus_facade_campaign_email"));
    let r = call(
        &app,
        request(Some(&ctx), "bus_facade_eventNotification", "delete", "", ""),
    )
    .await;
    assert_eq!(result(&r), "bean_exception_validation");
    assert!(text(r.get("resultData").and_then(|d| d.get("processName"))).contains("delete"));
    let r = call(
        &app,
        request(None, "bus_facade_context", "login", &item("userName", "acme"), ""),
    )
    .await;
    assert_eq!(result(&r), "bean_exception_validation");
    assert!(r.get("resultData").and_then(|d| d.get("password")).is_some());
    // Nothing was fetched or deleted by any of them.
    let q = app.queue(&key).await;
    assert_eq!((q["pending"].as_i64(), q["in_flight"].as_i64()), (Some(1), Some(0)));

    // What the sample client sends besides (clientType CLIENT_PULL, encoding
    // plain, markAsProcessingInd N) is accepted, in any case.
    let params = [
        ("notificationTypes", "OPEN"),
        ("markAsReadInd", "N"),
        ("clientType", "client_pull"),
        ("encoding", "PLAIN"),
        ("markAsProcessingInd", "n"),
    ];
    assert_eq!(batch(&get_batch(&app, &ctx, &params).await).count, 1);
    assert_eq!(app.queue(&key).await["pending"], 1);
}

/// Without maxNotifications a getBatch returns 1,000 events; above 10,000
/// it is capped at 10,000 rather than refused.
async fn max_notifications_defaults_to_1000_and_is_capped_at_10000(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(10_000)).await;
    app.ingest(&key, &common::opens(1_001)).await;
    let ctx = login(&app, "acme", &key).await;
    let n = |r: &MapValue| batch(r).count;
    assert_eq!(n(&get_batch(&app, &ctx, &[("markAsReadInd", "N")]).await), 1_000);
    let nil = call(
        &app,
        request(
            Some(&ctx),
            "bus_facade_eventNotification",
            "getBatch",
            "",
            &nil_item("maxNotifications"),
        ),
    )
    .await;
    assert_eq!(n(&nil), 1_000);
    let all = [("maxNotifications", "50000"), ("markAsReadInd", "Y")];
    assert_eq!(n(&get_batch(&app, &ctx, &all).await), 10_000);
    assert_eq!(app.queue(&key).await["pending"], 1_001);
}

async fn hostile_and_malformed_documents_are_client_faults(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(1)).await;
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body>
<handleRequest><className>&lol3;</className></handleRequest></E:Body></E:Envelope>"#;
    let xxe = r#"<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body>
<handleRequest><className>&x;</className></handleRequest></E:Body></E:Envelope>"#;
    let bad_int = request(
        None,
        "bus_facade_context",
        "login",
        r#"<item><key x:type="s:string">userName</key><value x:type="s:int">abc</value></item>"#,
        "",
    );
    let cases = [
        (laughs.to_string(), "DTD"),
        (xxe.to_string(), "DTD"),
        ("<nope".to_string(), "malformed"),
        (
            request(None, "a", "b", "", "").replace("handleRequest>", "dropAll>"),
            "unknown operation",
        ),
        (bad_int, "not a valid integer"),
    ];
    for (body, needle) in cases {
        let (status, text) = post(&app, body).await;
        assert_eq!(status, 400, "{text}");
        let env = parse_envelope(text.as_bytes()).unwrap();
        assert_eq!(env.body.child("faultcode").unwrap().text, "soap:Client");
        let msg = &env.body.child("faultstring").unwrap().text;
        assert!(msg.contains(needle), "{msg}");
        assert!(!msg.contains("root:"));
    }
    assert_eq!(app.queue(&key).await["pending"], 1);

    // Over the SOAP body limit: a Client fault with 413.
    let small = spawn_app_with(b, &["--max-soap-body-bytes", "2000"]).await;
    let (status, text) = post(&small, request(None, &"x".repeat(5000), "login", "", "")).await;
    assert_eq!(status, 413, "{text}");
    let env = parse_envelope(text.as_bytes()).unwrap();
    assert_eq!(env.body.child("faultcode").unwrap().text, "soap:Client");
    assert!(env
        .body
        .child("faultstring")
        .unwrap()
        .text
        .contains("exceeds 2000 bytes"));
}

/// Axis 1 (Java) clients send the maps as `multiRef` siblings of the
/// operation, referenced by `href`, typed `soapenc:string`.
async fn axis_style_multi_references_are_resolved(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    let body = format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="{S11}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
<ns1:handleRequest soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" xmlns:ns1="urn:localhost-paint">
<contextId xsi:type="xsd:string" xsi:nil="true"/><className xsi:type="xsd:string">bus_facade_context</className>
<processName xsi:type="xsd:string">login</processName><entityData href="#id0"/><processData xsi:nil="true"/>
</ns1:handleRequest>
<multiRef id="id0" soapenc:root="0" xsi:type="ns2:Map" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:ns2="http://xml.apache.org/xml-soap"><item><key xsi:type="soapenc:string">userName</key><value href="#id1"/></item>
<item><key xsi:type="soapenc:string">password</key><value xsi:type="soapenc:string">{key}</value></item></multiRef>
<multiRef id="id1" soapenc:root="0" xsi:type="soapenc:string" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/">acme</multiRef>
</soapenv:Body></soapenv:Envelope>"##
    );
    let r = call(&app, body.clone()).await;
    assert_eq!(result(&r), "success", "{r:?}");
    // A reference to nothing is the caller's fault.
    let (status, text) = post(&app, body.replace(r##"href="#id0""##, r##"href="#id9""##)).await;
    assert_eq!(status, 400);
    assert!(text.contains("#id9"), "{text}");
}

/// Measures a PAINT getBatch with markAsReadInd Y of 10,000 events. Run with
/// `cargo test --release --test paint_api -- --ignored --nocapture`.
#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_paint_get_batch_y_of_10000() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    let ctx = login(&app, "acme", &key).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        app.ingest(&key, &common::opens(10_000)).await;
        let t = std::time::Instant::now();
        let (status, text) = post(
            &app,
            request(
                Some(&ctx),
                "bus_facade_eventNotification",
                "getBatch",
                "",
                &(item("notificationTypes", "OPEN") + &item("maxNotifications", "10000") + &item("markAsReadInd", "Y")),
            ),
        )
        .await;
        let took = t.elapsed();
        assert_eq!(status, 200);
        let env = parse_envelope(text.as_bytes()).unwrap();
        assert_eq!(batch(&map::decode(&env.body.children[0]).unwrap()).count, 10_000);
        println!("getBatch Y of 10,000: {took:?} ({} bytes)", text.len());
        times.push(took);
    }
    println!(
        "PAINT getBatch Y of 10,000 events, median of 5: {:?}",
        common::median(times)
    );
}

/// Our own failures (here: the queue's tables gone) answer
/// `bean_exception_system`, and the events are still there afterwards.
async fn storage_failures_are_bean_exception_system(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &common::opens(1)).await;
    let ctx = login(&app, "acme", &key).await;
    common::hide_tables(b, &app.db_url);
    let r = get_batch(&app, &ctx, &[("markAsReadInd", "Y")]).await;
    assert_eq!(result(&r), "bean_exception_system", "{r:?}");
    assert!(!text(r.get("resultData")).is_empty(), "{r:?}");
    common::restore_tables(b, &app.db_url);
    assert_eq!(batch(&get_batch(&app, &ctx, &[("markAsReadInd", "Y")]).await).count, 1);
}
