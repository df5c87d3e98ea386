//! A small, safe XML element tree for SOAP requests. The reader refuses DTDs
//! (so no entity can be declared, expanded or fetched), knows only the five
//! predefined entities and character references, resolves every namespace
//! prefix, refuses characters XML 1.0 forbids (NUL and the other C0 controls
//! but tab, LF and CR), and bounds everything a hostile document could
//! multiply: nesting depth, attributes per element, namespace declarations,
//! elements and text size ([`Limits`]). Its work is linear in the input: no
//! step scans more than a bounded number of earlier attributes or bindings.

use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

use super::{XmlError, XSI};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// What a document may contain at most. Each bound is checked before the
/// work it would multiply is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Element nesting.
    pub depth: usize,
    /// Attributes (namespace declarations included) on one element: the
    /// duplicate check and prefix resolution of an element's attributes
    /// cost at most `attributes²`.
    pub attributes: usize,
    /// Namespace declarations in the whole document: each name resolution
    /// scans the bindings in scope, so this bounds the work per name.
    pub namespaces: usize,
    /// Elements in the whole document.
    pub elements: usize,
    /// Text of one element, in bytes.
    pub text: usize,
}

impl Limits {
    /// For requests: a SOAP or PAINT request is a few dozen elements.
    pub const REQUEST: Limits = Limits {
        depth: MAX_DEPTH,
        attributes: 64,
        namespaces: 256,
        elements: 10_000,
        text: 256 * 1024,
    };
    /// For documents this server wrote (tests and tools reading responses
    /// of 10,000 events): still linear, any number of elements.
    pub const DOCUMENT: Limits = Limits {
        elements: usize::MAX,
        text: usize::MAX,
        ..Limits::REQUEST
    };
}

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

/// Parses a whole document into its root element, within [`Limits::DOCUMENT`].
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    parse_with(input, &Limits::DOCUMENT)
}

/// The first character XML 1.0 forbids (C0 controls but tab, LF, CR;
/// U+FFFE, U+FFFF), if any.
fn forbidden_char(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}')
}

fn checked(s: String, what: &str) -> Result<String, XmlError> {
    match forbidden_char(&s) {
        Some(c) => Err(XmlError::new(format!(
            "malformed XML: {what} holds the character U+{:04X}, which XML does not allow",
            c as u32
        ))),
        None => Ok(s),
    }
}

/// Appends text to the open element, within the text limit.
fn push_text(stack: &mut [Element], text: &str, limits: &Limits, what: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(top) => {
            if top.text.len() + text.len() > limits.text {
                return Err(XmlError::new(format!(
                    "the text of element '{}' exceeds {} bytes",
                    top.name.local, limits.text
                )));
            }
            top.text.push_str(text);
            Ok(())
        }
        None if what == "text" && text.trim().is_empty() => Ok(()),
        None => Err(XmlError::new(format!("malformed XML: {what} outside the root element"))),
    }
}

