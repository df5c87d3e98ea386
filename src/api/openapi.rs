//! `GET /openapi.json`: the OpenAPI 3.1 document of the JSON API, generated
//! from the handlers' annotations and the request/response types.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, batches, deliveries, events, health, queue, stats, triggers};

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
        stats::stats,
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
        (name = "stats", description = "Activity per minute: ingested, pulled, pushed"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
