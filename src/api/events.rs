//! Ingest (SPEC §4): `POST /v1/events` with an account key, or
//! `POST /v1/accounts/{id}/events` with the operator token.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::extract::{read_json, state, AccountAuth, OperatorAuth};
use super::ApiError;
use crate::domain::event::validate_all;
use crate::domain::time::now_ms;
use crate::store::StoreError;

pub const MAX_EVENTS: usize = 10_000;

pub async fn ingest(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let value = read_json(&req, body).await?;
    accept(&req, account.id, value).await
}

pub async fn ingest_as_operator(
    _: OperatorAuth,
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.into_inner();
    let value = read_json(&req, body).await?;
    let store = state(&req).store.clone();
    web::block(move || store.find_account(account_id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("account_not_found", "no such account"),
            other => other.into(),
        })?;
    accept(&req, account_id, value).await
}

async fn accept(req: &HttpRequest, account_id: i64, value: Option<Value>) -> Result<HttpResponse, ApiError> {
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
    if items.len() > MAX_EVENTS {
        return Err(ApiError::too_large(
            "too_many_events",
            format!("{} events in one request; the limit is {MAX_EVENTS}", items.len()),
        ));
    }
    let events = validate_all(&items, now_ms()).map_err(|errs| {
        let message = errs.to_string();
        ApiError::unprocessable("validation_failed", message).with_details(json!(errs.0))
    })?;
    drop(items);
    let outcome = state(req).pull.ingest(account_id, events).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
    })))
}
