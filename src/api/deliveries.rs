//! HTTP push attempt log and replay (SPEC §6): `GET /v1/deliveries`,
//! `GET /v1/deliveries/{id}`, `POST /v1/deliveries/{id}/retry`,
//! `POST /v1/deliveries/retry` (every dead delivery of a trigger).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{not_found_as, ApiError, ErrorBody};
use super::extract::{blocking, read_json, state, typed, AccountAuth};
use crate::domain::public_id::{IdCipher, DELIVERY};
use crate::domain::time::{parse_rfc3339, rfc3339};
use crate::domain::Trigger;
use crate::store::push::{AttemptRow, DeliveryFilter, DeliveryRow, PENDING, STATUSES};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// Filters and paging of the attempt log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this trigger's deliveries.
    trigger: Option<String>,
    /// pending, delivered or dead.
    status: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// `next_cursor` of the previous page (opaque).
    cursor: Option<String>,
    /// 1..1000, default 100.
    limit: Option<i64>,
}

/// One request of a delivery.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    attempted_at: String,
    url: String,
    status_code: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
    /// The first 1 KiB of the response body.
    response: Option<String>,
}

/// One event to push and what became of it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// Opaque: `dlv_` and 32 hex digits.
    #[schema(example = "dlv_3f0c9a1e5b7d2c4a8e6f1b3d5c7a9e0f")]
    id: String,
    trigger: String,
    /// http, email or ftp.
    #[schema(example = "http")]
    transport: String,
    /// The event (the first one of a digest mail or FTP file).
    event_id: String,
    /// Events this delivery carries: 1, or a digest mail's or FTP file's count.
    event_count: i64,
    /// A digest's attachment or an FTP file's name (fixed: a retry sends the same).
    name: Option<String>,
    #[schema(example = "delivered")]
    status: String,
    attempts: i64,
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    attempt_log: Vec<AttemptView>,
    /// The event (GET of one delivery only; null for a digest mail or FTP file).
    #[schema(value_type = Option<Object>, nullable = false)]
    event: Option<Value>,
}

/// A page of deliveries, newest first.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct RetryAnswer {
    id: String,
    status: String,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct BulkRetryAnswer {
    retried: u64,
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

fn delivery_view(ids: &IdCipher, account_id: i64, d: &DeliveryRow, attempts: &[AttemptRow]) -> Value {
    json!({
        "id": ids.encode(DELIVERY, account_id, d.id),
        "trigger": d.trigger,
        "transport": d.transport,
        "event_id": d.event_id,
        "event_count": d.event_count,
        "name": d.label,
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

/// The row of a delivery id from the path (made for this account); anything
/// else answers as unknown.
fn parse_id(ids: &IdCipher, account_id: i64, raw: &str) -> Result<i64, ApiError> {
    ids.decode(DELIVERY, account_id, raw).ok_or_else(no_delivery)
}

fn no_delivery() -> ApiError {
    ApiError::not_found("delivery_not_found", "no such delivery")
}

/// The attempt log: deliveries with their attempts, newest first.
#[utoipa::path(get, path = "/v1/deliveries", operation_id = "list_deliveries", tag = "push",
    security(("bearer" = []), ("basic" = [])), params(ListQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
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
        // The cursor is the last delivery of the previous page.
        before_id: q
            .cursor
            .as_deref()
            .map(|c| {
                st.ids
                    .decode(DELIVERY, account.id, c)
                    .ok_or_else(|| ApiError::bad_request("bad_cursor", "'cursor' is not a cursor this API returned"))
            })
            .transpose()?,
        limit,
    };
    let store = st.store.clone();
    let (rows, attempts) = blocking(move || store.list_deliveries(account.id, &filter)).await?;
    let next_cursor =
        (rows.len() as i64 == limit).then(|| rows.last().map(|r| st.ids.encode(DELIVERY, account.id, r.id)));
    let items: Vec<Value> = rows
        .iter()
        .map(|d| {
            delivery_view(
                &st.ids,
                account.id,
                d,
                attempts.get(&d.id).map(Vec::as_slice).unwrap_or(&[]),
            )
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"deliveries": items, "next_cursor": next_cursor.flatten()})))
}

/// One delivery with its event and attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", operation_id = "get_delivery", tag = "push",
    security(("bearer" = []), ("basic" = [])),
    params(("id" = String, Path, description = "Delivery id")),
    responses(
        (status = 200, body = DeliveryView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn get(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
    let id = parse_id(&st.ids, account.id, &path)?;
    let store = st.store.clone();
    let (row, payload, attempts) =
        blocking(move || store.delivery(account.id, id).map_err(not_found_as(no_delivery()))).await?;
    let mut v = delivery_view(&st.ids, account.id, &row, &attempts);
    // null once a delivered delivery's event is past the history retention.
    v["event"] = payload
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or(Value::Null);
    Ok(HttpResponse::Ok().json(v))
}

/// Sends a delivery again now, with a fresh retry schedule.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", operation_id = "retry_delivery", tag = "push",
    security(("bearer" = []), ("basic" = [])),
    params(("id" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, body = RetryAnswer),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Being sent right now, or delivered and its event past the history retention", body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn retry(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
    let id = parse_id(&st.ids, account.id, &path)?;
    let store = st.store.clone();
    blocking(move || {
        store
            .retry_delivery(account.id, id)
            .map_err(not_found_as(no_delivery()))
    })
    .await?;
    Ok(HttpResponse::Accepted().json(json!({"id": path.as_str(), "status": PENDING})))
}

/// Which trigger's dead deliveries to send again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetry {
    #[schema(example = "OPEN")]
    trigger: String,
}

/// Every dead delivery of one trigger goes back to the queue.
#[utoipa::path(post, path = "/v1/deliveries/retry", operation_id = "retry_dead_deliveries", tag = "push",
    request_body = BulkRetry, security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 202, body = BulkRetryAnswer),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
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
    let n = blocking(move || store.retry_dead(account.id, trigger)).await?;
    Ok(HttpResponse::Accepted().json(json!({"retried": n})))
}
