//! The JSON API (SPEC §3–§6), one file per resource.

pub mod accounts;
pub mod batches;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
mod mail_ftp;
pub mod metrics;
pub mod openapi;
pub mod queue;
pub mod stats;
pub mod triggers;

use actix_web::{web, HttpResponse};

pub use error::ApiError;

/// Declares the JSON routes once: registers them and lists them in
/// [`ROUTES`], which a test compares with the OpenAPI document.
macro_rules! json_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every JSON route as (method, path template).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn register(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

// Routes are matched in this order, and a path with a `{…}` segment is
// matched by a regular expression (actix-router's regex-lite, a PikeVM):
// ingest and fetch, the routes hit thousands of times a second, come
// first, so they are found before any such expression runs (single-event
// ingest spent about 8 % of its HTTP threads' time matching the
// `/v1/accounts/{id}/…` routes listed before it).
json_routes! {
    post "/v1/events" => events::ingest,
    post "/v1/batches" => batches::fetch,
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
    post "/v1/accounts" => accounts::create,
    get "/v1/accounts" => accounts::list,
    post "/v1/accounts/{id}/keys" => accounts::create_key,
    get "/v1/accounts/{id}/keys" => accounts::list_keys,
    delete "/v1/accounts/{id}/keys/{key_id}" => accounts::revoke_key,
    post "/v1/accounts/{id}/events" => events::ingest_as_operator,
    post "/v1/batches/{id}/read" => batches::mark_read,
    post "/v1/batches/{id}/release" => batches::release,
    get "/v1/queue" => queue::status,
    get "/v1/stats" => stats::stats,
    get "/v1/triggers" => triggers::list,
    get "/v1/triggers/{trigger}" => triggers::get,
    put "/v1/triggers/{trigger}" => triggers::put,
    post "/v1/triggers/{trigger}/resume" => triggers::resume,
    post "/v1/triggers/{trigger}/secret" => triggers::rotate_secret,
    post "/v1/triggers/{trigger}/test" => triggers::test,
    get "/v1/deliveries" => deliveries::list,
    post "/v1/deliveries/retry" => deliveries::retry_dead,
    get "/v1/deliveries/{id}" => deliveries::get,
    post "/v1/deliveries/{id}/retry" => deliveries::retry,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::not_found("not_found", format!("no such resource: {err}")).into()),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| ApiError::bad_request("bad_query", err.to_string()).into()),
    )
    .route("/metrics", web::get().to(metrics::for_operator))
    .route("/openapi.json", web::get().to(openapi::document));
    register(cfg);
}

/// Answer for unknown paths.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::openapi::ApiDoc;
    use super::ROUTES;

    /// Every registered JSON route is documented, and nothing else is.
    #[test]
    fn document_lists_exactly_the_routes() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.clone(), path.clone()));
                }
            }
        }
        let mut registered: Vec<(String, String)> =
            ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        documented.sort();
        registered.sort();
        assert_eq!(registered, documented, "routes and OpenAPI paths differ");
        for (method, path) in &registered {
            let op = &paths[path.as_str()][method.as_str()];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
}
