use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{blocking, state};

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (healthz); `ready`, or `storage_full` (readyz).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Why, when the status is `storage_full`.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        message: None,
    })
}

/// The database answers. Storage above a watermark, or a database that
/// failed a write for lack of space in the last minute, is still ready
/// (200, status `storage_full`, the reason in `message`): ingest is refused,
/// but consumers must reach the node to drain the queue.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses(
    (status = 200, description = "Ready; status `storage_full` while ingest is refused (507) or the database recently ran out of space", body = Health),
    (status = 503, description = "The database does not answer", body = ErrorBody),
))]
pub async fn readyz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let st = state(&req);
    let store = st.store.clone();
    blocking(move || {
        store.ping().map_err(|_| {
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database does not answer",
            )
        })
    })
    .await?;
    let full = st.pull.storage_full().await;
    Ok(HttpResponse::Ok().json(Health {
        status: if full.is_some() { "storage_full" } else { "ready" },
        message: full,
    }))
}
