//! The `eventNotification` SOAP service (SPEC §5): document/literal
//! wrapped, SOAP 1.1 and 1.2, over the same [`crate::pull::Pull`]
//! operations as the JSON API. The WSDL is `wsdl/eventNotification.wsdl`.

mod render;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::{AuthError, Credentials, Principal};
use crate::pull::FetchParams;
use crate::soapxml::dom::Element;
use crate::soapxml::envelope::{self, Envelope, FaultCode, SoapVersion};
use crate::soapxml::http as soaphttp;
use crate::startup::AppState;
use crate::store::accounts::Account;
use crate::store::StoreError;

pub const NS: &str = "urn:eventd:eventNotification";
pub const PATH: &str = "/soap/eventNotification";
pub const WSDL: &str = include_str!("../../wsdl/eventNotification.wsdl");
const SERVICE: soaphttp::Service = soaphttp::Service {
    name: "SOAP",
    path: PATH,
    wsdl: WSDL,
    wsdl_address: "http://localhost:8080/soap/eventNotification",
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(PATH)
            .route(web::get().to(wsdl))
            .route(web::post().to(handle)),
    );
}

async fn wsdl(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    soaphttp::get_wsdl(&req, st.settings.public_url.as_deref(), &SERVICE)
}

/// A fault to answer with: whose fault it is and what went wrong.
struct Fault {
    code: FaultCode,
    message: String,
    unauthorized: bool,
}

impl Fault {
    fn client(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
            unauthorized: false,
        }
    }

    fn server(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Server,
            message: message.into(),
            unauthorized: false,
        }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Fault {
            unauthorized: true,
            ..Fault::client(message)
        }
    }

    fn respond(self, version: SoapVersion) -> HttpResponse {
        if self.unauthorized {
            soaphttp::unauthorized(version, &self.message)
        } else {
            soaphttp::fault(version, self.code, &self.message)
        }
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Fault::client("unknown batch: no batch of this account has that id"),
            StoreError::Conflict(m) => Fault::client(format!("conflict: {m}")),
            StoreError::Pool(_) | StoreError::Connect(_) => Fault::server("the database is unavailable; retry shortly"),
            other => {
                tracing::error!(error = %other, "storage failure");
                Fault::server("the server failed; the request may be retried")
            }
        }
    }
}

async fn handle(req: HttpRequest, body: web::Payload, st: web::Data<AppState>) -> HttpResponse {
    let env = match soaphttp::read_envelope(&req, body, st.settings.max_body_bytes).await {
        Ok(e) => e,
        Err((v, m)) => return soaphttp::fault(v, FaultCode::Client, &m),
    };
    let version = env.version;
    match serve(&req, &st, &env).await {
        Ok(body) => soaphttp::respond(version, StatusCode::OK, body),
        Err(f) => f.respond(version),
    }
}

async fn serve(req: &HttpRequest, st: &web::Data<AppState>, env: &Envelope) -> Result<String, Fault> {
    if let Some(h) = envelope::not_understood(env, envelope::is_security) {
        return Err(Fault {
            code: FaultCode::MustUnderstand,
            message: format!("header '{}' is not understood", h.name.local),
            unauthorized: false,
        });
    }
    let account = authenticate(req, st, env).await?;
    let op = &env.body;
    if !matches!(op.name.ns.as_deref(), None | Some(NS)) {
        return Err(Fault::client(format!(
            "unknown operation '{}' in namespace '{}' (this service's namespace is {NS})",
            op.name.local,
            op.name.ns.as_deref().unwrap_or("")
        )));
    }
    let v = env.version;
    match op.local() {
        "fetchBatch" => {
            let (fetch, wait) = fetch_params(op)?
                .validate()
                .map_err(|e| Fault::client(format!("invalid argument {}: {}", soap_name(e.field), e.message)))?;
            let batch = st.pull.fetch(account.id, fetch, wait).await?;
            render::fetch_response(v, batch.as_ref()).map_err(Fault::server)
        }
        "markBatchRead" => {
            let id = batch_id(op)?;
            let n = st.pull.mark_read(account.id, id.clone()).await?;
            Ok(render::count_response(v, "markBatchReadResponse", &id, "deleted", n))
        }
        "releaseBatch" => {
            let id = batch_id(op)?;
            let n = st.pull.release(account.id, id.clone()).await?;
            Ok(render::count_response(v, "releaseBatchResponse", &id, "released", n))
        }
        "getQueueStatus" => {
            no_args(op)?;
            let s = st.pull.status(account.id).await?;
            Ok(render::status_response(v, &s))
        }
        other => Err(Fault::client(format!(
            "unknown operation '{other}': this service has fetchBatch, markBatchRead, releaseBatch, getQueueStatus"
        ))),
    }
}

