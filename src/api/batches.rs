//! Client pull over JSON (SPEC §5): fetch, mark read, release.

use std::fmt::Write;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::extract::{read_json, state, typed, AccountAuth};
use super::ApiError;
use crate::domain::time::rfc3339;
use crate::pull::FetchParams;
use crate::store::queue::Batch;
use crate::store::StoreError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchBody {
    size: Option<i64>,
    consumer: Option<String>,
    triggers: Option<Vec<String>>,
    lease_seconds: Option<i64>,
    wait_seconds: Option<f64>,
}

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
    Ok(HttpResponse::Ok().json(json!({"batch_id": id, "deleted": deleted})))
}

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
    Ok(HttpResponse::Ok().json(json!({"batch_id": id, "released": released})))
}
