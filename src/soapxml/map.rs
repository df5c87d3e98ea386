//! The Apache SOAP `Map` (`{http://xml.apache.org/xml-soap}Map`) both ways:
//! `<item><key xsi:type="xsd:string">k</key><value xsi:type="…">v</value></item>`,
//! with `xsi:type` on every value, `xsi:nil`, nested maps and SOAP-encoded
//! arrays. This is what PHP's SoapClient turns into associative arrays.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use super::dom::Element;
use super::write::escape_into;
use super::{APACHE_SOAP, SOAP11_ENC, SOAP12_ENC, XSD};

#[derive(Debug, Clone, Default, PartialEq)]
pub enum MapValue {
    #[default]
    Nil,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Ordered (key, value) pairs.
    Map(Vec<(String, MapValue)>),
    Array(Vec<MapValue>),
}

impl MapValue {
    /// The value of `key` if this is a map.
    pub fn get(&self, key: &str) -> Option<&MapValue> {
        match self {
            MapValue::Map(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Scalars as text (None for nil, maps and arrays).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            MapValue::Str(s) => Some(Cow::Borrowed(s)),
            MapValue::Int(i) => Some(Cow::Owned(i.to_string())),
            MapValue::Float(f) => Some(Cow::Owned(f.to_string())),
            MapValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, MapValue::Nil)
    }

    pub fn map(items: Vec<(&str, MapValue)>) -> MapValue {
        MapValue::Map(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn str(s: impl Into<String>) -> MapValue {
        MapValue::Str(s.into())
    }
}

fn is_enc(ns: Option<&str>) -> bool {
    matches!(ns, Some(SOAP11_ENC | SOAP12_ENC))
}

/// Decodes an element holding a value (a map, an array, a scalar) of a
/// document this server wrote (a response of any size: no budget).
pub fn decode(el: &Element) -> Result<MapValue, String> {
    decode_with(el, &[], usize::MAX)
}

/// Most work one decode may do, in bytes of output: each value visited
/// (map item, array element, scalar, reference followed) costs
/// [`VALUE_COST`] plus the length of its text. References may share
/// targets, so without a budget a few kilobytes of multiRefs could unfold
/// into billions of values or copies of one long text.
pub const MAX_DECODED_BYTES: usize = 1024 * 1024;
/// What one value costs against [`MAX_DECODED_BYTES`].
pub const VALUE_COST: usize = 32;

/// Decodes a value whose parts may be SOAP-encoded references
/// (`href="#id0"`) to the multi-reference elements `refs` (the Body's
/// other elements, as Axis 1 clients send them).
/// Used for requests: at most [`MAX_DECODED_BYTES`] of work.
pub fn decode_in(el: &Element, refs: &[Element]) -> Result<MapValue, String> {
    decode_with(el, refs, MAX_DECODED_BYTES)
}

fn decode_with(el: &Element, refs: &[Element], budget: usize) -> Result<MapValue, String> {
    let mut ids = HashMap::with_capacity(refs.len());
    for r in refs {
        if let Some(id) = r.attr(None, "id") {
            ids.entry(id).or_insert(r);
        }
    }
    Decoder {
        ids,
        budget: Cell::new(budget),
    }
    .at(el, 0)
}

struct Decoder<'r> {
    ids: HashMap<&'r str, &'r Element>,
    /// Work still allowed (see [`MAX_DECODED_BYTES`]).
    budget: Cell<usize>,
}

impl<'r> Decoder<'r> {
    fn at(&self, el: &'r Element, depth: usize) -> Result<MapValue, String> {
        if depth > 32 {
            return Err("values nested too deeply (or a reference cycle)".into());
        }
        match self.budget.get().checked_sub(VALUE_COST + el.text.len()) {
            Some(left) => self.budget.set(left),
            None => {
                return Err(format!(
                    "the values of '{}' decode to more than {MAX_DECODED_BYTES} bytes",
                    el.local()
                ))
            }
        }
        if let Some(target) = el.attr(None, "href").and_then(|h| h.strip_prefix('#')) {
            let found = self
                .ids
                .get(target)
                .copied()
                .ok_or_else(|| format!("'{}' refers to '#{target}', which is not in the message", el.local()))?;
            return self.at(found, depth + 1);
        }
        decode_at(self, el, depth)
    }
}

fn decode_at<'r>(d: &Decoder<'r>, el: &'r Element, depth: usize) -> Result<MapValue, String> {
    if el.is_nil() {
        return Ok(MapValue::Nil);
    }
    let has_array_type = el
        .attrs
        .iter()
        .any(|a| a.name.local == "arrayType" && is_enc(a.name.ns.as_deref()));
    if let Some(t) = &el.xsi_type {
        let ns = t.ns.as_deref();
        let local = t.local.as_str();
        if ns == Some(APACHE_SOAP) && local == "Map" {
            return decode_map(d, el, depth);
        }
        if is_enc(ns) && local == "Array" {
            return decode_array(d, el, depth);
        }
        if ns == Some(XSD) || is_enc(ns) {
            let text = el.trimmed();
            let bad = |what: &str| format!("'{}': '{}' is not a valid {what}", el.local(), text);
            return match local {
                "int" | "integer" | "long" | "short" | "byte" | "unsignedInt" | "unsignedShort" | "unsignedByte"
                | "unsignedLong" | "nonNegativeInteger" | "positiveInteger" => {
                    text.parse().map(MapValue::Int).map_err(|_| bad("integer"))
                }
                "boolean" => match text {
                    "true" | "1" => Ok(MapValue::Bool(true)),
                    "false" | "0" => Ok(MapValue::Bool(false)),
                    _ => Err(bad("boolean")),
                },
                "double" | "float" | "decimal" => text.parse().map(MapValue::Float).map_err(|_| bad("number")),
                _ => Ok(MapValue::Str(el.text.clone())),
            };
        }
    }
    if has_array_type {
        return decode_array(d, el, depth);
    }
    if el.children.is_empty() {
        return Ok(MapValue::Str(el.text.clone()));
    }
    // Untyped structure: items with keys are a map; otherwise a struct
    // (child names as keys) or, when every child has the same name, a list.
    if el
        .children
        .iter()
        .all(|c| c.local() == "item" && c.child("key").is_some())
    {
        return decode_map(d, el, depth);
    }
    let first = el.children[0].local();
    if el.children.len() > 1 && el.children.iter().all(|c| c.local() == first) {
        return decode_array(d, el, depth);
    }
    let mut items = Vec::with_capacity(el.children.len());
    for c in &el.children {
        items.push((c.local().to_string(), d.at(c, depth + 1)?));
    }
    Ok(MapValue::Map(items))
}

fn decode_map<'r>(d: &Decoder<'r>, el: &'r Element, depth: usize) -> Result<MapValue, String> {
    let mut items = Vec::with_capacity(el.children.len());
    for item in &el.children {
        let key = item
            .child("key")
            .ok_or_else(|| format!("a map item in '{}' has no key", el.local()))?;
        let key = match d.at(key, depth + 1)? {
            MapValue::Nil => String::new(),
            k => k
                .as_text()
                .ok_or_else(|| format!("a map key in '{}' is not a scalar", el.local()))?
                .into_owned(),
        };
        let value = match item.child("value") {
            Some(v) => d.at(v, depth + 1)?,
            None => MapValue::Nil,
        };
        items.push((key, value));
    }
    Ok(MapValue::Map(items))
}

