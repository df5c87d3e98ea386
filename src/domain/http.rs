//! The `http` destination's settings and their validation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::destination_kind::{invalid, DestinationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Get,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    Json,
    Form,
}

pub const MAX_BATCH_SIZE: u32 = 1000;
pub const MAX_TIMEOUT_SECONDS: u32 = 60;
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 15;
pub const MAX_HEADERS: usize = 32;
const MAX_URL_LEN: usize = 2048;

/// Request headers eventd sets itself; a destination may not override them.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The validated settings of an HTTP push destination (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    pub url: String,
    pub method: HttpMethod,
    pub format: BodyFormat,
    /// Event fields to send; empty: all of them.
    pub fields: Vec<String>,
    pub batch_size: u32,
    pub headers: Vec<(String, String)>,
    pub timeout_seconds: u32,
    pub ordered: bool,
}

impl HttpSettings {
    /// Validates the `"http": {…}` object of a trigger configuration.
    pub fn parse(v: &Value) -> Result<HttpSettings, DestinationError> {
        let obj = v.as_object().ok_or_else(|| invalid("'http' must be a JSON object"))?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "url" | "method" | "format" | "fields" | "batch_size" | "headers" | "timeout_seconds" | "ordered"
            ) {
                return Err(invalid(format!(
                    "unknown field 'http.{key}'; valid fields are url, method, format, fields, batch_size, \
                     headers, timeout_seconds, ordered"
                )));
            }
        }
        let url = match obj.get("url") {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => return Err(invalid("'http.url' must be a string")),
            None => return Err(invalid("'http.url' is required")),
        };
        if url.len() > MAX_URL_LEN {
            return Err(invalid(format!("'http.url' is longer than {MAX_URL_LEN} characters")));
        }
        let parsed = url::Url::parse(&url).map_err(|e| invalid(format!("'http.url' is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "'http.url' must use http or https, not '{}'",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("'http.url' has no host"));
        }
        if parsed.fragment().is_some() {
            return Err(invalid("'http.url' must not have a #fragment"));
        }
        let method = match obj.get("method") {
            None | Some(Value::Null) => HttpMethod::Post,
            Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
                "POST" => HttpMethod::Post,
                "GET" => HttpMethod::Get,
                _ => return Err(invalid(format!("'http.method' must be POST or GET, not '{s}'"))),
            },
            Some(_) => return Err(invalid("'http.method' must be \"POST\" or \"GET\"")),
        };
        let format = match obj.get("format") {
            None | Some(Value::Null) => BodyFormat::Json,
            Some(Value::String(s)) => match s.as_str() {
                "json" => BodyFormat::Json,
                "form" => BodyFormat::Form,
                _ => return Err(invalid(format!("'http.format' must be json or form, not '{s}'"))),
            },
            Some(_) => return Err(invalid("'http.format' must be \"json\" or \"form\"")),
        };
        let fields = match obj.get("fields") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out: Vec<String> = Vec::new();
                for item in items {
                    let name = item
                        .as_str()
                        .ok_or_else(|| invalid("'http.fields' must be an array of field names"))?;
                    if !EVENT_FIELDS.contains(&name) {
                        return Err(invalid(format!(
                            "unknown event field '{name}' in 'http.fields'; valid fields are {}",
                            EVENT_FIELDS.join(", ")
                        )));
                    }
                    if !out.iter().any(|f| f == name) {
                        out.push(name.to_string());
                    }
                }
                if out.is_empty() {
                    return Err(invalid("'http.fields' is empty; omit it to send every field"));
                }
                out
            }
            Some(_) => return Err(invalid("'http.fields' must be an array of field names")),
        };
        let batch_size = match obj.get("batch_size") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(MAX_BATCH_SIZE)).contains(&n) => n as u32,
                _ => {
                    return Err(invalid(format!(
                        "'http.batch_size' must be an integer from 1 to {MAX_BATCH_SIZE}"
                    )))
                }
            },
        };
        if batch_size > 1 && (method == HttpMethod::Get || format == BodyFormat::Form) {
            return Err(invalid(
                "'http.batch_size' above 1 sends a JSON array: it needs method POST with format json",
            ));
        }
        let headers = match obj.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => {
                if map.len() > MAX_HEADERS {
                    return Err(invalid(format!("'http.headers' has more than {MAX_HEADERS} headers")));
                }
                let mut out = Vec::new();
                for (name, value) in map {
                    let valid_name = !name.is_empty()
                        && name.len() <= 256
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !valid_name {
                        return Err(invalid(format!("'http.headers': '{name}' is not a valid header name")));
                    }
                    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(invalid(format!("'http.headers': '{name}' is set by eventd itself")));
                    }
                    let value = value
                        .as_str()
                        .ok_or_else(|| invalid(format!("'http.headers.{name}' must be a string")))?;
                    if value.len() > 4096 || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                        return Err(invalid(format!(
                            "'http.headers.{name}' must be printable text of at most 4096 bytes"
                        )));
                    }
                    out.push((name.clone(), value.to_string()));
                }
                out
            }
            Some(_) => return Err(invalid("'http.headers' must be an object of name: value strings")),
        };
        let timeout_seconds = match obj.get("timeout_seconds") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(MAX_TIMEOUT_SECONDS)).contains(&n) => n as u32,
                _ => {
                    return Err(invalid(format!(
                        "'http.timeout_seconds' must be an integer from 1 to {MAX_TIMEOUT_SECONDS}"
                    )))
                }
            },
        };
        let ordered = match obj.get("ordered") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("'http.ordered' must be true or false")),
        };
        Ok(HttpSettings {
            url: parsed.to_string(),
            method,
            format,
            fields,
            batch_size,
            headers,
            timeout_seconds,
            ordered,
        })
    }

    /// The settings as shown and stored (`headers` as an object).
    pub fn to_value(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "url": self.url,
            "method": self.method,
            "format": self.format,
            "fields": if self.fields.is_empty() { Value::Null } else { serde_json::json!(self.fields) },
            "batch_size": self.batch_size,
            "headers": headers,
            "timeout_seconds": self.timeout_seconds,
            "ordered": self.ordered,
        })
    }
}

