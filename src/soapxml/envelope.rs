//! SOAP 1.1 and 1.2 envelopes: reading a request, writing a response or a
//! fault in the version the request used, and WS-Security UsernameToken.

use super::dom::{self, Element, Limits};
use super::write::escape_into;
use super::{XmlError, SOAP11_ENV, SOAP12_ENV, WSSE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_ENV,
            SoapVersion::V12 => SOAP12_ENV,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }

    /// The version a Content-Type announces (for faults about documents
    /// too broken to say it themselves).
    pub fn from_content_type(ct: &str) -> SoapVersion {
        if ct.to_ascii_lowercase().contains("application/soap+xml") {
            SoapVersion::V12
        } else {
            SoapVersion::V11
        }
    }
}

/// A parsed request: its version, header blocks and the body's (first)
/// element, which names the operation.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub version: SoapVersion,
    pub header: Vec<Element>,
    pub body: Element,
    /// The Body's other elements (SOAP-encoded `multiRef`s that `href`s
    /// in `body` point at).
    pub body_rest: Vec<Element>,
}

/// Reads an envelope within [`Limits::DOCUMENT`] (documents of any size
/// this server wrote); requests are read with [`parse_envelope_with`].
pub fn parse_envelope(input: &[u8]) -> Result<Envelope, XmlError> {
    parse_envelope_with(input, &Limits::DOCUMENT)
}

/// Reads an envelope, refusing it as soon as it passes one of `limits`.
pub fn parse_envelope_with(input: &[u8], limits: &Limits) -> Result<Envelope, XmlError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(XmlError::new("empty request: send a SOAP envelope"));
    }
    let root = dom::parse_with(input, limits)?;
    let version = if root.name.is(SOAP11_ENV, "Envelope") {
        SoapVersion::V11
    } else if root.name.is(SOAP12_ENV, "Envelope") {
        SoapVersion::V12
    } else {
        return Err(XmlError::new(format!(
            "the document is not a SOAP envelope: its root is '{}' in namespace '{}'",
            root.name.local,
            root.name.ns.as_deref().unwrap_or("")
        )));
    };
    let ns = version.envelope_ns();
    let mut header = None;
    let mut body = None;
    for c in root.children {
        if c.name.is(ns, "Header") {
            if header.is_some() || body.is_some() {
                return Err(XmlError::new(
                    "the SOAP envelope has a second Header, or a Header after the Body",
                ));
            }
            header = Some(c.children);
        } else if c.name.is(ns, "Body") {
            if body.is_some() {
                return Err(XmlError::new("the SOAP envelope has more than one Body"));
            }
            body = Some(c);
        }
    }
    let header = header.unwrap_or_default();
    let body = body.ok_or_else(|| XmlError::new("the SOAP envelope has no Body"))?;
    let mut children = body.children.into_iter();
    let op = children
        .next()
        .ok_or_else(|| XmlError::new("the SOAP Body is empty: it must hold the operation element"))?;
    Ok(Envelope {
        version,
        header,
        body: op,
        body_rest: children.collect(),
    })
}

/// The first header block marked mustUnderstand that `understood` does not
/// accept.
pub fn not_understood(env: &Envelope, understood: impl Fn(&Element) -> bool) -> Option<&Element> {
    let ns = env.version.envelope_ns();
    env.header.iter().find(|h| {
        let must = matches!(h.attr(Some(ns), "mustUnderstand").map(str::trim), Some("1" | "true"));
        must && !understood(h)
    })
}

/// WS-Security header namespaces: the OASIS 1.0 one and the drafts some
/// older toolkits still send.
const WSSE_NAMESPACES: [&str; 3] = [
    WSSE,
    "http://schemas.xmlsoap.org/ws/2002/07/secext",
    "http://schemas.xmlsoap.org/ws/2002/04/secext",
];

/// A WS-Security `Security` header block.
pub fn is_security(h: &Element) -> bool {
    h.name.local == "Security" && WSSE_NAMESPACES.contains(&h.name.ns.as_deref().unwrap_or(""))
}

