//! HTTP plumbing both SOAP faces share: bounded body reading, responses
//! and faults with the right status and media type, WSDL addresses.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::envelope::{self, FaultCode, SoapVersion};
use super::write::escape;

/// Reads the request body up to `limit` bytes; `Err` is a message for a
/// Client fault.
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, String> {
    let too_large = || format!("the request body exceeds {limit} bytes");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| format!("could not read the body: {e}"))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The request's Content-Type header value ("" if none).
pub fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
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
pub fn wants_wsdl(req: &HttpRequest) -> bool {
    req.query_string()
        .split('&')
        .any(|p| p.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("wsdl")))
}

/// Base URL clients reach this server at: the configured public URL, else
/// the request's scheme and Host header. Escaped for an XML attribute.
pub fn base_url(req: &HttpRequest, public_url: Option<&str>) -> String {
    let base = match public_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    escape(&base)
}

/// Serves a WSDL whose `placeholder` address is replaced with this
/// server's `path`.
pub fn wsdl_response(
    req: &HttpRequest,
    public_url: Option<&str>,
    wsdl: &str,
    placeholder: &str,
    path: &str,
) -> HttpResponse {
    let address = format!("{}{}", base_url(req, public_url), path);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=utf-8"))
        .body(wsdl.replace(placeholder, &address))
}