/// Parses a whole document into its root element, refusing it as soon as
/// it passes one of `limits`.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    // Raw control characters (a NUL in a name, a tag or text) are refused
    // before anything else; character references are checked once unescaped.
    if let Some(at) = input
        .iter()
        .position(|&b| b < b' ' && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Err(XmlError::new(format!(
            "malformed XML: control character 0x{:02X} at byte {at}",
            input[at]
        )));
    }
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
    let mut elements = 0usize;
    let mut namespaces = 0usize;
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
                if stack.len() >= limits.depth {
                    return Err(XmlError::new(format!(
                        "elements nested deeper than {} levels",
                        limits.depth
                    )));
                }
                elements += 1;
                if elements > limits.elements {
                    return Err(XmlError::new(format!(
                        "the document has more than {} elements",
                        limits.elements
                    )));
                }
                // Count before resolving anything: the raw walk is linear,
                // and everything after it is bounded by the counts.
                let mut raw = Vec::new();
                for a in e.attributes().with_checks(false) {
                    let a = a.map_err(|e| XmlError::new(format!("malformed attribute: {e}")))?;
                    if raw.len() == limits.attributes {
                        return Err(XmlError::new(format!(
                            "an element has more than {} attributes",
                            limits.attributes
                        )));
                    }
                    if a.key.as_namespace_binding().is_some() {
                        namespaces += 1;
                        if namespaces > limits.namespaces {
                            return Err(XmlError::new(format!(
                                "the document declares more than {} namespaces",
                                limits.namespaces
                            )));
                        }
                    }
                    raw.push(a);
                }
                for (i, a) in raw.iter().enumerate() {
                    if raw[..i].iter().any(|b| b.key == a.key) {
                        return Err(XmlError::new(format!(
                            "malformed XML: duplicate attribute '{}'",
                            String::from_utf8_lossy(a.key.as_ref())
                        )));
                    }
                }
                let (r, local) = reader.resolve_element(e.name());
                let name = resolved(r, local.as_ref(), "element")?;
                let mut attrs: Vec<Attr> = Vec::new();
                let mut xsi_type_raw = None;
                for a in raw {
                    let key = a.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (r, local) = reader.resolve_attribute(key);
                    let aname = resolved(r, local.as_ref(), "attribute")?;
                    if attrs.iter().any(|b| b.name == aname) {
                        return Err(XmlError::new(format!(
                            "malformed XML: attribute '{}' appears twice (through two prefixes)",
                            aname.local
                        )));
                    }
                    let value = a
                        .unescape_value()
                        .map_err(|e| XmlError::new(format!("attribute '{}': {e}", aname.local)))?
                        .into_owned();
                    let value = checked(value, "an attribute")?;
                    if aname.is(XSI, "type") {
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
                if let Some(c) = forbidden_char(&text) {
                    return Err(XmlError::new(format!(
                        "malformed XML: text holds the character U+{:04X}, which XML does not allow",
                        c as u32
                    )));
                }
                push_text(&mut stack, &text, limits, "text")?;
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c).map_err(|_| XmlError::new("CDATA is not UTF-8"))?;
                push_text(&mut stack, text, limits, "CDATA")?;
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

    fn attrs_doc(n: usize, prefix: &str) -> String {
        let mut d = String::from("<r");
        for i in 0..n {
            d.push_str(&format!(" {prefix}{i}=\"u{i}\""));
        }
        d.push_str("/>");
        d
    }

    /// 100,000 attributes on one element took ~28 s (a duplicate check of
    /// each attribute against all earlier ones): refused at the limit now.
    #[test]
    fn refuses_many_attributes_and_namespace_declarations() {
        let e = parse(attrs_doc(100_000, "a").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 64 attributes"), "{e}");
        let e = parse(attrs_doc(100_000, "xmlns:p").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 64 attributes"), "{e}");
        assert!(parse(attrs_doc(64, "a").as_bytes()).is_ok());
        // Declarations spread over elements count for the whole document.
        let nested: String = (0..300)
            .map(|i| format!("<e xmlns:p{i}=\"urn:{i}\">"))
            .collect::<String>()
            + &"</e>".repeat(300);
        let limits = Limits {
            depth: 1000,
            ..Limits::REQUEST
        };
        let e = parse_with(nested.as_bytes(), &limits).unwrap_err();
        assert!(e.to_string().contains("more than 256 namespaces"), "{e}");
    }

    #[test]
    fn request_limits_bound_elements_and_text() {
        let many = format!("<r>{}</r>", "<a/>".repeat(10_000));
        let e = parse_with(many.as_bytes(), &Limits::REQUEST).unwrap_err();
        assert!(e.to_string().contains("more than 10000 elements"), "{e}");
        assert!(parse(many.as_bytes()).is_ok());
        let long = format!("<r>{}<![CDATA[x]]></r>", "x".repeat(256 * 1024));
        let e = parse_with(long.as_bytes(), &Limits::REQUEST).unwrap_err();
        assert!(e.to_string().contains("exceeds 262144 bytes"), "{e}");
    }

    #[test]
    fn refuses_control_characters_and_duplicate_attributes() {
        for doc in [
            &b"<a>x\0y</a>"[..],
            b"<a\0/>",
            b"<a b='\x01'/>",
            b"<a>&#1;</a>",
            b"<a b='&#x1F;'/>",
            b"<a>&#xFFFF;</a>",
            b"<a b='1' b='2'/>",
            b"<a xmlns:p='urn:x' xmlns:q='urn:x' p:b='1' q:b='2'/>",
        ] {
            assert!(parse(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
        assert!(parse(b"<a>\t&#10;\r\n&#9;</a>").is_ok());
    }
}