fn decode_array<'r>(d: &Decoder<'r>, el: &'r Element, depth: usize) -> Result<MapValue, String> {
    el.children
        .iter()
        .map(|c| d.at(c, depth + 1))
        .collect::<Result<Vec<_>, _>>()
        .map(MapValue::Array)
}

/// The prefixes the writer uses; the envelope must declare them
/// (see [`Prefixes::declarations`]).
#[derive(Debug, Clone, Copy)]
pub struct Prefixes {
    pub xsi: &'static str,
    pub xsd: &'static str,
    pub map: &'static str,
    pub enc: &'static str,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            xsi: "xsi",
            xsd: "xsd",
            map: "ns2",
            enc: "SOAP-ENC",
        }
    }
}

impl Prefixes {
    pub fn declarations(&self) -> [(&'static str, &'static str); 4] {
        [
            (self.xsi, super::XSI),
            (self.xsd, XSD),
            (self.map, APACHE_SOAP),
            (self.enc, SOAP11_ENC),
        ]
    }
}

fn open_typed(out: &mut String, name: &str, p: &Prefixes, tp: &str, ty: &str) {
    out.push('<');
    out.push_str(name);
    out.push(' ');
    out.push_str(p.xsi);
    out.push_str(":type=\"");
    out.push_str(tp);
    out.push(':');
    out.push_str(ty);
    out.push('"');
}

