//! `GET /v1/queue`: the account's pull queue at a glance.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::extract::{state, AccountAuth};
use super::ApiError;
use crate::domain::time::{now_ms, rfc3339};

pub async fn status(AccountAuth(account): AccountAuth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let s = state(&req).pull.status(account.id).await?;
    let mut triggers = Map::new();
    let (mut pending, mut in_flight) = (0, 0);
    for d in &s.triggers {
        pending += d.pending;
        in_flight += d.in_flight;
        triggers.insert(
            d.trigger.as_str().to_string(),
            json!({"pending": d.pending, "in_flight": d.in_flight}),
        );
    }
    let batches: Vec<Value> = s
        .open_batches
        .iter()
        .map(|b| json!({"batch_id": b.id, "consumer": b.consumer, "expires_at": rfc3339(b.expires_at_ms), "events": b.events}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "pending": pending,
        "in_flight": in_flight,
        "oldest_pending_age_seconds": s.oldest_pending_ms.map(|t| ((now_ms() - t).max(0) as f64) / 1000.0),
        "triggers": triggers,
        "open_batches": batches,
    })))
}
