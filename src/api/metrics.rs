//! `GET /metrics`: Prometheus text format. Gauges that reflect the database
//! (queue depth, oldest pending age, open batches, suspended push
//! destinations, dead deliveries, pool) are read at scrape.
//!
//! Server-wide figures are not for accounts: on the main address `/metrics`
//! needs the operator token, unless `--metrics-listen` serves it on an
//! address of its own (without credentials), in which case the main
//! address does not serve it at all.

use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::extract::{blocking, state, OperatorAuth};
use crate::domain::time::now_ms;
use crate::store::StoreError;

/// `/metrics` on the main address: the operator's, unless `--metrics-listen`.
pub async fn for_operator(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if state(&req).settings.metrics_listen.is_some() {
        return Err(ApiError::not_found(
            "not_found",
            "no such endpoint (metrics are served on --metrics-listen)",
        ));
    }
    <OperatorAuth as actix_web::FromRequest>::extract(&req).await?;
    render(req).await
}

/// `/metrics` on the `--metrics-listen` address.
pub async fn render(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
    let store = st.store.clone();
    let now = now_ms();
    let ((depth, open, oldest), (suspended, dead)) =
        blocking(move || Ok::<_, StoreError>((store.queue_totals(now)?, store.push_totals()?))).await?;
    // Sets the storage gauge (a watermark, or the database out of space).
    st.pull.storage_full().await;
    let m = &st.metrics;
    m.queue_depth.set(depth);
    m.open_batches.set(open);
    m.queue_oldest_age
        .set(oldest.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(0.0));
    m.push_suspended.set(suspended);
    m.push_dead.set(dead);
    let (connections, idle, max) = st.store.pool_state();
    m.db_pool.with_label_values(&["open"]).set(connections as i64);
    m.db_pool.with_label_values(&["idle"]).set(idle as i64);
    m.db_pool_max.set(max as i64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render()))
}