fn close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Writes `<name xsi:type="…">value</name>`.
pub fn encode_value(out: &mut String, name: &str, v: &MapValue, p: &Prefixes) {
    match v {
        MapValue::Nil => {
            out.push('<');
            out.push_str(name);
            out.push(' ');
            out.push_str(p.xsi);
            out.push_str(":nil=\"true\"/>");
        }
        MapValue::Str(s) => encode_str(out, name, s, p),
        MapValue::Int(i) => {
            let ty = if i32::try_from(*i).is_ok() { "int" } else { "long" };
            open_typed(out, name, p, p.xsd, ty);
            out.push('>');
            out.push_str(&i.to_string());
            close(out, name);
        }
        MapValue::Float(f) => {
            open_typed(out, name, p, p.xsd, "double");
            out.push('>');
            out.push_str(&if f.is_finite() { f.to_string() } else { "NaN".into() });
            close(out, name);
        }
        MapValue::Bool(b) => {
            open_typed(out, name, p, p.xsd, "boolean");
            out.push('>');
            out.push_str(if *b { "true" } else { "false" });
            close(out, name);
        }
        MapValue::Map(items) => {
            open_typed(out, name, p, p.map, "Map");
            out.push('>');
            for (k, v) in items {
                encode_item(out, k, v, p);
            }
            close(out, name);
        }
        MapValue::Array(items) => {
            open_typed(out, name, p, p.enc, "Array");
            out.push(' ');
            out.push_str(p.enc);
            out.push_str(":arrayType=\"");
            out.push_str(p.xsd);
            out.push_str(":anyType[");
            out.push_str(&items.len().to_string());
            out.push_str("]\">");
            for v in items {
                encode_value(out, "item", v, p);
            }
            close(out, name);
        }
    }
}

/// Writes `<name xsi:type="xsd:string">escaped</name>` (the hot path).
pub fn encode_str(out: &mut String, name: &str, s: &str, p: &Prefixes) {
    open_typed(out, name, p, p.xsd, "string");
    out.push('>');
    escape_into(out, s);
    close(out, name);
}

/// Writes one `<item><key>…</key><value>…</value></item>`.
pub fn encode_item(out: &mut String, key: &str, v: &MapValue, p: &Prefixes) {
    out.push_str("<item>");
    encode_str(out, "key", key, p);
    encode_value(out, "value", v, p);
    out.push_str("</item>");
}

