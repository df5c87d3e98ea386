//! Drop-in compatibility with the PAINT event notification API (SPEC §5):
//! rpc/encoded SOAP 1.1, one operation `handleRequest(contextId, className,
//! processName, entityData, processData)` taking and returning Apache SOAP
//! maps. Supported: `bus_facade_context` `login`/`logout` and
//! `bus_facade_eventNotification` `getBatch`, over the same
//! [`crate::pull::Pull`] operations as the other faces.

mod csv_batch;
mod outcome;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::distributions::Alphanumeric;
use rand::Rng;

use std::net::IpAddr;

use crate::auth::{AuthError, Principal};
use crate::domain::event::Event;
use crate::domain::keys;
use crate::domain::time::now_ms;
use crate::domain::Trigger;
use crate::pull::{FetchParams, MAX_BATCH};
use crate::soapxml::envelope::{self, FaultCode};
use crate::soapxml::http as soaphttp;
use crate::soapxml::map::{self, MapValue, Prefixes};
use crate::soapxml::SOAP11_ENC;
use crate::state::AppState;
use crate::store::StoreError;
use outcome::{system, Outcome};

pub const NS: &str = "urn:localhost-paint";
pub const PATH: &str = "/soap/paint";
pub const WSDL: &str = include_str!("../../wsdl/paint.wsdl");
const SERVICE: soaphttp::Service = soaphttp::Service {
    name: "PAINT",
    path: PATH,
    wsdl: WSDL,
    wsdl_address: "http://localhost:8080/soap/paint",
};

/// Events per getBatch when maxNotifications is nil.
pub const DEFAULT_MAX_NOTIFICATIONS: i64 = 1_000;
/// How long a getBatch holds its events between fetching and deleting or
/// releasing them (if the node dies in between, they come back after this).
const LEASE_SECONDS: i64 = 120;

const CONTEXT: &str = "bus_facade_context";
const EVENTS: &str = "bus_facade_eventNotification";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(PATH)
            .route(web::get().to(wsdl))
            .route(web::post().to(handle)),
    );
}

async fn wsdl(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    soaphttp::get_wsdl(&req, st.settings.public_url.as_deref(), &SERVICE)
}

/// The caller's fault: HTTP 400 (never a 500 for the caller's mistake).
fn client_fault(v: envelope::SoapVersion, message: &str) -> HttpResponse {
    soaphttp::fault_with_status(v, StatusCode::BAD_REQUEST, FaultCode::Client, message)
}

async fn handle(req: HttpRequest, body: web::Payload, st: web::Data<AppState>) -> HttpResponse {
    let env = match st.envelopes.read(&req, body).await {
        Ok(e) => e,
        Err(e) => return e.respond(client_fault),
    };
    let v = env.version;
    if let Some(h) = envelope::not_understood(&env, |_| false) {
        let msg = format!("header '{}' is not understood", h.name.local);
        return soaphttp::fault_with_status(v, StatusCode::BAD_REQUEST, FaultCode::MustUnderstand, &msg);
    }
    let op = &env.body;
    if op.local() != "handleRequest" {
        let msg = format!("unknown operation '{}': this service has handleRequest", op.local());
        return client_fault(v, &msg);
    }
    let mut req_parts = Parts::default();
    for part in &op.children {
        let value = match map::decode_in(part, &env.body_rest) {
            Ok(v) => v,
            Err(m) => return client_fault(v, &format!("part '{}': {m}", part.local())),
        };
        match part.local() {
            "contextId" => req_parts.context_id = value,
            "className" => req_parts.class_name = value,
            "processName" => req_parts.process_name = value,
            "entityData" => req_parts.entity = value,
            "processData" => req_parts.process = value,
            _ => {}
        }
    }
    let outcome = dispatch(&st, req_parts, req.peer_addr().map(|a| a.ip())).await;
    if let Some(r) = outcome.http_fault(v) {
        return r;
    }
    let p = Prefixes::default();
    let mut out = String::with_capacity(4096);
    let d = p.declarations();
    envelope::start(&mut out, v, &[("ns1", NS), d[0], d[1], d[2], d[3]]);
    out.push_str("<ns1:handleRequestResponse soap:encodingStyle=\"");
    out.push_str(SOAP11_ENC);
    out.push_str("\">");
    map::encode_value(&mut out, "handleRequestReturn", &outcome.into_map(), &p);
    out.push_str("</ns1:handleRequestResponse>");
    envelope::end(&mut out);
    soaphttp::respond(v, StatusCode::OK, out)
}

