//! Client pull over JSON (SPEC §5): fetch, mark read, release.

use std::fmt::Write;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{read_json, state, typed, AccountAuth};
use crate::domain::event::Event;
use crate::domain::time::rfc3339;
use crate::domain::Trigger;
use crate::pull::FetchParams;
use crate::store::queue::Batch;
use crate::store::StoreError;

/// Fetch parameters; all optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchBody {
    /// Most events in the batch (1..10000, default 1000).
    #[schema(minimum = 1, maximum = 10000)]
    size: Option<i64>,
    /// The reader (default "default"). The same consumer gets its open batch again.
    #[schema(max_length = 100, pattern = "^[A-Za-z0-9._:@-]+$")]
    consumer: Option<String>,
    /// Only these triggers (default: all).
    #[schema(value_type = Option<Vec<Trigger>>)]
    triggers: Option<Vec<String>>,
    /// Lease length (1..43200, default 300).
    #[schema(minimum = 1, maximum = 43200)]
    lease_seconds: Option<i64>,
    /// Long poll: wait up to this long for events when none are pending (0..20).
    #[schema(minimum = 0, maximum = 20)]
    wait_seconds: Option<f64>,
}

/// A batch. An empty queue gives `batch_id: null` and no events.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct BatchView {
    batch_id: Option<String>,
    #[schema(nullable = false)]
    consumer: Option<String>,
    expires_at: Option<String>,
    /// Events of the fetched triggers still waiting after this batch (not in any open batch).
    remaining: i64,
    count: usize,
    /// Oldest first.
    events: Vec<Event>,
}

#[derive(Serialize, ToSchema)]
pub struct MarkedRead {
    pub batch_id: String,
    /// Events this call took out of the queue for good (0 when the batch was
    /// already read). Their rows are deleted shortly after (`--sweep-delay`).
    pub deleted: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    pub batch_id: String,
    /// Events returned to the queue by this call.
    pub released: i64,
}

/// Fetches a batch of the oldest pending events and leases it.
#[utoipa::path(post, path = "/v1/batches", operation_id = "fetch_batch", tag = "pull", request_body(content = Option<FetchBody>),
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, body = BatchView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
        (status = 507, description = "`storage_full`: the database is out of space (a fetch writes its batch)", body = ErrorBody),
    ))]
pub async fn fetch(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: FetchBody = match read_json(&req, body).await? {
        Some(v) => typed(v)?,
        None => FetchBody::default(),
    };
    let (fetch, wait) = FetchParams {
        size: body.size,
        consumer: body.consumer,
        triggers: body.triggers,
        lease_seconds: body.lease_seconds,
        wait_seconds: body.wait_seconds,
    }
    .validate()
    .map_err(|e| {
        let code = if e.field == "triggers" {
            "unknown_trigger"
        } else {
            "invalid_parameter"
        };
        ApiError::unprocessable(code, e.to_string()).with_details(json!({"field": e.field}))
    })?;
    let batch = state(&req).pull.fetch(account.id, fetch, wait).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(render(batch.as_ref())))
}

/// Writes the response by hand: the events are already JSON, stored once at
/// ingest, and are copied into the body without being parsed again.
fn render(batch: Option<&Batch>) -> String {
    let Some(b) = batch else {
        return r#"{"batch_id":null,"expires_at":null,"remaining":0,"count":0,"events":[]}"#.to_string();
    };
    let size: usize = b.payloads.iter().map(|p| p.len() + 1).sum();
    let mut out = String::with_capacity(size + 200);
    let _ = write!(
        out,
        r#"{{"batch_id":{},"consumer":{},"expires_at":"{}","remaining":{},"count":{},"events":["#,
        json!(b.id),
        json!(b.consumer),
        rfc3339(b.expires_at_ms),
        b.remaining,
        b.payloads.len()
    );
    for (i, p) in b.payloads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(p);
    }
    out.push_str("]}");
    out
}

fn batch_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("batch_not_found", "no such batch"),
        StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "batch_conflict", m),
        other => other.into(),
    }
}

/// Marks a batch read: its events are deleted. Idempotent.
#[utoipa::path(post, path = "/v1/batches/{id}/read", operation_id = "mark_batch_read", tag = "pull", security(("bearer" = []), ("basic" = [])),
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, body = MarkedRead),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Released, or expired and handed to another batch", body = ErrorBody),
        (status = 503, body = ErrorBody),
        (status = 507, description = "`storage_full`: the database is out of space", body = ErrorBody),
    ))]
pub async fn mark_read(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let deleted = state(&req)
        .pull
        .mark_read(account.id, id.clone())
        .await
        .map_err(batch_error)?;
    Ok(HttpResponse::Ok().json(MarkedRead { batch_id: id, deleted }))
}

/// Releases a batch: its events return to the queue at once.
#[utoipa::path(post, path = "/v1/batches/{id}/release", operation_id = "release_batch", tag = "pull", security(("bearer" = []), ("basic" = [])),
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, body = Released),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already marked read", body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 507, description = "`storage_full`: the database is out of space", body = ErrorBody),
    ))]
pub async fn release(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let released = state(&req)
        .pull
        .release(account.id, id.clone())
        .await
        .map_err(batch_error)?;
    Ok(HttpResponse::Ok().json(Released { batch_id: id, released }))
}