/// The names of an event's fields (SPEC §2), in their canonical order.
pub const EVENT_FIELDS: [&str; 15] = [
    "id",
    "trigger",
    "occurred_at",
    "received_at",
    "recipient",
    "campaign_id",
    "message_id",
    "list_id",
    "url",
    "bounce_type",
    "bounce_reason",
    "ip",
    "user_agent",
    "external_id",
    "data",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses `{"url": …}` plus `extra`; the error as text.
    fn parse(extra: Value) -> Result<HttpSettings, String> {
        let mut v = json!({"url": "https://hooks.example.com/x"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        HttpSettings::parse(&v).map_err(|e| e.to_string())
    }

    #[test]
    fn methods_and_formats_are_read_by_name() {
        // README: method POST (body json or form) or GET, case-insensitive.
        let s = parse(json!({"method": "post", "format": "form"})).unwrap();
        assert_eq!((s.method, s.format), (HttpMethod::Post, BodyFormat::Form));
        let s = parse(json!({"method": "POST", "format": "json"})).unwrap();
        assert_eq!((s.method, s.format), (HttpMethod::Post, BodyFormat::Json));
        assert!(parse(json!({"format": "xml"})).unwrap_err().contains("json or form"));
    }

    #[test]
    fn batches_of_1_to_1000_need_post_and_json() {
        // SPEC §6: batch_size 1..1000; above 1 the body is a JSON array.
        assert_eq!(parse(json!({"batch_size": 1000})).unwrap().batch_size, 1000);
        let s = parse(json!({"batch_size": 2, "method": "POST", "format": "json"})).unwrap();
        assert_eq!(s.batch_size, 2);
        for bad in [
            json!({"batch_size": 2, "format": "form"}),
            json!({"batch_size": 2, "method": "GET"}),
        ] {
            assert!(parse(bad).unwrap_err().contains("POST with format json"));
        }
        // One event per request: form and GET are fine.
        assert_eq!(parse(json!({"batch_size": 1, "format": "form"})).unwrap().batch_size, 1);
        assert_eq!(parse(json!({"batch_size": 1, "method": "GET"})).unwrap().batch_size, 1);
    }

    #[test]
    fn url_of_at_most_2048_bytes() {
        let at = format!("https://h.test/{}", "a".repeat(2048 - "https://h.test/".len()));
        assert_eq!(at.len(), 2048);
        assert_eq!(parse(json!({"url": at})).unwrap().url, at);
        let over = format!("{at}b");
        assert!(parse(json!({"url": over})).unwrap_err().contains("longer than 2048"));
    }

    #[test]
    fn at_most_32_headers_of_printable_values_up_to_4096_bytes() {
        let headers = |n: usize| -> Value {
            (0..n)
                .map(|i| (format!("X-H{i}"), json!("v")))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        assert_eq!(parse(json!({"headers": headers(32)})).unwrap().headers.len(), 32);
        assert!(parse(json!({"headers": headers(33)}))
            .unwrap_err()
            .contains("more than 32"));

        let long = "v".repeat(4096);
        let s = parse(json!({"headers": {"X-Long": long, "X-Tab": "a\tb c~"}})).unwrap();
        assert_eq!(s.headers[0], ("X-Long".to_string(), long.clone()));
        assert_eq!(s.headers[1], ("X-Tab".to_string(), "a\tb c~".to_string()));
        for bad in [
            format!("{long}v"),
            "a\rb".into(),
            "a\nb".into(),
            "a\0b".into(),
            "a\u{1f}b".into(),
            "a\u{7f}b".into(),
        ] {
            let err = parse(json!({"headers": {"X-Bad": bad}})).unwrap_err();
            assert!(err.contains("printable text of at most 4096 bytes"), "{bad:?}: {err}");
        }
    }
}
