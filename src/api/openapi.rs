//! `GET /openapi.json`: the OpenAPI 3.1 document of the JSON API, generated
//! from the handlers' annotations and the request/response types.

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{accounts, batches, deliveries, events, health, queue, triggers};

/// Every error: a stable `code` and a readable `message`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    #[schema(example = "validation_failed")]
    pub code: String,
    pub message: String,
    /// Extra facts, e.g. every invalid field of an ingest by index.
    #[schema(nullable = false)]
    pub details: Option<Value>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account API key (evk_…) or, for operator endpoints, the operator token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("HTTP Basic with the key as password (user name not checked)"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "eventd",
        description = "Event notification server: per-account event queues pulled in batches (client pull), configured per trigger.",
        license(name = "MIT")
    ),
    paths(
        health::healthz,
        health::readyz,
        accounts::create,
        accounts::list,
        accounts::create_key,
        accounts::list_keys,
        accounts::revoke_key,
        events::ingest_as_operator,
        events::ingest,
        batches::fetch,
        batches::mark_read,
        batches::release,
        queue::status,
        triggers::list,
        triggers::get,
        triggers::put,
        triggers::resume,
        triggers::rotate_secret,
        triggers::test,
        deliveries::list,
        deliveries::get,
        deliveries::retry,
        deliveries::retry_dead,
    ),
    modifiers(&Security),
    tags(
        (name = "accounts", description = "Operator: accounts and API keys"),
        (name = "events", description = "Ingest"),
        (name = "pull", description = "Client pull: batches and queue status"),
        (name = "triggers", description = "Destination per trigger"),
        (name = "push", description = "HTTP push: health, secret, test, attempt log and replay"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut registered: Vec<(String, String)> = crate::api::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
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
