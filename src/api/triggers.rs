//! Per-trigger destination configuration (SPEC §6).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{not_found_as, ApiError, ErrorBody};
use super::extract::{blocking, read_json, state, AccountAuth};
use super::mail_ftp;
use crate::domain::signing::generate_secret;
use crate::domain::time::{now_ms, rfc3339};
use crate::domain::{Destination, DestinationError, Trigger, TriggerConfig};
use crate::store::push::PushStatus;
use crate::store::StoreError;
use crate::transport::sample_event;
use crate::webhook::{check_target, prepare, TargetError};

const DAY_MS: i64 = 86_400_000;

fn push_view(p: &PushStatus) -> Value {
    json!({
        "state": p.state,
        "consecutive_failures": p.consecutive_failures,
        "paused_until": p.paused_until.map(rfc3339),
        "suspended_at": p.suspended_at.map(rfc3339),
        "last_error": p.last_error,
        "last_error_at": p.last_error_at.map(rfc3339),
        "pending": p.pending,
        "dead": p.dead,
        "collecting": p.collecting,
    })
}

/// The transport whose health a trigger shows: its destination's, or http
/// (a trigger that once pushed) for pull and none.
fn shown_transport(config: &TriggerConfig) -> &'static str {
    if config.destination.is_delivered() {
        config.destination.as_str()
    } else {
        "http"
    }
}

fn no_push(trigger: Trigger) -> ApiError {
    ApiError::not_found(
        "no_push_destination",
        format!(
            "trigger {} has never had an http, email or ftp destination",
            trigger.as_str()
        ),
    )
}

fn target_error(e: TargetError) -> ApiError {
    let code = match e {
        TargetError::Private(..) => "private_target",
        TargetError::Unresolvable(..) => "unresolvable_target",
    };
    ApiError::unprocessable(code, e.to_string())
}

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
    /// HTTP push health (triggers that ever had an http destination):
    /// state, consecutive_failures, paused_until, suspended_at, last_error,
    /// last_error_at, pending, dead.
    #[schema(value_type = Option<Object>, nullable = false)]
    push: Option<Value>,
    /// The signing secret, answered once by the first http configuration.
    #[schema(nullable = false)]
    secret: Option<String>,
    /// Events of the history queued for delivery by the first http configuration.
    #[schema(nullable = false)]
    backfilled: Option<u64>,
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
        v[config.destination.as_str()] = config.public_settings();
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
    let configs = blocking(move || store.trigger_configs(account.id)).await?;
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
    let (config, push) = blocking(move || {
        let config = store.trigger_configs(account.id)?.remove(&trigger).unwrap_or_default();
        let push = store.push_status(account.id, trigger, shown_transport(&config))?;
        Ok::<_, StoreError>((config, push))
    })
    .await?;
    let mut v = view(trigger, &config);
    if let Some(p) = push {
        v["push"] = push_view(&p);
    }
    Ok(HttpResponse::Ok().json(v))
}

/// Sets a trigger's destination. Events already accepted stay where they are.
#[utoipa::path(put, path = "/v1/triggers/{trigger}", operation_id = "put_trigger", tag = "triggers", request_body = TriggerConfigBody,
    security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, body = TriggerView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An email destination on a server without an SMTP relay (--smtp-url, --smtp-from)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
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
    let st = state(&req);
    let store = st.store.clone();
    let previous = blocking(move || store.trigger_configs(account.id))
        .await?
        .remove(&trigger);
    let min_period = st.settings.push.mail_ftp.min_period_seconds;
    let config = TriggerConfig::parse_with(&value, min_period, previous.as_ref()).map_err(|e| {
        let code = match e {
            DestinationError::Unknown(_) => "unknown_destination",
            DestinationError::Unavailable(_) => "destination_unavailable",
            DestinationError::Invalid(_) => "invalid_config",
        };
        ApiError::unprocessable(code, e.to_string())
    })?;
    let store = st.store.clone();
    let saved = config.clone();
    if matches!(config.destination, Destination::Email | Destination::Ftp) {
        mail_ftp::check(&st, &config).await?;
        blocking(move || store.put_delivered_config(account.id, trigger, &saved)).await?;
        return Ok(HttpResponse::Ok().json(view(trigger, &config)));
    }
    let Some(http) = config.http() else {
        blocking(move || store.put_trigger_config(account.id, trigger, &saved)).await?;
        return Ok(HttpResponse::Ok().json(view(trigger, &config)));
    };
    check_target(&http.url, st.webhooks.allow_private())
        .await
        .map_err(target_error)?;
    let since = now_ms() - i64::from(st.settings.history_days) * DAY_MS;
    let put = blocking(move || store.put_http_config(account.id, trigger, &saved, &generate_secret(), since)).await?;
    let mut v = view(trigger, &config);
    if let Some(secret) = put.new_secret {
        // Shown this once; rotate with POST /v1/triggers/{T}/secret.
        v["secret"] = json!(secret);
        v["backfilled"] = json!(put.backfilled);
    }
    Ok(HttpResponse::Ok().json(v))
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct Resumed {
    trigger: Trigger,
    #[schema(value_type = Option<Object>, nullable = false)]
    push: Option<Value>,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct NewSecret {
    trigger: Trigger,
    /// `whsec_…`, shown this once.
    secret: String,
    /// Until then requests also carry a signature made with the previous secret.
    previous_secret_valid_until: String,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct TestResult {
    success: bool,
    url: String,
    status_code: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
    response: Option<String>,
    /// The sample event sent.
    #[schema(value_type = Object)]
    event: Value,
}

/// `POST /v1/triggers/{T}/resume`: a suspended destination sends again.
#[utoipa::path(post, path = "/v1/triggers/{trigger}/resume", operation_id = "resume_push", tag = "push",
    security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, body = Resumed),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown trigger, or it never had an http destination", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn resume(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = parse_trigger(&path)?;
    let store = state(&req).store.clone();
    let status = blocking(move || {
        store
            .resume_push(account.id, trigger)
            .and_then(|()| {
                let config = store.trigger_configs(account.id)?.remove(&trigger).unwrap_or_default();
                store.push_status(account.id, trigger, shown_transport(&config))
            })
            .map_err(not_found_as(no_push(trigger)))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "trigger": trigger.as_str(),
        "push": status.as_ref().map(push_view),
    })))
}

