//! A PAINT client for the tests: `handleRequest` envelopes written the
//! way PHP's SoapClient writes them, posted to `/soap/paint`, answers
//! decoded into Apache SOAP maps.

use eventd::soapxml::envelope::parse_envelope;
use eventd::soapxml::map::{self, MapValue};

use super::TestApp;

pub const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A handleRequest envelope written the way PHP's SoapClient writes it,
/// with our own prefixes; `entity`/`process` are already-encoded maps or "".
pub fn request(ctx: Option<&str>, class: &str, process_name: &str, entity: &str, process: &str) -> String {
    let ctx = match ctx {
        Some(c) => format!(r#"<contextId x:type="s:string">{c}</contextId>"#),
        None => r#"<contextId x:nil="true"/>"#.to_string(),
    };
    let part = |name: &str, body: &str| {
        if body.is_empty() {
            format!(r#"<{name} x:nil="true"/>"#)
        } else {
            format!(r#"<{name} x:type="m:Map">{body}</{name}>"#)
        }
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<E:Envelope xmlns:E="{S11}" xmlns:p="urn:localhost-paint" xmlns:x="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:m="http://xml.apache.org/xml-soap"
 xmlns:enc="http://schemas.xmlsoap.org/soap/encoding/" E:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
<E:Body><p:handleRequest>{ctx}<className x:type="s:string">{class}</className><processName x:type="s:string">{process_name}</processName>{}{}</p:handleRequest></E:Body></E:Envelope>"#,
        part("entityData", entity),
        part("processData", process)
    )
}

pub fn item(key: &str, value: &str) -> String {
    format!(r#"<item><key x:type="s:string">{key}</key><value x:type="s:string">{value}</value></item>"#)
}

pub fn nil_item(key: &str) -> String {
    format!(r#"<item><key x:type="s:string">{key}</key><value x:nil="true"/></item>"#)
}

pub async fn post(app: &TestApp, body: String) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/soap/paint"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Posts a request and decodes the returned map.
pub async fn call(app: &TestApp, body: String) -> MapValue {
    let (status, text) = post(app, body).await;
    assert_eq!(status, 200, "{text}");
    let env = parse_envelope(text.as_bytes()).unwrap();
    assert!(
        env.body.name.is("urn:localhost-paint", "handleRequestResponse"),
        "{text}"
    );
    map::decode(&env.body.children[0]).unwrap()
}

pub fn result(v: &MapValue) -> &str {
    match v.get("result") {
        Some(MapValue::Str(s)) => s,
        other => panic!("no result: {other:?}"),
    }
}

pub fn text(v: Option<&MapValue>) -> String {
    v.and_then(|v| v.as_text()).map(|s| s.into_owned()).unwrap_or_default()
}

pub async fn login(app: &TestApp, user: &str, key: &str) -> String {
    let r = call(
        app,
        request(
            None,
            "bus_facade_context",
            "login",
            &(item("userName", user) + &item("password", key)),
            "",
        ),
    )
    .await;
    assert_eq!(result(&r), "success", "{r:?}");
    text(
        r.get("resultData")
            .and_then(|d| d.get("bus_entity_context"))
            .and_then(|c| c.get("beanId")),
    )
}

/// An unsent PAINT login of `acme` with `key` (for tests that look at the
/// raw answer: status, headers, faults).
pub fn login_request(app: &TestApp, key: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/soap/paint"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(request(
            None,
            "bus_facade_context",
            "login",
            &(item("userName", "acme") + &item("password", key)),
            "",
        ))
}

/// An unsent SOAP 1.1 `fetchBatch` of 10 for `acme` with `key` (Basic).
pub fn soap_fetch_request(app: &TestApp, key: &str) -> reqwest::RequestBuilder {
    let body = format!(
        r#"<s:Envelope xmlns:s="{S11}" xmlns:e="urn:eventd:eventNotification"><s:Body><e:fetchBatch><e:size>10</e:size></e:fetchBatch></s:Body></s:Envelope>"#
    );
    app.client
        .post(app.url("/soap/eventNotification"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .basic_auth("acme", Some(key))
        .body(body)
}