/// HTTP Basic or Bearer first; else a WS-Security UsernameToken.
async fn authenticate(req: &HttpRequest, st: &web::Data<AppState>, env: &Envelope) -> Result<Account, Fault> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds = match header {
        Some(h) => Some(
            Credentials::from_header(h)
                .ok_or_else(|| Fault::unauthorized("unreadable Authorization header: use Basic or Bearer"))?,
        ),
        None => envelope::username_token(env)
            .map_err(|e| Fault::unauthorized(e.to_string()))?
            .map(|(user, password)| Credentials::Basic { user, password }),
    };
    let auth = st.auth.clone();
    let principal = web::block(move || auth.authenticate(creds.as_ref()))
        .await
        .map_err(|_| Fault::server("the server failed; the request may be retried"))?;
    match principal {
        Ok(Principal::Account(a)) => Ok(a),
        Ok(Principal::Operator) => Err(Fault::client(
            "this service needs an account's API key, not the operator token",
        )),
        Err(AuthError::Missing) => Err(Fault::unauthorized(
            "credentials required: HTTP Basic (password = API key), Bearer, or a WS-Security UsernameToken",
        )),
        Err(AuthError::Invalid) => Err(Fault::unauthorized("invalid or revoked credentials")),
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// The SOAP spelling of a [`FetchParams`] field.
fn soap_name(field: &str) -> &str {
    match field {
        "lease_seconds" => "leaseSeconds",
        "wait_seconds" => "waitSeconds",
        other => other,
    }
}

/// The argument elements of an operation, nil ones left out.
fn args(op: &Element) -> impl Iterator<Item = &Element> {
    op.children.iter().filter(|c| !c.is_nil())
}

fn int_arg(el: &Element) -> Result<i64, Fault> {
    el.trimmed().parse().map_err(|_| {
        Fault::client(format!(
            "invalid argument {}: '{}' is not an integer",
            el.local(),
            el.trimmed()
        ))
    })
}

fn fetch_params(op: &Element) -> Result<FetchParams, Fault> {
    let mut p = FetchParams::default();
    for a in args(op) {
        match a.local() {
            "size" => p.size = Some(int_arg(a)?),
            "consumer" => p.consumer = Some(a.trimmed().to_string()),
            "triggers" => {
                let list = p.triggers.get_or_insert_with(Vec::new);
                list.extend(
                    a.trimmed()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
            "leaseSeconds" => p.lease_seconds = Some(int_arg(a)?),
            "waitSeconds" => {
                let w: f64 = a.trimmed().parse().map_err(|_| {
                    Fault::client(format!(
                        "invalid argument waitSeconds: '{}' is not a number",
                        a.trimmed()
                    ))
                })?;
                p.wait_seconds = Some(w);
            }
            other => {
                return Err(Fault::client(format!(
                    "unknown argument '{other}' for fetchBatch (size, consumer, triggers, leaseSeconds, waitSeconds)"
                )))
            }
        }
    }
    Ok(p)
}

fn batch_id(op: &Element) -> Result<String, Fault> {
    let mut id = None;
    for a in args(op) {
        match a.local() {
            "batchId" => id = Some(a.trimmed().to_string()),
            other => {
                return Err(Fault::client(format!(
                    "unknown argument '{other}' for {} (batchId)",
                    op.local()
                )))
            }
        }
    }
    match id {
        Some(id) if !id.is_empty() && id.len() <= 100 => Ok(id),
        Some(_) => Err(Fault::client("invalid argument batchId: unknown batch")),
        None => Err(Fault::client(format!("{} needs a batchId", op.local()))),
    }
}

fn no_args(op: &Element) -> Result<(), Fault> {
    match args(op).next() {
        Some(a) => Err(Fault::client(format!(
            "unknown argument '{}' for {}: it takes none",
            a.local(),
            op.local()
        ))),
        None => Ok(()),
    }
}
