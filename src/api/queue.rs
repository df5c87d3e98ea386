//! `GET /v1/queue`: the account's pull queue at a glance.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{state, AccountAuth};
use crate::domain::time::{now_ms, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct Depth {
    /// Waiting to be fetched.
    pub pending: i64,
    /// In open (leased) batches.
    pub in_flight: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OpenBatchView {
    pub batch_id: String,
    pub consumer: String,
    pub expires_at: String,
    pub events: i64,
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub pending: i64,
    pub in_flight: i64,
    /// Age of the oldest event not in an open batch; null when none.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Per trigger (all fifteen).
    pub triggers: BTreeMap<String, Depth>,
    pub open_batches: Vec<OpenBatchView>,
}

/// Queue status: depth per trigger, oldest pending age, open batches.
#[utoipa::path(get, path = "/v1/queue", operation_id = "queue_status", tag = "pull", security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, body = QueueView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn status(AccountAuth(account): AccountAuth, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let s = state(&req).pull.status(account.id).await?;
    let (pending, in_flight) = s.totals();
    let mut triggers = BTreeMap::new();
    for d in &s.triggers {
        triggers.insert(
            d.trigger.as_str().to_string(),
            Depth {
                pending: d.pending,
                in_flight: d.in_flight,
            },
        );
    }
    Ok(HttpResponse::Ok().json(QueueView {
        pending,
        in_flight,
        oldest_pending_age_seconds: s.oldest_pending_age_seconds(now_ms()),
        triggers,
        open_batches: s
            .open_batches
            .into_iter()
            .map(|b| OpenBatchView {
                batch_id: b.id,
                consumer: b.consumer,
                expires_at: rfc3339(b.expires_at_ms),
                events: b.events,
            })
            .collect(),
    }))
}
