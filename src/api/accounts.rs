//! Operator endpoints: accounts and their keys (SPEC §3).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::extract::{read_json, state, typed, OperatorAuth};
use super::ApiError;
use crate::domain::time::rfc3339;
use crate::store::StoreError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    name: String,
}

fn account_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("account_not_found", "no such account"),
        other => other.into(),
    }
}

pub async fn create(_: OperatorAuth, req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let value = read_json(&req, body)
        .await?
        .ok_or_else(|| ApiError::unprocessable("invalid_request", "a body {\"name\": …} is required"))?;
    let CreateAccount { name } = typed(value)?;
    let name = name.trim().to_string();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "an account name is 1 to 100 printable characters",
        ));
    }
    let store = state(&req).store.clone();
    let (account, key) = web::block(move || store.create_account(&name))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(actix_web::http::StatusCode::CONFLICT, "account_exists", m),
            other => other.into(),
        })?;
    Ok(HttpResponse::Created().json(json!({
        "id": account.id,
        "name": account.name,
        "created_at": rfc3339(account.created_at),
        "api_key": key.secret,
        "key_id": key.id,
    })))
}

pub async fn list(_: OperatorAuth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = state(&req).store.clone();
    let accounts = web::block(move || store.list_accounts())
        .await
        .map_err(|_| ApiError::internal())??;
    let items: Vec<_> = accounts
        .into_iter()
        .map(|a| json!({"id": a.id, "name": a.name, "created_at": rfc3339(a.created_at)}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "accounts": items })))
}

pub async fn create_key(_: OperatorAuth, req: HttpRequest, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let store = state(&req).store.clone();
    let key = web::block(move || store.create_key(id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(account_not_found)?;
    Ok(HttpResponse::Created().json(json!({"id": key.id, "key": key.secret})))
}

pub async fn list_keys(_: OperatorAuth, req: HttpRequest, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let store = state(&req).store.clone();
    let keys = web::block(move || store.list_keys(id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(account_not_found)?;
    let items: Vec<_> = keys
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id,
                "prefix": k.prefix,
                "created_at": rfc3339(k.created_at),
                "revoked_at": k.revoked_at.map(rfc3339),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "keys": items })))
}

pub async fn revoke_key(
    _: OperatorAuth,
    req: HttpRequest,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = path.into_inner();
    let store = state(&req).store.clone();
    web::block(move || store.revoke_key(id, &key_id))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("key_not_found", "no such key for this account"),
            other => other.into(),
        })?;
    Ok(HttpResponse::NoContent().finish())
}
