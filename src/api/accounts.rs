//! Operator endpoints: accounts and their keys (SPEC §3).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{not_found_as, ApiError, ErrorBody};
use super::extract::{blocking, read_json, state, typed, OperatorAuth};
use crate::domain::time::rfc3339;
use crate::store::accounts::Account;
use crate::store::StoreError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 1 to 100 printable characters, unique.
    #[schema(example = "acme")]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name,
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AccountCreated {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    /// The account's first API key: shown only this once.
    pub api_key: String,
    pub key_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    pub id: String,
    /// The secret: shown only this once.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

pub(super) fn no_account() -> ApiError {
    ApiError::not_found("account_not_found", "no such account")
}

/// Creates an account and its first API key.
#[utoipa::path(post, path = "/v1/accounts", operation_id = "create_account", tag = "accounts", request_body = CreateAccount,
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 201, body = AccountCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "`database_unavailable`; retry after `Retry-After`", body = ErrorBody),
    ))]
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
    let (account, key) = blocking(move || {
        store.create_account(&name).map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(actix_web::http::StatusCode::CONFLICT, "account_exists", m),
            other => other.into(),
        })
    })
    .await?;
    Ok(HttpResponse::Created().json(AccountCreated {
        id: account.id,
        name: account.name,
        created_at: rfc3339(account.created_at),
        api_key: key.secret,
        key_id: key.id,
    }))
}

/// Lists accounts.
#[utoipa::path(get, path = "/v1/accounts", operation_id = "list_accounts", tag = "accounts", security(("bearer" = []), ("basic" = [])),
    responses((status = 200, body = AccountList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, description = "`database_unavailable`; retry after `Retry-After`", body = ErrorBody)))]
pub async fn list(_: OperatorAuth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = state(&req).store.clone();
    let accounts = blocking(move || store.list_accounts()).await?;
    Ok(HttpResponse::Ok().json(AccountList {
        accounts: accounts.into_iter().map(AccountView::from).collect(),
    }))
}

/// Creates another API key for an account.
#[utoipa::path(post, path = "/v1/accounts/{id}/keys", operation_id = "create_key", tag = "accounts", security(("bearer" = []), ("basic" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses(
        (status = 201, body = KeyCreated),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "`database_unavailable`; retry after `Retry-After`", body = ErrorBody),
    ))]
pub async fn create_key(_: OperatorAuth, req: HttpRequest, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let store = state(&req).store.clone();
    let key = blocking(move || store.create_key(id).map_err(not_found_as(no_account()))).await?;
    Ok(HttpResponse::Created().json(KeyCreated {
        id: key.id,
        key: key.secret,
    }))
}

/// Lists an account's keys (never their secrets).
#[utoipa::path(get, path = "/v1/accounts/{id}/keys", operation_id = "list_keys", tag = "accounts", security(("bearer" = []), ("basic" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses(
        (status = 200, body = KeyList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "`database_unavailable`; retry after `Retry-After`", body = ErrorBody),
    ))]
pub async fn list_keys(_: OperatorAuth, req: HttpRequest, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let store = state(&req).store.clone();
    let keys = blocking(move || store.list_keys(id).map_err(not_found_as(no_account()))).await?;
    Ok(HttpResponse::Ok().json(KeyList {
        keys: keys
            .into_iter()
            .map(|k| KeyView {
                id: k.id,
                prefix: k.prefix,
                created_at: rfc3339(k.created_at),
                revoked_at: k.revoked_at.map(rfc3339),
            })
            .collect(),
    }))
}

/// Revokes a key at once: requests with it, and PAINT contexts logged in
/// with it, fail from the next call on, on every node.
#[utoipa::path(delete, path = "/v1/accounts/{id}/keys/{key_id}", operation_id = "revoke_key", tag = "accounts",
    security(("bearer" = []), ("basic" = [])),
    params(("id" = i64, Path, description = "Account id"), ("key_id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "`database_unavailable`; retry after `Retry-After`", body = ErrorBody),
    ))]
pub async fn revoke_key(
    _: OperatorAuth,
    req: HttpRequest,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = path.into_inner();
    let store = state(&req).store.clone();
    let missing = ApiError::not_found("key_not_found", "no such key for this account");
    blocking(move || store.revoke_key(id, &key_id).map_err(not_found_as(missing))).await?;
    Ok(HttpResponse::NoContent().finish())
}
