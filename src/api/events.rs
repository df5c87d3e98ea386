//! Ingest (SPEC §4): `POST /v1/events` with an account key, or
//! `POST /v1/accounts/{id}/events` with the operator token.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::accounts::no_account;
use super::error::{not_found_as, ApiError, ErrorBody};
use super::extract::{blocking, read_json, state, IngestAuth, OperatorAuth};
use crate::auth::AuthError;
use crate::domain::event::validate_all;
use crate::domain::time::now_ms;
use crate::domain::Trigger;

/// An event as the producer sends it (SPEC §2). Validation is all or
/// nothing: one invalid event rejects the request, naming every offender.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    trigger: Trigger,
    /// When it happened (RFC 3339); default: receipt time.
    occurred_at: Option<String>,
    /// Email address or phone number; required except for DELIVERYSTART and DELIVERY.
    #[schema(max_length = 320)]
    recipient: Option<String>,
    #[schema(max_length = 200)]
    campaign_id: Option<String>,
    #[schema(max_length = 200)]
    message_id: Option<String>,
    #[schema(max_length = 200)]
    list_id: Option<String>,
    #[schema(max_length = 8192)]
    url: Option<String>,
    #[schema(max_length = 100)]
    bounce_type: Option<String>,
    #[schema(max_length = 4000)]
    bounce_reason: Option<String>,
    /// IPv4 or IPv6 address.
    #[schema(max_length = 45)]
    ip: Option<String>,
    #[schema(max_length = 2000)]
    user_agent: Option<String>,
    /// Idempotency key: the same (account, external_id) is stored once.
    #[schema(max_length = 200)]
    external_id: Option<String>,
    /// Anything else, ≤ 64 KiB serialised.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// One event, or an array of up to 10,000.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IngestBody {
    One(Box<EventInput>),
    Many(Vec<EventInput>),
}

#[derive(Serialize, ToSchema)]
pub struct Ingested {
    /// Events stored (committed before this answer).
    pub accepted: usize,
    /// Events dropped because their external_id was already used.
    pub duplicates: usize,
}
/// Ingests events for the calling account.
#[utoipa::path(post, path = "/v1/events", operation_id = "ingest", tag = "events", request_body = IngestBody,
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 202, description = "Committed", body = Ingested),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid; `details` lists every offending index and field", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: nothing was stored; retry after `Retry-After`", body = ErrorBody),
        (status = 507, description = "`storage_full`: a storage watermark is reached (fetch and mark-read work), or the database is out of space; nothing was stored", body = ErrorBody),
    ))]
pub async fn ingest(auth: IngestAuth, req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let value = read_json(&req, body).await?;
    accept(&req, auth.account.id, value, Some(auth.key_hash)).await
}

/// Ingests events for any account (operator token).
#[utoipa::path(post, path = "/v1/accounts/{id}/events", operation_id = "ingest_for_account", tag = "events", request_body = IngestBody,
    security(("bearer" = []), ("basic" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses(
        (status = 202, description = "Committed", body = Ingested),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "`database_unavailable`: nothing was stored; retry after `Retry-After`", body = ErrorBody),
        (status = 507, description = "`storage_full`: a storage watermark is reached, or the database is out of space; nothing was stored", body = ErrorBody),
    ))]
pub async fn ingest_as_operator(
    _: OperatorAuth,
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.into_inner();
    let value = read_json(&req, body).await?;
    let store = state(&req).store.clone();
    blocking(move || store.find_account(account_id).map_err(not_found_as(no_account()))).await?;
    accept(&req, account_id, value, None).await
}

/// Validates and stores; `key_hash`: the caller's API key, checked live in
/// the transaction that stores the events (None: the operator).
async fn accept(
    req: &HttpRequest,
    account_id: i64,
    value: Option<Value>,
    key_hash: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let items = match value {
        None => {
            return Err(ApiError::unprocessable(
                "no_events",
                "send one event object or an array of events",
            ))
        }
        Some(Value::Array(items)) => items,
        Some(obj @ Value::Object(_)) => vec![obj],
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "the body must be an event object or an array of events",
            ))
        }
    };
    let max = state(req).settings.max_events_per_request;
    if items.len() > max {
        return Err(ApiError::too_large(
            "too_many_events",
            format!("{} events in one request; the limit is {max}", items.len()),
        ));
    }
    let events = validate_all(&items, now_ms()).map_err(|errs| {
        let message = errs.to_string();
        ApiError::unprocessable("validation_failed", message).with_details(json!(errs.0))
    })?;
    drop(items);
    let st = state(req);
    let outcome = st.pull.ingest(account_id, events, key_hash.clone()).await?;
    if outcome.key_revoked {
        if let Some(hash) = &key_hash {
            st.auth.forget(hash, req.peer_addr().map(|a| a.ip()));
        }
        return Err(AuthError::Invalid.into());
    }
    Ok(HttpResponse::Accepted().json(Ingested {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
    }))
}
