//! XML pieces both SOAP faces (`soap`, `paint`) need: a safe reader that
//! refuses DTDs ([`dom`]), SOAP 1.1/1.2 envelopes and faults
//! ([`envelope`]), the Apache SOAP `Map` codec ([`map`]), escaping
//! ([`write`]) and request/response plumbing ([`http`]).

pub mod dom;
pub mod envelope;
pub mod http;
pub mod map;
#[cfg(test)]
mod map_tests;
pub mod write;

pub const SOAP11_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const SOAP11_ENC: &str = "http://schemas.xmlsoap.org/soap/encoding/";
pub const SOAP12_ENC: &str = "http://www.w3.org/2003/05/soap-encoding";
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema";
pub const APACHE_SOAP: &str = "http://xml.apache.org/xml-soap";
pub const WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// Why a request document was refused (always the caller's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

impl XmlError {
    pub fn new(msg: impl Into<String>) -> Self {
        XmlError(msg.into())
    }
}
