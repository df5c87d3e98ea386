//! Decoding and encoding rules of the Apache SOAP `Map` codec ([`super::map`])
//! that the round trip of `map`'s own tests does not reach: the types and
//! shapes clients send (Axis 1 multiRefs, PHP, untyped documents), the
//! nesting limit and the work budget of a request.

use super::dom;
use super::map::{decode, decode_in, encode_str_item, MapValue, Prefixes, MAX_DECODED_BYTES};

/// Decodes the first child of a document declaring `xsi`, `xsd`, `ns2`
/// (Apache SOAP), `SOAP-ENC` (SOAP 1.1 encoding), `enc12` (SOAP 1.2
/// encoding) and `o` (some other namespace).
fn value(xml: &str) -> Result<MapValue, String> {
    let doc = format!(
        r#"<r xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
            xmlns:ns2="http://xml.apache.org/xml-soap" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
            xmlns:enc12="http://www.w3.org/2003/05/soap-encoding" xmlns:o="urn:other">{xml}</r>"#
    );
    let root = dom::parse(doc.as_bytes()).unwrap();
    decode(&root.children[0])
}

fn s(v: &str) -> MapValue {
    MapValue::str(v)
}

#[test]
fn scalars_read_as_text_and_nil() {
    assert_eq!(s("a").as_text().as_deref(), Some("a"));
    assert_eq!(MapValue::Int(-7).as_text().as_deref(), Some("-7"));
    assert_eq!(MapValue::Float(1.5).as_text().as_deref(), Some("1.5"));
    assert_eq!(MapValue::Bool(true).as_text().as_deref(), Some("true"));
    assert_eq!(MapValue::Bool(false).as_text().as_deref(), Some("false"));
    assert_eq!(MapValue::Nil.as_text(), None);
    assert_eq!(MapValue::Array(vec![]).as_text(), None);
    assert!(MapValue::Nil.is_nil());
    assert!(!s("").is_nil() && !MapValue::Int(0).is_nil() && !MapValue::Map(vec![]).is_nil());
    // Map keys of other types become their text.
    let v = value(
        r#"<v xsi:type="ns2:Map"><item><key xsi:type="xsd:double">2.5</key><value>a</value></item>
           <item><key xsi:type="xsd:boolean">0</key><value>b</value></item></v>"#,
    );
    assert_eq!(v.unwrap(), MapValue::map(vec![("2.5", s("a")), ("false", s("b"))]));
}

