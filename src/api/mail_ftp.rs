//! What the trigger endpoints do for email and ftp destinations: the checks
//! before saving one (the server has an SMTP relay; the FTP host is not a
//! private address) and `POST /v1/triggers/{T}/test` (a sample mail, or a
//! sample file uploaded, with the server's answer).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

use super::error::ApiError;
use crate::domain::export::{compact_time, MAX_EVENTS_PER_FILE};
use crate::domain::time::now_ms;
use crate::domain::{DeliverySettings, Destination, Trigger, TriggerConfig};
use crate::state::AppState;
use crate::transport::{sample_event, Parcel, Unit};
use crate::webhook::{check_target, TargetError};

fn smtp_missing() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "smtp_not_configured",
        "email destinations need the server's SMTP relay: start eventd with --smtp-url and --smtp-from \
         (EVENTD_SMTP_URL, EVENTD_SMTP_FROM)",
    )
}

/// Refuses what cannot work before it is saved.
pub(super) async fn check(st: &AppState, config: &TriggerConfig) -> Result<(), ApiError> {
    match config.destination {
        Destination::Email if st.transports.smtp.is_none() => Err(smtp_missing()),
        Destination::Ftp => {
            let Some(ftp) = config.ftp() else {
                return Ok(());
            };
            let url = format!("ftp://{}:{}/", ftp.host, ftp.port);
            check_target(&url, st.transports.allow_private).await.map_err(|e| {
                let code = match e {
                    TargetError::Private(..) => "private_target",
                    TargetError::Unresolvable(..) => "unresolvable_target",
                };
                ApiError::unprocessable(code, e.to_string().replace("URL's host", "FTP host"))
            })
        }
        _ => Ok(()),
    }
}

/// Sends a sample event as the destination would: a one-event mail, or a
/// one-event file named `eventd_test_{account}_{TRIGGER}_{time}.{ext}`.
pub(super) async fn test(
    st: &AppState,
    account_id: i64,
    trigger: Trigger,
    config: &TriggerConfig,
) -> Result<HttpResponse, ApiError> {
    check(st, config).await?;
    let settings = match (config.email(), config.ftp()) {
        (Some(e), _) => DeliverySettings::Email(e),
        (_, Some(f)) => DeliverySettings::Ftp(f),
        _ => return Err(ApiError::internal()),
    };
    let transports = st.transports.build().map_err(|e| {
        tracing::error!(error = %e, "cannot build the email/FTP transports");
        ApiError::internal()
    })?;
    let sample = sample_event(trigger);
    let payload = serde_json::to_string(&sample).map_err(|_| ApiError::internal())?;
    let events = [(sample.id.as_str(), payload.as_str())];
    let name = match &settings {
        DeliverySettings::Ftp(f) => format!(
            "eventd_test_{account_id}_{}_{}.{}",
            trigger.as_str(),
            compact_time(now_ms()),
            f.format.extension()
        ),
        _ => String::new(),
    };
    debug_assert!(events.len() <= MAX_EVENTS_PER_FILE);
    let parcel = matches!(settings, DeliverySettings::Ftp(_)).then(|| Parcel {
        trigger: trigger.as_str(),
        label: &name,
        period_start_ms: now_ms(),
    });
    let sent = transports
        .send(
            &settings,
            &[],
            Unit {
                events: &events,
                parcel,
            },
        )
        .await;
    Ok(HttpResponse::Ok().json(json!({
        "success": sent.kind == crate::store::push::OutcomeKind::Success,
        "url": sent.target,
        "status_code": sent.status_code,
        "latency_ms": sent.latency_ms,
        "error": sent.error,
        "response": sent.response,
        "event": sample,
    })))
}
