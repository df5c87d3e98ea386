//! The web console at `/admin`: static files built into the binary. The
//! pages talk only to the public JSON API with the key the user signs in
//! with (kept in the tab's `sessionStorage`), so the console can do nothing
//! the API forbids. A face of its own: it imports no other face.
//!
//! Every answer under `/admin` carries a strict Content-Security-Policy (no
//! inline script or style, nothing from another origin, no framing).

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

/// The policy of every `/admin` answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// (file name, content type, content).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    ("ui.js", "text/javascript; charset=utf-8", include_str!("assets/ui.js")),
    (
        "signin.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/signin.js"),
    ),
    (
        "triggers.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/triggers.js"),
    ),
    (
        "editor.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/editor.js"),
    ),
    (
        "queue.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/queue.js"),
    ),
    (
        "deliveries.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/deliveries.js"),
    ),
    (
        "activity.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/activity.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chart.js"),
    ),
    (
        "operator.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/operator.js"),
    ),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CSP))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::CACHE_CONTROL, "no-cache")),
            )
            .route("", web::get().to(to_index))
            .route("/", web::get().to(|| asset(web::Path::from("index.html".to_string()))))
            .route("/{file}", web::get().to(asset))
            .default_service(web::to(not_found)),
    );
}

async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            .body(*body),
        None => not_found().await,
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body("not found\n")
}