#[test]
fn booleans_are_true_false_1_or_0() {
    for (text, b) in [("true", true), ("1", true), ("false", false), ("0", false)] {
        let v = value(&format!(r#"<v xsi:type="xsd:boolean">{text}</v>"#));
        assert_eq!(v, Ok(MapValue::Bool(b)), "{text}");
    }
    assert!(value(r#"<v xsi:type="xsd:boolean">no</v>"#).is_err());
}

#[test]
fn soap_encoding_types_of_both_versions_are_read() {
    assert_eq!(value(r#"<v xsi:type="SOAP-ENC:int">12</v>"#), Ok(MapValue::Int(12)));
    assert_eq!(value(r#"<v xsi:type="enc12:int">12</v>"#), Ok(MapValue::Int(12)));
    assert_eq!(value(r#"<v xsi:type="SOAP-ENC:string">x</v>"#), Ok(s("x")));
    // Arrays of one element or none, by type or by arrayType alone.
    let one = r#"<item xsi:type="xsd:string">a</item>"#;
    for open in [
        r#"<v xsi:type="SOAP-ENC:Array" SOAP-ENC:arrayType="xsd:string[1]">"#,
        r#"<v xsi:type="enc12:Array">"#,
        r#"<v SOAP-ENC:arrayType="xsd:string[1]">"#,
    ] {
        assert_eq!(
            value(&format!("{open}{one}</v>")),
            Ok(MapValue::Array(vec![s("a")])),
            "{open}"
        );
        assert_eq!(value(&format!("{open}</v>")), Ok(MapValue::Array(vec![])), "{open}");
    }
}

#[test]
fn types_and_attributes_of_other_namespaces_do_not_change_a_value() {
    // Unknown types: read by shape.
    assert_eq!(value(r#"<v xsi:type="o:int">12x</v>"#), Ok(s("12x")));
    assert_eq!(value(r#"<v xsi:type="o:Array">a</v>"#), Ok(s("a")));
    assert_eq!(value(r#"<v xsi:type="o:Map">a</v>"#), Ok(s("a")));
    assert_eq!(
        value(r#"<v o:arrayType="xsd:string[1]"><a>x</a></v>"#),
        Ok(MapValue::map(vec![("a", s("x"))]))
    );
    // Axis 1 marks multiRefs with SOAP-ENC:root; a java.util.Vector is an
    // Apache `Vector` of items.
    assert_eq!(value(r#"<v SOAP-ENC:root="0">text</v>"#), Ok(s("text")));
    assert_eq!(
        value(r#"<v xsi:type="ns2:Vector"><item xsi:type="xsd:string">a</item><item>b</item></v>"#),
        Ok(MapValue::Array(vec![s("a"), s("b")]))
    );
}

#[test]
fn untyped_values_are_read_by_their_shape() {
    // Items with keys: a map.
    assert_eq!(
        value("<v><item><key>k</key><value>1</value></item></v>"),
        Ok(MapValue::map(vec![("k", s("1"))]))
    );
    // Items without keys, or one item: a list or a struct.
    assert_eq!(
        value("<v><item>a</item><item>b</item></v>"),
        Ok(MapValue::Array(vec![s("a"), s("b")]))
    );
    assert_eq!(
        value("<v><item>a</item></v>"),
        Ok(MapValue::map(vec![("item", s("a"))]))
    );
    // Children with keys but other names: a struct.
    assert_eq!(
        value("<v><entry><key>k</key></entry></v>"),
        Ok(MapValue::map(vec![("entry", MapValue::map(vec![("key", s("k"))]))]))
    );
    // Repeated names: a list; different names: a struct; one child: a struct.
    assert_eq!(
        value("<v><x>1</x><x>2</x><x>3</x></v>"),
        Ok(MapValue::Array(vec![s("1"), s("2"), s("3")]))
    );
    assert_eq!(
        value("<v><x>1</x><y>2</y></v>"),
        Ok(MapValue::map(vec![("x", s("1")), ("y", s("2"))]))
    );
    assert_eq!(value("<v><x>1</x></v>"), Ok(MapValue::map(vec![("x", s("1"))])));
    assert_eq!(value(r#"<v xsi:nil="true"><x>1</x></v>"#), Ok(MapValue::Nil));
}

/// `levels` values `<v>` nested in one another below the outer one, each
/// level written by `wrap` around the inner value's XML.
fn nested(levels: usize, wrap: fn(String) -> String) -> String {
    match levels {
        0 => "<v>leaf</v>".to_string(),
        _ => wrap(nested(levels - 1, wrap)),
    }
}

#[test]
fn values_nest_32_levels_deep_and_no_deeper() {
    type Wrap = fn(String) -> String;
    let wraps: [(&str, Wrap); 4] = [
        ("struct", |x| format!("<v>{x}</v>")),
        // Only the first of the repeated children goes deeper.
        ("list", |x| format!("<v>{x}<v>leaf</v></v>")),
        ("array", |x| format!(r#"<v xsi:type="SOAP-ENC:Array">{x}</v>"#)),
        ("by arrayType", |x| {
            format!(r#"<v SOAP-ENC:arrayType="xsd:anyType[1]">{x}</v>"#)
        }),
    ];
    for (name, wrap) in wraps {
        assert!(value(&nested(32, wrap)).is_ok(), "{name}: 32 levels");
        let e = value(&nested(33, wrap)).unwrap_err();
        assert!(e.contains("nested too deeply"), "{name}: {e}");
    }
    // Map keys and values one level down, through references (as Axis 1
    // sends them; each reference followed is a level too): 15 maps in one
    // another are 31 levels below the first reference, 16 are 33.
    let by_refs = |levels: usize, item: &str| {
        let mut doc = String::from(r##"<b><op><data href="#r0"/></op>"##);
        for i in 0..levels {
            let item = item.replace("NEXT", &format!("#r{}", i + 1));
            doc.push_str(&format!(r#"<m id="r{i}" xsi:type="ns2:Map"><item>{item}</item></m>"#));
        }
        doc.push_str(&format!(r#"<m id="r{levels}">k</m></b>"#));
        let doc = doc.replacen(
            "<b>",
            r#"<b xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:ns2="http://xml.apache.org/xml-soap">"#,
            1,
        );
        let b = dom::parse(doc.as_bytes()).unwrap();
        decode_in(&b.children[0].children[0], &b.children[1..])
    };
    let in_values = r#"<key>k</key><value href="NEXT"/>"#;
    assert!(by_refs(15, in_values).is_ok());
    let e = by_refs(16, in_values).unwrap_err();
    assert!(e.contains("nested too deeply"), "values: {e}");
    let e = by_refs(16, r#"<key href="NEXT"/>"#).unwrap_err();
    assert!(e.contains("nested too deeply"), "keys: {e}");
}

#[test]
fn a_request_decodes_to_at_most_a_mib_of_work() {
    // One value costs 32 bytes plus its text: a text of 1 MiB - 32 bytes
    // fits, one more byte does not.
    assert_eq!(MAX_DECODED_BYTES, 1024 * 1024);
    let doc = |len: usize| format!("<b><v>{}</v></b>", "t".repeat(len));
    let fits = dom::parse(doc(1024 * 1024 - 32).as_bytes()).unwrap();
    assert!(decode_in(&fits.children[0], &[]).is_ok());
    let over = dom::parse(doc(1024 * 1024 - 31).as_bytes()).unwrap();
    let e = decode_in(&over.children[0], &[]).unwrap_err();
    assert!(e.contains("decode to more than"), "{e}");
    // Empty values cost 32 bytes each: 2^15 of them (1 MiB) from 15 levels
    // of shared references are refused.
    let mut refs = String::from(r##"<b><op><data href="#r0"/></op>"##);
    for i in 0..15 {
        refs.push_str(&format!(
            r##"<m id="r{i}"><x href="#r{n}"/><x href="#r{n}"/></m>"##,
            n = i + 1
        ));
    }
    refs.push_str(r#"<m id="r15"/></b>"#);
    let b = dom::parse(refs.as_bytes()).unwrap();
    let e = decode_in(&b.children[0].children[0], &b.children[1..]).unwrap_err();
    assert!(e.contains("decode to more than"), "{e}");
}

#[test]
fn string_items_are_map_items() {
    let p = Prefixes::default();
    let mut out = String::from("<r");
    for (pre, uri) in p.declarations() {
        out.push_str(&format!(" xmlns:{pre}=\"{uri}\""));
    }
    out.push_str(&format!(r#"><v {}:type="{}:Map">"#, p.xsi, p.map));
    encode_str_item(&mut out, "a<b", "x & y", &p);
    encode_str_item(&mut out, "c", "", &p);
    out.push_str("</v></r>");
    let root = dom::parse(out.as_bytes()).unwrap();
    assert_eq!(
        decode(&root.children[0]),
        Ok(MapValue::map(vec![("a<b", s("x & y")), ("c", s(""))]))
    );
}