#[derive(Default)]
struct Parts {
    context_id: MapValue,
    class_name: MapValue,
    process_name: MapValue,
    entity: MapValue,
    process: MapValue,
}

fn text(v: &MapValue) -> String {
    v.as_text().map(|s| s.trim().to_string()).unwrap_or_default()
}

async fn dispatch(st: &web::Data<AppState>, p: Parts, client: Option<IpAddr>) -> Outcome {
    let class = text(&p.class_name);
    let process = text(&p.process_name);
    match (class.as_str(), process.as_str()) {
        (CONTEXT, "login") => login(st, &p.entity, client).await,
        (CONTEXT, "logout") => match context(st, &p.context_id, client).await {
            Ok((account_id, hash)) => {
                let store = st.store.clone();
                match web::block(move || store.delete_paint_context(account_id, &hash)).await {
                    Ok(Ok(_)) => Outcome::Success(MapValue::Map(vec![])),
                    Ok(Err(e)) => system(e),
                    Err(_) => Outcome::failed(),
                }
            }
            Err(o) => o,
        },
        (EVENTS, "getBatch") => match context(st, &p.context_id, client).await {
            Ok((account_id, _)) => get_batch(st, account_id, &p.process, &p.entity).await,
            Err(o) => o,
        },
        (CONTEXT, other) | (EVENTS, other) => Outcome::invalid(
            "processName",
            format!(
                "unsupported processName '{other}' for {class}: supported are {CONTEXT} login/logout and {EVENTS} getBatch"
            ),
        ),
        (other, _) => Outcome::invalid(
            "className",
            format!("unsupported className '{other}': supported are {CONTEXT} (login, logout) and {EVENTS} (getBatch)"),
        ),
    }
}

const BAD_CONTEXT: &str = "invalid or expired context: log in again with bus_facade_context login";

/// Resolves a context id to its account (and refreshes its idle timer).
/// An unknown context id counts as a failed authentication.
async fn context(st: &web::Data<AppState>, id: &MapValue, client: Option<IpAddr>) -> Result<(i64, String), Outcome> {
    if let Err(AuthError::Limited(w)) = st.auth.check_client(client) {
        return Err(Outcome::Limited(w));
    }
    let bad = || {
        st.auth.failed(client);
        Outcome::Security(BAD_CONTEXT.into())
    };
    let id = text(id);
    let account_id: i64 = id.split_once('-').and_then(|(a, _)| a.parse().ok()).ok_or_else(bad)?;
    let hash = keys::hash(&id);
    let idle_ms = idle_ms(st);
    let store = st.store.clone();
    let h = hash.clone();
    match web::block(move || store.touch_paint_context(account_id, &h, now_ms(), idle_ms)).await {
        Ok(Ok(true)) => Ok((account_id, hash)),
        Ok(Ok(false)) => Err(bad()),
        Ok(Err(e)) => Err(system(e)),
        Err(_) => Err(Outcome::failed()),
    }
}