/// After a rotation, requests carry a second signature with the previous
/// secret for this long, so receivers can switch without losing requests.
const ROTATION_OVERLAP_MS: i64 = DAY_MS;

/// `POST /v1/triggers/{T}/secret`: a new signing secret, shown once.
#[utoipa::path(post, path = "/v1/triggers/{trigger}/secret", operation_id = "rotate_push_secret", tag = "push",
    security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, body = NewSecret),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown trigger, or it never had an http destination", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn rotate_secret(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = parse_trigger(&path)?;
    let store = state(&req).store.clone();
    let secret = generate_secret();
    let shown = secret.clone();
    blocking(move || {
        store
            .rotate_secret(account.id, trigger, &secret, ROTATION_OVERLAP_MS)
            .map_err(not_found_as(no_push(trigger)))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "trigger": trigger.as_str(),
        "secret": shown,
        "previous_secret_valid_until": rfc3339(now_ms() + ROTATION_OVERLAP_MS),
    })))
}

/// `POST /v1/triggers/{T}/test`: sends a sample event now, as the
/// destination would (http: signed like any delivery; email: a one-event
/// mail; ftp: a one-event file `eventd_test_…`), and reports the answer.
#[utoipa::path(post, path = "/v1/triggers/{trigger}/test", operation_id = "test_push", tag = "push",
    security(("bearer" = []), ("basic" = [])),
    params(("trigger" = Trigger, Path, description = "Trigger name")),
    responses(
        (status = 200, description = "The receiver's answer, whatever it was", body = TestResult),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The trigger's destination is not http, email or ftp, or the server has no SMTP relay", body = ErrorBody),
        (status = 422, description = "The URL or FTP host is now a private or unresolvable target", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn test(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = parse_trigger(&path)?;
    let st = state(&req);
    let store = st.store.clone();
    let (configs, secret) = blocking(move || {
        let configs = store.trigger_configs(account.id)?;
        let secret = store.push_secrets(account.id, trigger)?;
        Ok::<_, StoreError>((configs, secret))
    })
    .await?;
    let config = configs.get(&trigger).cloned().unwrap_or_default();
    if matches!(config.destination, Destination::Email | Destination::Ftp) {
        return mail_ftp::test(&st, account.id, trigger, &config).await;
    }
    let (Some(settings), Some(secret)) = (config.http(), secret) else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "not_http",
            format!(
                "trigger {} has destination '{}'; configure an http, email or ftp destination first",
                trigger.as_str(),
                config.destination
            ),
        ));
    };
    debug_assert_eq!(config.destination, Destination::Http);
    check_target(&settings.url, st.webhooks.allow_private())
        .await
        .map_err(target_error)?;
    let sample = sample_event(trigger);
    let id = sample.id.clone();
    let payload = serde_json::to_string(&sample).map_err(|_| ApiError::internal())?;
    let prepared = prepare(&settings, &[(id.as_str(), payload.as_str())]);
    let answer = st.webhooks.send(&prepared, &settings, &secret).await;
    Ok(HttpResponse::Ok().json(json!({
        "success": answer.is_success(),
        "url": prepared.url,
        "status_code": answer.status,
        "latency_ms": answer.latency_ms,
        "error": answer.error,
        "response": answer.response,
        "event": sample,
    })))
}
