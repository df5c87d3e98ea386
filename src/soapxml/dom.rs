//! A small, safe XML element tree for SOAP requests. The reader refuses DTDs
//! (so no entity can be declared, expanded or fetched), knows only the five
//! predefined entities and character references, resolves every namespace
//! prefix, and bounds nesting depth.

use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

use super::{XmlError, XSI};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// A namespace-qualified name: `ns` is the namespace URI (None: no namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub ns: Option<String>,
    pub local: String,
}

impl Name {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }
}

#[derive(Debug, Clone)]
pub struct Attr {
    pub name: Name,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Element {
    pub name: Name,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// The element's own text (concatenated), unescaped.
    pub text: String,
    /// `xsi:type`, with its prefix resolved where the element stands.
    pub xsi_type: Option<Name>,
}

impl Element {
    pub fn local(&self) -> &str {
        &self.name.local
    }

    /// The first child with this local name (any namespace).
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name.local == local)
    }

    pub fn attr(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name.local == local && a.name.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// `xsi:nil="true"` (or `1`).
    pub fn is_nil(&self) -> bool {
        matches!(self.attr(Some(XSI), "nil").map(str::trim), Some("true" | "1"))
    }

    /// The text with surrounding whitespace removed.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn resolved(r: ResolveResult<'_>, local: &[u8], what: &str) -> Result<Name, XmlError> {
    let local = String::from_utf8(local.to_vec()).map_err(|_| XmlError::new("a name is not UTF-8"))?;
    let ns = match r {
        ResolveResult::Unbound => None,
        ResolveResult::Bound(ns) => {
            Some(String::from_utf8(ns.as_ref().to_vec()).map_err(|_| XmlError::new("a namespace is not UTF-8"))?)
        }
        ResolveResult::Unknown(p) => {
            return Err(XmlError::new(format!(
                "undeclared namespace prefix '{}' on {what} '{local}'",
                String::from_utf8_lossy(&p)
            )))
        }
    };
    Ok(Name { ns, local })
}

/// Parses a whole document into its root element.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_reader(input);
    {
        let c = reader.config_mut();
        c.expand_empty_elements = true;
        c.check_end_names = true;
        c.trim_text(false);
    }
    let mut buf = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::new(format!("malformed XML at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::DocType(_) => {
                return Err(XmlError::new(
                    "DTDs (<!DOCTYPE>) are not allowed: entity declarations are refused",
                ))
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::new("malformed XML: more than one root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::new(format!("elements nested deeper than {MAX_DEPTH} levels")));
                }
                let (r, local) = reader.resolve_element(e.name());
                let name = resolved(r, local.as_ref(), "element")?;
                let mut attrs = Vec::new();
                let mut xsi_type_raw = None;
                for a in e.attributes() {
                    let a = a.map_err(|e| XmlError::new(format!("malformed attribute: {e}")))?;
                    let key = a.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (r, local) = reader.resolve_attribute(key);
                    let aname = resolved(r, local.as_ref(), "attribute")?;
                    let value = a
                        .unescape_value()
                        .map_err(|e| XmlError::new(format!("attribute '{}': {e}", aname.local)))?
                        .into_owned();
                    if aname.is("http://www.w3.org/2001/XMLSchema-instance", "type") {
                        xsi_type_raw = Some(value.clone());
                    }
                    attrs.push(Attr { name: aname, value });
                }
                let xsi_type = match xsi_type_raw {
                    Some(v) => {
                        let v = v.trim().to_string();
                        let (r, local) = reader.resolve_element(QName(v.as_bytes()));
                        Some(resolved(r, local.as_ref(), "xsi:type")?)
                    }
                    None => None,
                };
                stack.push(Element {
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    xsi_type,
                });
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| XmlError::new("malformed XML: unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| XmlError::new(format!("malformed text: {e}")))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(XmlError::new("malformed XML: text outside the root element")),
                }
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c).map_err(|_| XmlError::new("CDATA is not UTF-8"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(text),
                    None => return Err(XmlError::new("malformed XML: CDATA outside the root element")),
                }
            }
            Event::Empty(_) => unreachable!("expand_empty_elements is on"),
            Event::Eof => break,
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(XmlError::new("malformed XML: the document ends inside an element"));
    }
    root.ok_or_else(|| XmlError::new("malformed XML: no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_prefixes_and_xsi_type() {
        let doc = br#"<a:r xmlns:a="urn:a" xmlns="urn:d" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
            xmlns:q="urn:q"><c xsi:type="q:T">x &amp; y &#65;</c><a:e/></a:r>"#;
        let r = parse(doc).unwrap();
        assert!(r.name.is("urn:a", "r"));
        assert!(r.children[0].name.is("urn:d", "c"));
        assert_eq!(r.children[0].text, "x & y A");
        assert!(r.children[0].xsi_type.as_ref().unwrap().is("urn:q", "T"));
        assert!(r.children[1].name.is("urn:a", "e"));
    }

    #[test]
    fn refuses_dtds_entities_and_garbage() {
        let lol = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(parse(lol).unwrap_err().to_string().contains("DTD"));
        let xxe = br#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert!(parse(xxe).is_err());
        assert!(parse(b"<a>&undefined;</a>").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<a/><b/>").is_err());
        assert!(parse(b"<p:a/>").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
