//! Property (fuzz) tests of everything that reads a hostile client's bytes
//! before it is authenticated: the SOAP/PAINT XML reader and envelope, the
//! WS-Security header, the Apache SOAP Map decoder, and the JSON event
//! validator. For every generated input: no panic, and bounded work — the
//! CPU time this thread spent (not wall-clock time, so a loaded machine does
//! not make it flaky) stays under a generous size-scaled limit, and decoded
//! output stays within its budget.
//!
//! `cargo test --test fuzz` runs a few hundred cases per property; the long
//! mode is `PROPTEST_CASES=100000 cargo test --release --test fuzz`.

use std::time::Duration;

use eventd::domain::event::validate_all;
use eventd::soapxml::dom::{self, Limits};
use eventd::soapxml::envelope::{parse_envelope_with, username_token};
use eventd::soapxml::map::{decode_in, MapValue, MAX_DECODED_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};

/// CPU time used by this thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` and asserts it used at most `base + per_byte × len` of CPU.
/// The allowance is ~100× what a linear reader needs in a debug build;
/// the quadratic reader this guards against needed 28 s (release) for 1 MB.
fn bounded<T>(len: usize, f: impl FnOnce() -> T) -> T {
    let base = Duration::from_millis(200);
    let per_byte = Duration::from_micros(5);
    let start = thread_cpu();
    let out = f();
    let used = thread_cpu() - start;
    let limit = base + per_byte * len as u32;
    assert!(used <= limit, "{len} bytes took {used:?} of CPU (limit {limit:?})");
    out
}

const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const XMLNS: &str = r#"xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:m="http://xml.apache.org/xml-soap" xmlns:enc="http://schemas.xmlsoap.org/soap/encoding/""#;

/// Pieces XML is made of, some of them broken or hostile.
fn xml_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<a>".to_string()),
        Just("</a>".to_string()),
        Just("<b/>".to_string()),
        Just("<s:Envelope ".to_string() + XMLNS + ">"),
        Just("</s:Envelope>".to_string()),
        Just("<s:Header>".to_string()),
        Just("</s:Header>".to_string()),
        Just("<s:Body>".to_string()),
        Just("</s:Body>".to_string()),
        Just("<p:x xmlns:p=\"urn:p\">".to_string()),
        Just("</p:x>".to_string()),
        Just("<q:x>".to_string()),
        Just(" a=\"1\"".to_string()),
        Just(" xmlns:z=\"urn:z\"".to_string()),
        Just(" xsi:type=\"xsd:int\"".to_string()),
        Just(" xsi:type=\"m:Map\"".to_string()),
        Just(" xsi:type=\"nope:T\"".to_string()),
        Just(" href=\"#r1\"".to_string()),
        Just(" id=\"r1\"".to_string()),
        Just("<item><key>k</key><value>v</value></item>".to_string()),
        Just("&amp;".to_string()),
        Just("&#65;".to_string()),
        Just("&#0;".to_string()),
        Just("&#x1;".to_string()),
        Just("&bogus;".to_string()),
        Just("&".to_string()),
        Just("<![CDATA[x]]>".to_string()),
        Just("<!-- c -->".to_string()),
        Just("<?pi x?>".to_string()),
        Just("<?xml version=\"1.0\"?>".to_string()),
        Just("<!DOCTYPE a [<!ENTITY e \"x\">]>".to_string()),
        Just("\0".to_string()),
        Just("\u{FFFF}".to_string()),
        Just(">".to_string()),
        Just("<".to_string()),
        Just("\"".to_string()),
        "[a-z ]{0,8}",
        "\\PC{0,4}",
    ]
}

fn xml_doc() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(xml_token(), 0..80).prop_map(|t| t.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..600),
    ]
}

/// An element repeated to about `size` bytes, in one of the shapes that
/// multiply a naive reader's work.
fn hostile_shape(shape: u8, size: usize) -> String {
    let unit = |i: usize| match shape % 8 {
        0 => format!(" a{i}=\"v\""),
        1 => format!(" xmlns:p{i}=\"urn:{i}\""),
        2 => "<e>".to_string(),
        3 => "<e/>".to_string(),
        4 => "&amp;&#65;".to_string(),
        5 => format!("<p{i}:e xmlns:p{i}=\"u\"/>"),
        6 => "<!---->".to_string(),
        _ => "x".to_string(),
    };
    let mut d = String::with_capacity(size + 64);
    d.push_str(if shape % 8 < 2 { "<r" } else { "<r>" });
    let mut i = 0;
    while d.len() < size {
        d.push_str(&unit(i));
        i += 1;
    }
    d.push_str(if shape % 8 < 2 { "/>" } else { "</r>" });
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn xml_reader_never_panics_and_is_linear(doc in xml_doc()) {
        bounded(doc.len(), || {
            let _ = dom::parse_with(&doc, &Limits::REQUEST);
            let _ = parse_envelope_with(&doc, &Limits::REQUEST);
        });
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn hostile_shapes_are_linear(shape in 0u8..8, kb in 1usize..300) {
        let doc = hostile_shape(shape, kb * 1024);
        bounded(doc.len(), || {
            let _ = dom::parse_with(doc.as_bytes(), &Limits::REQUEST);
            let _ = dom::parse(doc.as_bytes());
        });
    }
}

/// Map values as a client could write them: items, arrays, scalars of any
/// declared type, references to multiRefs (possibly shared, dangling or
/// cyclic), nil.
fn map_value(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        "[a-z0-9 ]{0,12}".prop_map(|t| format!("<v xsi:type=\"xsd:string\">{t}</v>")),
        "-?[0-9]{1,22}x?".prop_map(|t| format!("<v xsi:type=\"xsd:int\">{t}</v>")),
        "(true|false|2)".prop_map(|t| format!("<v xsi:type=\"xsd:boolean\">{t}</v>")),
        Just("<v xsi:nil=\"true\"/>".to_string()),
        (0u8..6).prop_map(|r| format!("<v href=\"#r{r}\"/>")),
        Just("<v>plain</v>".to_string()),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(|items| {
                let items: String = items
                    .into_iter()
                    .map(|(k, v)| format!("<item><key>{k}</key><value>{v}</value></item>"))
                    .collect();
                format!("<v xsi:type=\"m:Map\">{items}</v>")
            }),
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|xs| format!("<v xsi:type=\"enc:Array\">{}</v>", xs.concat())),
            prop::collection::vec(inner, 1..4).prop_map(|xs| format!("<v>{}</v>", xs.concat())),
        ]
    })
    .boxed()
}