/// Writes one string-valued item (no `MapValue` needed).
pub fn encode_str_item(out: &mut String, key: &str, value: &str, p: &Prefixes) {
    out.push_str("<item>");
    encode_str(out, "key", key, p);
    encode_str(out, "value", value, p);
    out.push_str("</item>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soapxml::dom;

    fn roundtrip(v: &MapValue) -> MapValue {
        let p = Prefixes::default();
        let mut out = String::from("<r");
        for (pre, uri) in p.declarations() {
            out.push_str(&format!(" xmlns:{pre}=\"{uri}\""));
        }
        out.push('>');
        encode_value(&mut out, "v", v, &p);
        out.push_str("</r>");
        let root = dom::parse(out.as_bytes()).unwrap();
        decode(&root.children[0]).unwrap()
    }

    #[test]
    fn encodes_and_decodes_nested_values() {
        let v = MapValue::map(vec![
            ("s", MapValue::str("a & <b>")),
            ("i", MapValue::Int(42)),
            ("big", MapValue::Int(1 << 40)),
            ("f", MapValue::Float(1.5)),
            ("b", MapValue::Bool(true)),
            ("n", MapValue::Nil),
            ("m", MapValue::map(vec![("x", MapValue::str("y"))])),
            ("a", MapValue::Array(vec![MapValue::str("p"), MapValue::Int(1)])),
            ("empty", MapValue::Map(vec![])),
        ]);
        assert_eq!(roundtrip(&v), v);
    }

    #[test]
    fn decodes_php_style_maps_with_other_prefixes() {
        let doc = br#"<p xmlns:x="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema"
            xmlns:m="http://xml.apache.org/xml-soap" xmlns:E="http://schemas.xmlsoap.org/soap/encoding/" x:type="m:Map">
            <item><key x:type="s:string">userName</key><value x:type="s:string">acme</value></item>
            <item><key x:type="s:int">7</key><value x:nil="true"/></item>
            <item><key x:type="s:string">list</key><value E:arrayType="s:string[2]" x:type="E:Array">
              <item x:type="s:string">a</item><item x:type="s:string">b</item></value></item>
            </p>"#;
        let v = decode(&dom::parse(doc).unwrap()).unwrap();
        assert_eq!(v.get("userName"), Some(&MapValue::str("acme")));
        assert_eq!(v.get("7"), Some(&MapValue::Nil));
        assert_eq!(
            v.get("list"),
            Some(&MapValue::Array(vec![MapValue::str("a"), MapValue::str("b")]))
        );
        let multi =
            br##"<b xmlns:x="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema"
            xmlns:m="http://xml.apache.org/xml-soap"><op><data href="#id0"/></op>
            <multiRef id="id0" x:type="m:Map"><item><key href="#id1"/><value href="#id1"/></item></multiRef>
            <multiRef id="id1" x:type="s:string">k</multiRef><multiRef id="loop" href="#loop"/></b>"##;
        let b = dom::parse(multi).unwrap();
        let data = &b.children[0].children[0];
        let v = decode_in(data, &b.children[1..]).unwrap();
        assert_eq!(v, MapValue::map(vec![("k", MapValue::str("k"))]));
        assert!(decode_in(data, &[]).is_err(), "a dangling reference");
        assert!(decode_in(&b.children[3], &b.children[1..]).is_err(), "a cycle");
        let bad = br#"<p xmlns:x="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema"
            x:type="s:int">12x</p>"#;
        assert!(decode(&dom::parse(bad).unwrap()).is_err());
    }

    /// multiRef i holds two references to multiRef i+1: 14 levels (within
    /// the depth limit) unfold into 2^14 copies of a 10 KB text, 160 MB from
    /// a 12 KB message, unless the decoder's budget stops it.
    #[test]
    fn shared_references_cannot_multiply_work() {
        let mut doc = String::from(r##"<b><op><data href="#r0"/></op>"##);
        for i in 0..14 {
            doc.push_str(&format!(
                r##"<multiRef id="r{i}"><x href="#r{n}"/><x href="#r{n}"/></multiRef>"##,
                n = i + 1
            ));
        }
        doc.push_str(&format!(r#"<multiRef id="r14">{}</multiRef></b>"#, "t".repeat(10_000)));
        let b = dom::parse(doc.as_bytes()).unwrap();
        let e = decode_in(&b.children[0].children[0], &b.children[1..]).unwrap_err();
        assert!(e.contains("decode to more than"), "{e}");
    }
}
