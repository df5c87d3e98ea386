//! Per-trigger destination configuration (SPEC §6).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::extract::{read_json, state, AccountAuth};
use super::ApiError;
use crate::domain::{DestinationError, Trigger, TriggerConfig};

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
