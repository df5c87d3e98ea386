use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::extract::state;
use super::ApiError;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers.
pub async fn readyz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = state(&req).store.clone();
    match web::block(move || store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        _ => Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database does not answer",
        )),
    }
}
