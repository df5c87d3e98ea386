//! Guessing credentials: failed authentications are limited per client
//! address on every face (429 with Retry-After, other addresses served);
//! a short operator token is refused at start; one SOAP request cannot
//! carry two identities.

mod common;

use std::net::IpAddr;

use common::{opens, spawn_app_with, Backend, ADMIN};
use eventd::config::ServeSettings;
use eventd::startup::Application;
use reqwest::Client;

both!(
    failed_authentications_are_limited_per_address,
    one_soap_request_carries_one_identity
);

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const TNS: &str = "urn:eventd:eventNotification";

/// A client whose connections come from `ip` (any 127.x address reaches
/// the server on 127.0.0.1).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn paint_login(user: &str, password: &str) -> String {
    format!(
        r#"<E:Envelope xmlns:E="{S11}" xmlns:p="urn:localhost-paint" xmlns:x="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:m="http://xml.apache.org/xml-soap"><E:Body><p:handleRequest>
<contextId x:nil="true"/><className x:type="s:string">bus_facade_context</className>
<processName x:type="s:string">login</processName><entityData x:type="m:Map">
<item><key x:type="s:string">userName</key><value x:type="s:string">{user}</value></item>
<item><key x:type="s:string">password</key><value x:type="s:string">{password}</value></item>
</entityData><processData x:nil="true"/></p:handleRequest></E:Body></E:Envelope>"#
    )
}

async fn status_of(r: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
    let r = r.send().await.unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry, r.text().await.unwrap())
}

/// 2,000 wrong keys in 2.8 s all answered 401. Now, per client address:
/// three failures, then 429 with Retry-After for anything it tries, even
/// a right key; other addresses are not affected.
async fn failed_authentications_are_limited_per_address(b: Backend) {
    let app = spawn_app_with(b, &["--auth-failure-burst", "3", "--auth-failure-interval", "1h"]).await;
    let (_, key) = app.create_account("acme").await;
    let queue = |c: &Client, k: &str| c.get(app.url("/v1/queue")).bearer_auth(k.to_string());

    // Bearer on the JSON API.
    let a = client_from("127.0.0.2");
    for _ in 0..3 {
        assert_eq!(status_of(queue(&a, "evk_wrong")).await.0, 401);
    }
    let (code, retry, body) = status_of(queue(&a, "evk_wrong")).await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("too_many_failures"), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    assert_eq!(status_of(queue(&a, &key)).await.0, 429, "a right key is not even tried");
    // Another address is served.
    assert_eq!(status_of(queue(&app.client, &key)).await.0, 200);

    // The operator token, guessed through Basic.
    let o = client_from("127.0.0.3");
    let accounts = || o.get(app.url("/v1/accounts")).basic_auth("x", Some("not-the-token"));
    for _ in 0..3 {
        assert_eq!(status_of(accounts()).await.0, 401);
    }
    assert_eq!(status_of(accounts()).await.0, 429);
    let r = o.get(app.url("/v1/accounts")).bearer_auth(ADMIN);
    assert_eq!(status_of(r).await.0, 429);

    // PAINT login: a wrong password or an unknown user counts.
    let p = client_from("127.0.0.4");
    let login = |user: &str, pw: &str| {
        p.post(app.url("/soap/paint"))
            .header("Content-Type", "text/xml")
            .body(paint_login(user, pw))
    };
    for (user, pw) in [("acme", "evk_wrong"), ("nobody", "x"), ("acme", "evk_wrong2")] {
        let (code, _, text) = status_of(login(user, pw)).await;
        assert_eq!(code, 200, "{text}");
        assert!(text.contains("bean_exception_security"), "{text}");
    }
    let (code, retry, text) = status_of(login("acme", &key)).await;
    assert_eq!(code, 429, "{text}");
    assert!(retry.is_some() && text.contains("soap:Client"), "{text}");

    // SOAP with a wrong Basic header.
    let s = client_from("127.0.0.5");
    let soap = |k: &str| {
        s.post(app.url("/soap/eventNotification"))
            .basic_auth("acme", Some(k.to_string()))
            .header("Content-Type", "text/xml")
            .body(format!(
                r#"<s:Envelope xmlns:s="{S11}"><s:Body><getQueueStatus xmlns="{TNS}"/></s:Body></s:Envelope>"#
            ))
    };
    for _ in 0..3 {
        assert_eq!(status_of(soap("evk_wrong")).await.0, 401);
    }
    let (code, retry, text) = status_of(soap(&key)).await;
    assert_eq!(code, 429, "{text}");
    assert!(retry.is_some() && text.contains("soap:Client"), "{text}");

    // The first address was never limited by all of this.
    assert_eq!(status_of(queue(&app.client, &key)).await.0, 200);
}