/// WS-Security UsernameToken (PasswordText) from the header, if present:
/// `Ok(Some((user, password)))`; a digest password is refused.
pub fn username_token(env: &Envelope) -> Result<Option<(String, String)>, XmlError> {
    let mut tokens = env
        .header
        .iter()
        .filter(|h| is_security(h))
        .flat_map(|sec| sec.children.iter().filter(|c| c.local() == "UsernameToken"));
    let Some(tok) = tokens.next() else {
        return Ok(None);
    };
    if tokens.next().is_some() {
        return Err(XmlError::new(
            "more than one UsernameToken: send one set of credentials",
        ));
    }
    if tok.children.iter().filter(|c| c.local() == "Password").count() > 1 {
        return Err(XmlError::new("the UsernameToken has more than one Password"));
    }
    let user = tok
        .child("Username")
        .map(|u| u.trimmed().to_string())
        .unwrap_or_default();
    let Some(pw) = tok.child("Password") else {
        return Err(XmlError::new("the UsernameToken has no Password"));
    };
    if let Some(t) = pw.attr(None, "Type") {
        if !t.ends_with("#PasswordText") {
            return Err(XmlError::new(
                "only PasswordText UsernameTokens are supported (send the API key as the password)",
            ));
        }
    }
    Ok(Some((user, pw.text.clone())))
}

/// Writes the envelope's start up to and including `<soap:Body>`, with the
/// extra `xmlns:prefix="uri"` declarations given.
pub fn start(out: &mut String, version: SoapVersion, ns: &[(&str, &str)]) {
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap=""#);
    out.push_str(version.envelope_ns());
    out.push('"');
    for (p, uri) in ns {
        out.push_str(" xmlns:");
        out.push_str(p);
        out.push_str("=\"");
        escape_into(out, uri);
        out.push('"');
    }
    out.push_str("><soap:Body>");
}

pub fn end(out: &mut String) {
    out.push_str("</soap:Body></soap:Envelope>");
}

/// Whose fault: the caller's (`Client`/`Sender`) or ours (`Server`/`Receiver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    Client,
    Server,
    MustUnderstand,
}

/// A complete fault envelope.
pub fn fault(version: SoapVersion, code: FaultCode, message: &str) -> String {
    let mut out = String::with_capacity(400 + message.len());
    start(&mut out, version, &[]);
    match version {
        SoapVersion::V11 => {
            out.push_str("<soap:Fault><faultcode>soap:");
            out.push_str(match code {
                FaultCode::Client => "Client",
                FaultCode::Server => "Server",
                FaultCode::MustUnderstand => "MustUnderstand",
            });
            out.push_str("</faultcode><faultstring>");
            escape_into(&mut out, message);
            out.push_str("</faultstring></soap:Fault>");
        }
        SoapVersion::V12 => {
            out.push_str("<soap:Fault><soap:Code><soap:Value>soap:");
            out.push_str(match code {
                FaultCode::Client => "Sender",
                FaultCode::Server => "Receiver",
                FaultCode::MustUnderstand => "MustUnderstand",
            });
            out.push_str(r#"</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="en">"#);
            escape_into(&mut out, message);
            out.push_str("</soap:Text></soap:Reason></soap:Fault>");
        }
    }
    end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_either_version_with_any_prefix() {
        let e = parse_envelope(
            br#"<E:Envelope xmlns:E="http://www.w3.org/2003/05/soap-envelope"><E:Header><w:Security
            xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
            <w:UsernameToken><w:Username>acme</w:Username><w:Password>k&amp;y</w:Password></w:UsernameToken>
            </w:Security></E:Header><E:Body><op xmlns="urn:x"/></E:Body></E:Envelope>"#,
        )
        .unwrap();
        assert_eq!(e.version, SoapVersion::V12);
        assert!(e.body.name.is("urn:x", "op"));
        assert_eq!(username_token(&e).unwrap(), Some(("acme".into(), "k&y".into())));
        let e = parse_envelope(
            br#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><a/></Body></Envelope>"#,
        )
        .unwrap();
        assert_eq!(e.version, SoapVersion::V11);
        assert!(parse_envelope(b"<a/>").is_err());
        assert!(
            parse_envelope(br#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body/></Envelope>"#)
                .is_err()
        );
    }

    #[test]
    fn faults_parse_back() {
        for v in [SoapVersion::V11, SoapVersion::V12] {
            let f = fault(v, FaultCode::Client, "bad <thing>");
            let e = parse_envelope(f.as_bytes()).unwrap();
            assert_eq!(e.body.local(), "Fault");
        }
    }
}
