//! The JSON API (SPEC §3–§6), one file per resource.

pub mod accounts;
pub mod batches;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod queue;
pub mod triggers;

use actix_web::{web, HttpResponse};

pub use error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::not_found("not_found", format!("no such resource: {err}")).into()),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| ApiError::bad_request("bad_query", err.to_string()).into()),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .service(
        web::scope("/v1")
            .route("/accounts", web::post().to(accounts::create))
            .route("/accounts", web::get().to(accounts::list))
            .route("/accounts/{id}/keys", web::post().to(accounts::create_key))
            .route("/accounts/{id}/keys", web::get().to(accounts::list_keys))
            .route("/accounts/{id}/keys/{key_id}", web::delete().to(accounts::revoke_key))
            .route("/accounts/{id}/events", web::post().to(events::ingest_as_operator))
            .route("/events", web::post().to(events::ingest))
            .route("/batches", web::post().to(batches::fetch))
            .route("/batches/{id}/read", web::post().to(batches::mark_read))
            .route("/batches/{id}/release", web::post().to(batches::release))
            .route("/queue", web::get().to(queue::status))
            .route("/triggers", web::get().to(triggers::list))
            .route("/triggers/{trigger}", web::get().to(triggers::get))
            .route("/triggers/{trigger}", web::put().to(triggers::put))
            .route("/triggers/{trigger}/resume", web::post().to(triggers::resume))
            .route("/triggers/{trigger}/secret", web::post().to(triggers::rotate_secret))
            .route("/triggers/{trigger}/test", web::post().to(triggers::test))
            .route("/deliveries", web::get().to(deliveries::list))
            .route("/deliveries/retry", web::post().to(deliveries::retry_dead))
            .route("/deliveries/{id}", web::get().to(deliveries::get))
            .route("/deliveries/{id}/retry", web::post().to(deliveries::retry)),
    );
}

/// Answer for unknown paths.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}