/// Credentials in the HTTP header and a wrong WS-Security password in the
/// same request were resolved in favour of the header; now refused.
/// Also: two Bodies and a raw NUL byte are Client faults, and the
/// operator token on the SOAP service is a 403, not a 500.
async fn one_soap_request_carries_one_identity(b: Backend) {
    let app = spawn_app_with(b, &[]).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(1)).await;
    let wsse = |pw: &str| {
        format!(
            r#"<S:Envelope xmlns:S="{S11}"><S:Header><o:Security
            xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
            <o:UsernameToken><o:Username>acme</o:Username><o:Password>{pw}</o:Password>
            </o:UsernameToken></o:Security></S:Header><S:Body><getQueueStatus xmlns="{TNS}"/></S:Body></S:Envelope>"#
        )
    };
    let post = |auth: Option<&str>, body: String| {
        let mut r = app
            .client
            .post(app.url("/soap/eventNotification"))
            .header("Content-Type", "text/xml")
            .body(body);
        if let Some(k) = auth {
            r = r.basic_auth("acme", Some(k.to_string()));
        }
        status_of(r)
    };
    let (code, _, text) = post(Some(&key), wsse("evk_wrong")).await;
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("different credentials"), "{text}");
    let (code, _, text) = post(Some("evk_wrong"), wsse(&key)).await;
    assert_eq!(code, 401, "{text}");
    assert_eq!(post(Some(&key), wsse(&key)).await.0, 200);

    let op = format!(r#"<getQueueStatus xmlns="{TNS}"/>"#);
    let two_bodies = format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body>{op}</s:Body><s:Body>{op}</s:Body></s:Envelope>"#);
    let (code, _, text) = post(Some(&key), two_bodies).await;
    assert_eq!(code, 500, "{text}");
    assert!(
        text.contains("soap:Client") && text.contains("more than one Body"),
        "{text}"
    );
    let nul =
        format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body>{op}</s:Body></s:Envelope>"#).replace("Status", "St\0atus");
    let (code, _, text) = post(Some(&key), nul).await;
    assert_eq!(code, 500, "{text}");
    assert!(
        text.contains("soap:Client") && text.contains("control character"),
        "{text}"
    );

    let r = app
        .client
        .post(app.url("/soap/eventNotification"))
        .bearer_auth(ADMIN)
        .header("Content-Type", "text/xml")
        .body(wsse(ADMIN));
    let (code, _, text) = status_of(r).await;
    assert_eq!(code, 403, "{text}");
    assert_eq!(app.queue(&key).await["pending"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_operator_token_is_refused_at_start() {
    let (db, _tmp) = common::fresh_database(Backend::Sqlite);
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
            "--admin-token",
            "short-token",
        ];
        a.extend_from_slice(extra);
        ServeSettings::from_args(a.into_iter().map(String::from).collect::<Vec<_>>())
    };
    let err = Application::build(args(&[])).await.err().expect("refused");
    assert!(format!("{err:#}").contains("fewer than 32 characters"), "{err:#}");
    assert!(Application::build(args(&["--allow-short-admin-token"])).await.is_ok());
}
