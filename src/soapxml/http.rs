//! HTTP plumbing both SOAP faces share: reading a request envelope,
//! responses and faults with the right status and media type, serving a
//! WSDL with this server's address.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::Semaphore;

use super::dom::Limits;
use super::envelope::{self, Envelope, FaultCode, SoapVersion};
use super::write::escape;
use crate::body::{content_type, Bodies, BodyError};

/// Reads request envelopes: bodies up to `limit` bytes, parsed within
/// [`Limits::REQUEST`] on the blocking pool (never on the threads that
/// answer other requests), at most `parsers` at once.
#[derive(Clone)]
pub struct EnvelopeReader {
    limit: usize,
    bodies: Bodies,
    parsers: Arc<Semaphore>,
}

/// Why a request envelope was not read: the version to answer in (from
/// the Content-Type, as the document could not say), the message of a
/// Client fault, and the status when it is not the face's usual one.
#[derive(Debug)]
pub struct ReadError {
    pub version: SoapVersion,
    pub message: String,
    status: Option<StatusCode>,
}

impl ReadError {
    /// The fault to answer: `usual` builds it for a malformed document;
    /// a body too large, too slow or refused under load has its own status
    /// (413, 408, 503 with Retry-After), and closes the connection.
    pub fn respond(self, usual: impl FnOnce(SoapVersion, &str) -> HttpResponse) -> HttpResponse {
        let Some(status) = self.status else {
            return usual(self.version, &self.message);
        };
        let mut r = HttpResponse::build(status);
        r.insert_header((header::CONTENT_TYPE, self.version.content_type()));
        // The rest of the body is not drained: the connection is closed.
        r.force_close();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.insert_header((header::RETRY_AFTER, "1"));
        }
        r.body(envelope::fault(self.version, FaultCode::Client, &self.message))
    }
}

impl EnvelopeReader {
    pub fn new(limit: usize, bodies: Bodies, parsers: usize) -> Self {
        EnvelopeReader {
            limit,
            bodies,
            parsers: Arc::new(Semaphore::new(parsers.max(1))),
        }
    }

    /// Reads and parses a request envelope.
    pub async fn read(&self, req: &HttpRequest, payload: web::Payload) -> Result<Envelope, ReadError> {
        let version = SoapVersion::from_content_type(content_type(req));
        let fail = |status, message: String| ReadError {
            version,
            message,
            status,
        };
        let body = self.bodies.read(req, payload, self.limit).await.map_err(|e| {
            let status = match e {
                BodyError::TooLarge(_) => Some(StatusCode::PAYLOAD_TOO_LARGE),
                BodyError::TimedOut(_) => Some(StatusCode::REQUEST_TIMEOUT),
                BodyError::Busy => Some(StatusCode::SERVICE_UNAVAILABLE),
                BodyError::Unreadable(_) => None,
            };
            fail(status, e.to_string())
        })?;
        let busy = || {
            fail(
                Some(StatusCode::SERVICE_UNAVAILABLE),
                "the server is busy; retry shortly".into(),
            )
        };
        let _permit = self.parsers.acquire().await.map_err(|_| busy())?;
        web::block(move || envelope::parse_envelope_with(&body, &Limits::REQUEST))
            .await
            .map_err(|_| busy())?
            .map_err(|e| fail(None, e.to_string()))
    }
}

pub fn respond(version: SoapVersion, status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, version.content_type()))
        .body(body)
}

/// A fault with the status each version prescribes: SOAP 1.1 (WS-I Basic
/// Profile) always 500; SOAP 1.2 400 for the sender's faults, 500 for ours.
pub fn fault(version: SoapVersion, code: FaultCode, message: &str) -> HttpResponse {
    let status = match (version, code) {
        (SoapVersion::V12, FaultCode::Client) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if code == FaultCode::Server {
        tracing::error!(message, "SOAP server fault");
    }
    respond(version, status, envelope::fault(version, code, message))
}

/// A fault with the status given (PAINT answers its callers' faults with
/// 400, which PHP SoapClient and Savon read as faults too).
pub fn fault_with_status(version: SoapVersion, status: StatusCode, code: FaultCode, message: &str) -> HttpResponse {
    respond(version, status, envelope::fault(version, code, message))
}

/// A Client fault carried by HTTP 401 with a Basic challenge (what PHP
/// SoapClient and zeep understand as an authentication failure).
pub fn unauthorized(version: SoapVersion, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .insert_header((header::CONTENT_TYPE, version.content_type()))
        .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"eventd\""))
        .body(envelope::fault(version, FaultCode::Client, message))
}

/// `?wsdl` (any case, with or without a value).
fn wants_wsdl(req: &HttpRequest) -> bool {
    req.query_string()
        .split('&')
        .any(|p| p.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("wsdl")))
}

/// Base URL clients reach this server at: the configured public URL, else
/// the request's scheme and Host header. Escaped for an XML attribute.
fn base_url(req: &HttpRequest, public_url: Option<&str>) -> String {
    let base = match public_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    escape(&base)
}

/// A SOAP service's endpoint and WSDL.
pub struct Service {
    /// What to call it in the hint for a GET without `?wsdl`.
    pub name: &'static str,
    pub path: &'static str,
    pub wsdl: &'static str,
    /// The address written in the WSDL file, replaced by this server's.
    pub wsdl_address: &'static str,
}

/// `GET path?wsdl`: the WSDL with this server's address (the configured
/// public URL, else the request's host); without `?wsdl`, a 404 hint.
pub fn get_wsdl(req: &HttpRequest, public_url: Option<&str>, s: &Service) -> HttpResponse {
    if !wants_wsdl(req) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "POST {} requests here; the WSDL is at {}?wsdl\n",
                s.name, s.path
            ));
    }
    let address = format!("{}{}", base_url(req, public_url), s.path);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=utf-8"))
        .body(s.wsdl.replace(s.wsdl_address, &address))
}
