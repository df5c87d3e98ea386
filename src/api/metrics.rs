//! `GET /metrics`: Prometheus text format. Gauges that reflect the database
//! (queue depth, oldest pending age, open batches, pool) are read at scrape.

use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::state;
use super::ApiError;
use crate::domain::time::now_ms;

pub async fn metrics(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
    let store = st.store.clone();
    let now = now_ms();
    let (depth, open, oldest) = web::block(move || store.queue_totals(now))
        .await
        .map_err(|_| ApiError::internal())??;
    let m = &st.metrics;
    m.queue_depth.set(depth);
    m.open_batches.set(open);
    m.queue_oldest_age
        .set(oldest.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(0.0));
    let (connections, idle) = st.store.pool_state();
    m.db_pool.with_label_values(&["open"]).set(connections as i64);
    m.db_pool.with_label_values(&["idle"]).set(idle as i64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render()))
}
