//! The `eventNotification` SOAP service (SPEC §5): document/literal
//! wrapped, SOAP 1.1 and 1.2, over the same [`crate::pull::Pull`]
//! operations as the JSON API. The WSDL is `wsdl/eventNotification.wsdl`.

mod render;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use crate::auth::{retry_after_secs, AuthError, Credentials, Principal};
use crate::body::content_type;
use crate::pull::FetchParams;
use crate::soapxml::dom::Element;
use crate::soapxml::envelope::{self, Envelope, FaultCode, SoapVersion};
use crate::soapxml::http as soaphttp;
use crate::state::AppState;
use crate::store::accounts::Account;
use crate::store::failure::{STORAGE_FULL_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER};
use crate::store::StoreError;

pub use render::NS;
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

/// A fault to answer with: whose fault it is, what went wrong, and the
/// HTTP status when it is not the version's usual one (401 with a Basic
/// challenge, 403, 429 with `Retry-After`).
struct Fault {
    code: FaultCode,
    message: String,
    status: Option<StatusCode>,
    retry_after: Option<u64>,
}

impl Fault {
    fn client(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    fn server(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Server,
            ..Fault::client(message)
        }
    }

    fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Fault {
            status: Some(status),
            ..Fault::client(message)
        }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Fault::with_status(StatusCode::UNAUTHORIZED, message)
    }

    fn respond(self, version: SoapVersion) -> HttpResponse {
        match self.status {
            Some(StatusCode::UNAUTHORIZED) => soaphttp::unauthorized(version, &self.message),
            Some(status) => {
                let mut r = soaphttp::fault_with_status(version, status, self.code, &self.message);
                if let Some(secs) = self.retry_after {
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                r
            }
            None => soaphttp::fault(version, self.code, &self.message),
        }
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Fault::client("unknown batch: no batch of this account has that id"),
            StoreError::Conflict(m) => Fault::client(format!("conflict: {m}")),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                Fault {
                    status: Some(StatusCode::SERVICE_UNAVAILABLE),
                    retry_after: Some(UNAVAILABLE_RETRY_AFTER),
                    ..Fault::server("the database is unavailable; nothing was done, retry shortly")
                }
            }
            StoreError::StorageFull(_) => Fault {
                status: Some(StatusCode::INSUFFICIENT_STORAGE),
                retry_after: Some(STORAGE_FULL_RETRY_AFTER),
                ..Fault::server(
                    "storage_full: the server's storage is full; no events are accepted until consumers drain the queue or space is added",
                )
            },
            StoreError::OutOfSpace(_) => Fault {
                status: Some(StatusCode::INSUFFICIENT_STORAGE),
                retry_after: Some(STORAGE_FULL_RETRY_AFTER),
                ..Fault::server(
                    "storage_full: the database is out of space; nothing was done; writes fail until space is added",
                )
            },
            other => {
                tracing::error!(error = %other, "storage failure");
                Fault::server("the server failed; the request may be retried")
            }
        }
    }
}

async fn handle(req: HttpRequest, body: web::Payload, st: web::Data<AppState>) -> HttpResponse {
    // Credentials in the headers are checked before the body is read: a
    // caller with wrong ones costs no body buffering or parsing.
    let fallback = SoapVersion::from_content_type(content_type(&req));
    let from_header = match header_credentials(&req) {
        Ok(Some(creds)) => match resolve(&req, &st, creds.clone()).await {
            Ok(account) => Some((creds, account)),
            Err(f) => return f.respond(fallback),
        },
        Ok(None) => None,
        Err(f) => return f.respond(fallback),
    };
    let env = match st.envelopes.read(&req, body).await {
        Ok(e) => e,
        Err(e) => return e.respond(|v, m| soaphttp::fault(v, FaultCode::Client, m)),
    };
    let version = env.version;
    match serve(&req, &st, &env, from_header).await {
        Ok(body) => soaphttp::respond(version, StatusCode::OK, body),
        Err(f) => f.respond(version),
    }
}

async fn serve(
    req: &HttpRequest,
    st: &web::Data<AppState>,
    env: &Envelope,
    from_header: Option<(Credentials, Account)>,
) -> Result<String, Fault> {
    if let Some(h) = envelope::not_understood(env, envelope::is_security) {
        return Err(Fault {
            code: FaultCode::MustUnderstand,
            ..Fault::client(format!("header '{}' is not understood", h.name.local))
        });
    }
    let account = authenticate(req, st, env, from_header).await?;
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

/// Basic or Bearer credentials from the `Authorization` header, if sent.
fn header_credentials(req: &HttpRequest) -> Result<Option<Credentials>, Fault> {
    match req.headers().get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(Credentials::from_header)
            .map(Some)
            .ok_or_else(|| Fault::unauthorized("unreadable Authorization header: use Basic or Bearer")),
    }
}

/// The account of credentials; the operator token is refused (403).
async fn resolve(req: &HttpRequest, st: &web::Data<AppState>, creds: Credentials) -> Result<Account, Fault> {
    let auth = st.auth.clone();
    let client = req.peer_addr().map(|a| a.ip());
    let principal = web::block(move || auth.authenticate(Some(&creds), client))
        .await
        .map_err(|_| Fault::server("the server failed; the request may be retried"))?;
    match principal {
        Ok(Principal::Account(a)) => Ok(a),
        Ok(Principal::Operator) => Err(Fault::with_status(
            StatusCode::FORBIDDEN,
            "this service needs an account's API key, not the operator token",
        )),
        Err(AuthError::Missing) => Err(Fault::unauthorized(
            "credentials required: HTTP Basic (password = API key), Bearer, or a WS-Security UsernameToken",
        )),
        Err(AuthError::Invalid) => Err(Fault::unauthorized("invalid or revoked credentials")),
        Err(AuthError::Limited(wait)) => Err(Fault {
            retry_after: Some(retry_after_secs(wait)),
            ..Fault::with_status(StatusCode::TOO_MANY_REQUESTS, AuthError::Limited(wait).to_string())
        }),
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// HTTP Basic or Bearer (already resolved), and/or a WS-Security
/// UsernameToken. When both are sent, the token's password must be the
/// header's secret: one request never carries two identities.
async fn authenticate(
    req: &HttpRequest,
    st: &web::Data<AppState>,
    env: &Envelope,
    from_header: Option<(Credentials, Account)>,
) -> Result<Account, Fault> {
    let token = envelope::username_token(env).map_err(|e| Fault::unauthorized(e.to_string()))?;
    match (from_header, token) {
        (Some((creds, account)), Some((_, password))) => {
            if bool::from(creds.secret().as_bytes().ct_eq(password.as_bytes())) {
                Ok(account)
            } else {
                st.auth.failed(req.peer_addr().map(|a| a.ip()));
                Err(Fault::unauthorized(
                    "the WS-Security UsernameToken and the Authorization header carry different credentials",
                ))
            }
        }
        (Some((_, account)), None) => Ok(account),
        (None, Some((user, password))) => resolve(req, st, Credentials::Basic { user, password }).await,
        (None, None) => Err(Fault::unauthorized(
            "credentials required: HTTP Basic (password = API key), Bearer, or a WS-Security UsernameToken",
        )),
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