fn idle_ms(st: &web::Data<AppState>) -> i64 {
    i64::try_from(st.settings.paint_context_idle_seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

async fn login(st: &web::Data<AppState>, entity: &MapValue, client: Option<IpAddr>) -> Outcome {
    if let Err(AuthError::Limited(w)) = st.auth.check_client(client) {
        return Outcome::Limited(w);
    }
    let user = entity.get("userName").map(text).unwrap_or_default();
    let password = entity.get("password").map(text).unwrap_or_default();
    let mut missing = vec![];
    if user.is_empty() {
        missing.push(("userName".to_string(), MapValue::str("required: the account name")));
    }
    if password.is_empty() {
        missing.push((
            "password".to_string(),
            MapValue::str("required: an API key of the account"),
        ));
    }
    if !missing.is_empty() {
        return Outcome::Validation(missing);
    }
    let store = st.store.clone();
    let auth = st.auth.clone();
    let idle = idle_ms(st);
    let idle_seconds = st.settings.paint_context_idle_seconds;
    let result = web::block(move || -> Result<Option<(i64, String, String)>, StoreError> {
        let account = match store.find_account_by_name(&user) {
            Ok(a) => a,
            Err(StoreError::NotFound) => {
                auth.failed(client);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match auth.authenticate_key(&password, client) {
            Ok(Principal::Account(a)) if a.id == account.id => {}
            Ok(_) => {
                auth.failed(client);
                return Ok(None);
            }
            Err(AuthError::Invalid | AuthError::Missing | AuthError::Limited(_)) => return Ok(None),
            Err(AuthError::Store(e)) => return Err(e),
        }
        let secret: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let id = format!("{}-{secret}", account.id);
        if !store.create_paint_context(account.id, &keys::hash(&id), &keys::hash(&password), now_ms(), idle)? {
            // The key was revoked between the check and now.
            return Ok(None);
        }
        Ok(Some((account.id, account.name, id)))
    })
    .await;
    match result {
        Ok(Ok(Some((account_id, name, id)))) => Outcome::Success(MapValue::map(vec![(
            "bus_entity_context",
            MapValue::map(vec![
                ("beanId", MapValue::Str(id)),
                ("userName", MapValue::Str(name)),
                ("accountId", MapValue::Int(account_id)),
                ("idleTimeoutSeconds", MapValue::Int(idle_seconds as i64)),
            ]),
        )])),
        Ok(Ok(None)) => Outcome::Security("invalid user name or password".into()),
        Ok(Err(e)) => system(e),
        Err(_) => Outcome::failed(),
    }
}

/// A getBatch parameter from processData, else from entityData (nil = absent).
fn param<'a>(name: &str, process: &'a MapValue, entity: &'a MapValue) -> Option<&'a MapValue> {
    process
        .get(name)
        .filter(|v| !v.is_nil())
        .or_else(|| entity.get(name).filter(|v| !v.is_nil()))
}

/// customFieldNames: a list, a map of names, or a comma list.
fn custom_fields(v: Option<&MapValue>) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut push = |s: &str| {
        for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            names.push(n.to_string());
        }
    };
    match v {
        None => {}
        Some(MapValue::Array(items)) => {
            for i in items {
                push(&i.as_text().ok_or("must hold field names")?);
            }
        }
        Some(MapValue::Map(items)) => {
            for (_, i) in items {
                push(&i.as_text().ok_or("must hold field names")?);
            }
        }
        Some(other) => push(&other.as_text().ok_or("must be a list of field names")?),
    }
    if names.len() > 100 {
        return Err("at most 100 custom fields".into());
    }
    Ok(names)
}

/// PAINT's name of a sign-up through a form, eventd's OPTIN.
const SIGNUP: &str = "SIGNUP";

/// A notification type as PAINT names it (case-insensitive): a trigger, or
/// `SIGNUP` for OPTIN. The name is the one answers use for it.
fn paint_type(raw: &str) -> Option<(Trigger, &'static str)> {
    if raw.eq_ignore_ascii_case(SIGNUP) {
        return Some((Trigger::OptIn, SIGNUP));
    }
    raw.to_ascii_uppercase()
        .parse::<Trigger>()
        .ok()
        .map(|t| (t, t.as_str()))
}

async fn get_batch(st: &web::Data<AppState>, account_id: i64, process: &MapValue, entity: &MapValue) -> Outcome {
    let mut errors: Vec<(String, MapValue)> = Vec::new();
    let mut invalid = |field: &str, msg: String| errors.push((field.to_string(), MapValue::Str(msg)));

    let types = param("notificationTypes", process, entity)
        .map(text)
        .unwrap_or_default();
    // Each requested trigger with the name it was asked by (the first one
    // when asked twice), in request order.
    let mut requested: Vec<(Trigger, &'static str)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match paint_type(t) {
            Some(r) if requested.iter().any(|(seen, _)| *seen == r.0) => {}
            Some(r) => requested.push(r),
            None => unknown.push(t.to_string()),
        }
    }
    if !unknown.is_empty() {
        invalid(
            "notificationTypes",
            format!(
                "unknown notification type(s): {}; valid: {}, and {SIGNUP} for OPTIN",
                unknown.join(", "),
                Trigger::valid_names()
            ),
        );
    }
    if requested.is_empty() {
        requested = Trigger::ALL.iter().map(|t| (*t, t.as_str())).collect();
    }
    let max = match param("maxNotifications", process, entity) {
        None => DEFAULT_MAX_NOTIFICATIONS,
        Some(v) => match v.as_text().and_then(|s| s.trim().parse::<i64>().ok()) {
            Some(n) if n >= 1 => n.min(MAX_BATCH),
            _ => {
                invalid(
                    "maxNotifications",
                    format!("must be a whole number from 1 to {MAX_BATCH}"),
                );
                0
            }
        },
    };
    let mark_read = match param("markAsReadInd", process, entity).map(text).as_deref() {
        None | Some("") => false,
        Some(s) if s.eq_ignore_ascii_case("Y") => true,
        Some(s) if s.eq_ignore_ascii_case("N") => false,
        Some(s) => {
            invalid("markAsReadInd", format!("must be Y or N, not '{s}'"));
            false
        }
    };
    if let Some(ct) = param("clientType", process, entity).map(text) {
        if !ct.is_empty() && !ct.eq_ignore_ascii_case("CLIENT_PULL") {
            invalid("clientType", format!("only CLIENT_PULL is supported, not '{ct}'"));
        }
    }
    // What the sample clients send; other values ask for what this server
    // does not do (another encoding, a "processing" state), so they are refused.
    if let Some(enc) = param("encoding", process, entity).map(text) {
        if !enc.is_empty() && !enc.eq_ignore_ascii_case("plain") {
            invalid("encoding", format!("only plain is supported, not '{enc}'"));
        }
    }
    if let Some(p) = param("markAsProcessingInd", process, entity).map(text) {
        if !p.is_empty() && !p.eq_ignore_ascii_case("N") {
            invalid("markAsProcessingInd", format!("only N is supported, not '{p}'"));
        }
    }
    let custom = match custom_fields(param("customFieldNames", process, entity)) {
        Ok(c) => c,
        Err(m) => {
            invalid("customFieldNames", m.to_string());
            vec![]
        }
    };
    if !errors.is_empty() {
        return Outcome::Validation(errors);
    }

    let params = FetchParams {
        size: Some(max),
        consumer: Some(format!("paint-{}", uuid::Uuid::now_v7().simple())),
        triggers: Some(requested.iter().map(|(t, _)| t.as_str().to_string()).collect()),
        lease_seconds: Some(LEASE_SECONDS),
        wait_seconds: None,
    };
    let (fetch, wait) = match params.validate() {
        Ok(v) => v,
        Err(e) => return Outcome::invalid(e.field, e.message),
    };
    let batch = match st.pull.fetch(account_id, fetch, wait).await {
        Ok(b) => b,
        Err(e) => return system(e),
    };
    let mut events = Vec::new();
    if let Some(b) = &batch {
        for p in &b.payloads {
            match serde_json::from_str::<Event>(p) {
                Ok(e) => events.push(e),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable stored event");
                    let _ = st.pull.release(account_id, b.id.clone()).await;
                    return Outcome::System("a stored event is unreadable".into());
                }
            }
        }
        // Y: the events are deleted in this call; N: they go straight back.
        let closed = if mark_read {
            st.pull.mark_read(account_id, b.id.clone()).await
        } else {
            st.pull.release(account_id, b.id.clone()).await
        };
        if let Err(e) = closed {
            return system(e);
        }
    }
    let csv = match csv_batch::build(&events, &custom, &requested) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "CSV encoding failed");
            return Outcome::System("the server failed to encode the batch".into());
        }
    };
    let meta = csv
        .meta
        .into_iter()
        .map(|(name, h)| (name.to_string(), MapValue::Str(h)))
        .collect();
    Outcome::Success(MapValue::map(vec![(
        "bus_entity_eventNotificationBatch",
        MapValue::map(vec![
            ("eventCount", MapValue::Int(events.len() as i64)),
            ("eventMeta", MapValue::Map(meta)),
            ("eventData", MapValue::Str(csv.data)),
        ]),
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_100_custom_fields_in_any_form() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        let comma = |n| MapValue::str(names(n).join(", "));
        assert_eq!(custom_fields(Some(&comma(100))).unwrap(), names(100));
        assert!(custom_fields(Some(&comma(101))).is_err());
        let list = MapValue::Array(names(101).into_iter().map(MapValue::Str).collect());
        assert!(custom_fields(Some(&list)).is_err());
    }
}
