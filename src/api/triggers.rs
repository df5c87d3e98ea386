//! Per-trigger destination configuration (SPEC §6).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::extract::{read_json, state, AccountAuth};
use super::openapi::ErrorBody;
use super::ApiError;
use crate::domain::{Destination, DestinationError, Trigger, TriggerConfig};

/// A trigger's destination. The settings of a destination kind appear under
/// its name (e.g. `"http": {…}`).
#[allow(dead_code)]
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TriggerView {
    trigger: Trigger,
    #[schema(value_type = String, example = "pull")]
    destination: String,
    #[schema(value_type = Option<Object>, nullable = false)]
    http: Option<Value>,
    #[schema(value_type = Option<Object>, nullable = false)]
    email: Option<Value>,
    #[schema(value_type = Option<Object>, nullable = false)]
    ftp: Option<Value>,
}

/// A new configuration: `destination` is pull (default), http, email, ftp
/// or none (events are kept in the history only).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfigBody {
    #[schema(example = "none")]
    destination: Destination,
    #[schema(value_type = Option<Object>)]
    http: Option<Value>,
    #[schema(value_type = Option<Object>)]
    email: Option<Value>,
    #[schema(value_type = Option<Object>)]
    ftp: Option<Value>,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct TriggerList {
    triggers: Vec<TriggerView>,
}

fn view(trigger: Trigger, config: &TriggerConfig) -> Value {
    let mut v = json!({"trigger": trigger.as_str(), "destination": config.destination.as_str()});
    if !config.settings.is_null() {
        v[config.destination.as_str()] = config.settings.clone();
    }
    v
}

fn parse_trigger(raw: &str) -> Result<Trigger, ApiError> {
    raw.parse::<Trigger>()
        .map_err(|e| ApiError::not_found("unknown_trigger", e.to_string()).with_details(json!({"valid": Trigger::ALL})))
}

/// Every trigger's destination.
#[utoipa::path(get, path = "/v1/triggers", operation_id = "list_triggers", tag = "triggers", security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, body = TriggerList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list(AccountAuth(account): AccountAuth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = state(&req).store.clone();
    let configs = web::block(move || store.trigger_configs(account.id))
        .await
        .map_err(|_| ApiError::internal())??;
    let items: Vec<Value> = Trigger::ALL
        .iter()
        .map(|t| view(*t, &configs.get(t).cloned().unwrap_or_default()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "triggers": items })))
}

/// One trigger's destination.
#[utoipa::path(get, path = "/v1/triggers/{trigger}", operation_id = "get_trigger", tag = "triggers", security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, body = TriggerView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown trigger (the error lists the valid ones)", body = ErrorBody),
    ))]
pub async fn get(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = parse_trigger(&path)?;
    let store = state(&req).store.clone();
    let configs = web::block(move || store.trigger_configs(account.id))
        .await
        .map_err(|_| ApiError::internal())??;
    Ok(HttpResponse::Ok().json(view(trigger, &configs.get(&trigger).cloned().unwrap_or_default())))
}

/// Sets a trigger's destination. Events already accepted stay where they are.
#[utoipa::path(put, path = "/v1/triggers/{trigger}", operation_id = "put_trigger", tag = "triggers", request_body = TriggerConfigBody,
    security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, body = TriggerView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn put(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let trigger = parse_trigger(&path)?;
    let value = read_json(&req, body)
        .await?
        .ok_or_else(|| ApiError::unprocessable("invalid_config", "a body {\"destination\": …} is required"))?;
    let config = TriggerConfig::parse(&value).map_err(|e| {
        let code = match e {
            DestinationError::Unknown(_) => "unknown_destination",
            DestinationError::Unavailable(_) => "destination_unavailable",
            DestinationError::Invalid(_) => "invalid_config",
        };
        ApiError::unprocessable(code, e.to_string())
    })?;
    let store = state(&req).store.clone();
    let saved = config.clone();
    web::block(move || store.put_trigger_config(account.id, trigger, &saved))
        .await
        .map_err(|_| ApiError::internal())??;
    Ok(HttpResponse::Ok().json(view(trigger, &config)))
}