fn decoded_size(v: &MapValue) -> usize {
    32 + match v {
        MapValue::Str(s) => s.len(),
        MapValue::Map(items) => items.iter().map(|(k, v)| k.len() + decoded_size(v)).sum(),
        MapValue::Array(xs) => xs.iter().map(decoded_size).sum(),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn map_decoder_never_panics_and_stays_in_budget(
        part in map_value(4),
        refs in prop::collection::vec((0u8..6, map_value(3)), 0..6),
    ) {
        let mut doc = format!("<s:Envelope {XMLNS}><s:Body><op>{part}</op>");
        for (id, v) in &refs {
            doc.push_str(&v.replacen("<v", &format!("<v id=\"r{id}\""), 1));
        }
        doc.push_str("</s:Body></s:Envelope>");
        let env = parse_envelope_with(doc.as_bytes(), &Limits::REQUEST);
        prop_assume!(env.is_ok());
        let env = env.unwrap();
        let decoded = bounded(doc.len(), || {
            env.body.children.iter().map(|c| decode_in(c, &env.body_rest)).collect::<Vec<_>>()
        });
        for v in decoded.into_iter().flatten() {
            prop_assert!(decoded_size(&v) <= MAX_DECODED_BYTES + 32);
        }
    }

    #[test]
    fn ws_security_header_never_panics(
        blocks in prop::collection::vec(
            (
                prop::bool::ANY,
                prop::collection::vec(
                    prop_oneof![
                        "[a-z]{0,6}".prop_map(|u| format!("<w:Username>{u}</w:Username>")),
                        "[a-z&;#0-9]{0,8}".prop_map(|p| format!("<w:Password>{p}</w:Password>")),
                        Just("<w:Password Type=\"x#PasswordDigest\">d</w:Password>".to_string()),
                        Just("<w:Password Type=\"x#PasswordText\">t</w:Password>".to_string()),
                        Just("<w:Nonce>n</w:Nonce>".to_string()),
                    ],
                    0..4,
                ),
            ),
            0..3,
        ),
    ) {
        let mut doc = format!("<s:Envelope xmlns:s=\"{ENV}\" xmlns:w=\"{WSSE}\"><s:Header>");
        for (must, parts) in &blocks {
            let mu = if *must { " s:mustUnderstand=\"1\"" } else { "" };
            doc.push_str(&format!("<w:Security{mu}><w:UsernameToken>{}</w:UsernameToken></w:Security>", parts.concat()));
        }
        doc.push_str("</s:Header><s:Body><op/></s:Body></s:Envelope>");
        if let Ok(env) = parse_envelope_with(doc.as_bytes(), &Limits::REQUEST) {
            let tokens = blocks.len();
            match bounded(doc.len(), || username_token(&env)) {
                Ok(Some(_)) => prop_assert_eq!(tokens, 1, "one token accepted among several"),
                Ok(None) => prop_assert_eq!(tokens, 0),
                Err(_) => {}
            }
        }
    }
}

fn json_value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        prop::sample::select(vec!["OPEN", "CLICK", "DELIVERY", "open", "", "BOUNCE"]).prop_map(|s| json!(s)),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|\\+01:00|)".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "trigger",
                        "recipient",
                        "occurred_at",
                        "data",
                        "url",
                        "ip",
                        "external_id",
                        "campaign_id",
                        "id",
                        "bounce_type",
                        "x",
                    ]),
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn event_validator_never_panics(items in prop::collection::vec(json_value(3), 0..20)) {
        let len = serde_json::to_vec(&items).unwrap().len();
        match bounded(len, || validate_all(&items, 1_700_000_000_000)) {
            Ok(events) => prop_assert_eq!(events.len(), items.len()),
            Err(errors) => prop_assert!(!errors.0.is_empty()),
        }
    }
}
