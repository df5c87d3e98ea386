//! HTTP push attempt log and replay (SPEC §6): `GET /v1/deliveries`,
//! `GET /v1/deliveries/{id}`, `POST /v1/deliveries/{id}/retry`,
//! `POST /v1/deliveries/retry` (every dead delivery of a trigger).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{read_json, state, typed, AccountAuth};
use super::ApiError;
use crate::domain::time::{parse_rfc3339, rfc3339};
use crate::domain::Trigger;
use crate::store::push::{AttemptRow, DeliveryFilter, DeliveryRow, PENDING, STATUSES};
use crate::store::StoreError;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    trigger: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn attempt_view(a: &AttemptRow) -> Value {
    json!({
        "attempted_at": rfc3339(a.attempted_at),
        "url": a.url,
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "error": a.error,
        "response": a.response,
    })
}

fn delivery_view(d: &DeliveryRow, attempts: &[AttemptRow]) -> Value {
    json!({
        "id": d.id.to_string(),
        "trigger": d.trigger,
        "event_id": d.event_id,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == PENDING).then(|| rfc3339(d.next_at)),
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "attempt_log": attempts.iter().map(attempt_view).collect::<Vec<_>>(),
    })
}

fn parse_trigger(raw: &str) -> Result<Trigger, ApiError> {
    raw.parse::<Trigger>().map_err(|e| {
        ApiError::unprocessable("unknown_trigger", e.to_string()).with_details(json!({"valid": Trigger::ALL}))
    })
}

fn parse_time(name: &str, raw: &str) -> Result<i64, ApiError> {
    parse_rfc3339(raw)
        .ok_or_else(|| ApiError::bad_request("bad_query", format!("'{name}' must be an RFC 3339 time, got '{raw}'")))
}

/// A delivery id from the path; anything else answers as unknown.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::not_found("delivery_not_found", "no such delivery"))
}

fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("delivery_not_found", "no such delivery"),
        other => other.into(),
    }
}

pub async fn list(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("'limit' must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(*STATUSES.iter().find(|v| **v == s).ok_or_else(|| {
            ApiError::bad_request(
                "bad_query",
                format!("'status' must be one of {}, got '{s}'", STATUSES.join(", ")),
            )
        })?),
    };
    let filter = DeliveryFilter {
        trigger: q.trigger.as_deref().map(parse_trigger).transpose()?,
        status,
        since_ms: q.since.as_deref().map(|s| parse_time("since", s)).transpose()?,
        until_ms: q.until.as_deref().map(|s| parse_time("until", s)).transpose()?,
        before_id: q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| ApiError::bad_request("bad_cursor", "'cursor' is not a cursor this API returned"))
            })
            .transpose()?,
        limit,
    };
    let store = state(&req).store.clone();
    let (rows, attempts) = web::block(move || store.list_deliveries(account.id, &filter))
        .await
        .map_err(|_| ApiError::internal())??;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.id.to_string()));
    let items: Vec<Value> = rows
        .iter()
        .map(|d| delivery_view(d, attempts.get(&d.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"deliveries": items, "next_cursor": next_cursor.flatten()})))
}

pub async fn get(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let store = state(&req).store.clone();
    let (row, payload, attempts) = web::block(move || store.delivery(account.id, id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(not_found)?;
    let mut v = delivery_view(&row, &attempts);
    v["event"] = serde_json::from_str(&payload).unwrap_or(Value::Null);
    Ok(HttpResponse::Ok().json(v))
}

pub async fn retry(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let store = state(&req).store.clone();
    web::block(move || store.retry_delivery(account.id, id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(not_found)?;
    Ok(HttpResponse::Accepted().json(json!({"id": id.to_string(), "status": PENDING})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRetry {
    trigger: String,
}

/// Every dead delivery of one trigger goes back to the queue.
pub async fn retry_dead(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let value = read_json(&req, body)
        .await?
        .ok_or_else(|| ApiError::unprocessable("invalid_request", "a body {\"trigger\": …} is required"))?;
    let bulk: BulkRetry = typed(value)?;
    let trigger = parse_trigger(&bulk.trigger)?;
    let store = state(&req).store.clone();
    let n = web::block(move || store.retry_dead(account.id, trigger))
        .await
        .map_err(|_| ApiError::internal())??;
    Ok(HttpResponse::Accepted().json(json!({"retried": n})))
}
