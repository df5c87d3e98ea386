//! Where the events of one trigger of one account go (SPEC §6).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// Queued for client pull (JSON, SOAP, PAINT). The default.
    #[default]
    Pull,
    Http,
    Email,
    Ftp,
    /// Kept in the history only.
    None,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Pull => "pull",
            Destination::Http => "http",
            Destination::Email => "email",
            Destination::Ftp => "ftp",
            Destination::None => "none",
        }
    }

    /// Destinations whose delivery this build implements. The others are
    /// refused at configuration time rather than accepted and dropped.
    pub fn is_available(self) -> bool {
        matches!(self, Destination::Pull | Destination::Http | Destination::None)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Destination {
    type Err = DestinationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Destination::Pull),
            "http" => Ok(Destination::Http),
            "email" => Ok(Destination::Email),
            "ftp" => Ok(Destination::Ftp),
            "none" => Ok(Destination::None),
            other => Err(DestinationError::Unknown(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("unknown destination '{0}'; valid destinations are pull, http, email, ftp, none")]
    Unknown(String),
    #[error("destination '{0}' is not available in this version of eventd")]
    Unavailable(Destination),
    #[error("{0}")]
    Invalid(String),
}

/// A trigger's configuration: the destination and the settings of that
/// destination (one sub-object per destination kind, e.g. `"http": {…}`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TriggerConfig {
    pub destination: Destination,
    /// Destination-specific settings, validated by the destination's own
    /// module and stored as JSON. `Value::Null` when there are none.
    pub settings: Value,
}

impl TriggerConfig {
    /// Validates a `PUT /v1/triggers/{T}` body.
    pub fn parse(body: &Value) -> Result<TriggerConfig, DestinationError> {
        let obj = body
            .as_object()
            .ok_or_else(|| DestinationError::Invalid("the body must be a JSON object".into()))?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "destination" | "http" | "email" | "ftp") {
                return Err(DestinationError::Invalid(format!("unknown field '{key}'")));
            }
        }
        let destination = match obj.get("destination") {
            Some(Value::String(s)) => s.parse::<Destination>()?,
            Some(_) => return Err(DestinationError::Invalid("'destination' must be a string".into())),
            None => return Err(DestinationError::Invalid("'destination' is required".into())),
        };
        if !destination.is_available() {
            return Err(DestinationError::Unavailable(destination));
        }
        let settings = obj.get(destination.as_str()).cloned().unwrap_or(Value::Null);
        let settings = match destination {
            Destination::Http => {
                if settings.is_null() {
                    return Err(DestinationError::Invalid(
                        "destination 'http' needs its settings: \"http\": {\"url\": …}".into(),
                    ));
                }
                HttpSettings::parse(&settings)?.to_value()
            }
            _ => settings,
        };
        Ok(TriggerConfig { destination, settings })
    }

    /// The HTTP settings of an `http` destination (stored validated).
    pub fn http(&self) -> Option<HttpSettings> {
        if self.destination != Destination::Http {
            return None;
        }
        HttpSettings::parse(&self.settings).ok()
    }
}

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

fn invalid(msg: impl Into<String>) -> DestinationError {
    DestinationError::Invalid(msg.into())
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

    fn http(v: Value) -> Result<TriggerConfig, DestinationError> {
        TriggerConfig::parse(&json!({"destination": "http", "http": v}))
    }

    #[test]
    fn http_settings_are_validated_and_normalised() {
        let c = http(json!({"url": "https://hooks.example.com/x?token=1"})).unwrap();
        let s = c.http().unwrap();
        assert_eq!(s.method, HttpMethod::Post);
        assert_eq!(s.format, BodyFormat::Json);
        assert_eq!(s.batch_size, 1);
        assert_eq!(s.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert!(s.fields.is_empty());
        let s = http(
            json!({"url": "http://h.test/", "method": "get", "fields": ["id", "recipient"],
            "headers": {"X-Token": "abc"}, "timeout_seconds": 5, "ordered": true}),
        )
        .unwrap()
        .http()
        .unwrap();
        assert_eq!(s.method, HttpMethod::Get);
        assert_eq!(s.fields, vec!["id", "recipient"]);
        assert_eq!(s.headers, vec![("X-Token".to_string(), "abc".to_string())]);
        assert!(s.ordered);
        // Round trip through the stored form.
        assert_eq!(HttpSettings::parse(&s.to_value()).unwrap(), s);

        for (bad, needle) in [
            (json!({}), "url' is required"),
            (json!({"url": "ftp://h.test/"}), "http or https"),
            (json!({"url": "not a url"}), "not a valid URL"),
            (
                json!({"url": "http://h.test/", "fields": ["nope"]}),
                "unknown event field 'nope'",
            ),
            (json!({"url": "http://h.test/", "batch_size": 0}), "1 to 1000"),
            (json!({"url": "http://h.test/", "batch_size": 1001}), "1 to 1000"),
            (
                json!({"url": "http://h.test/", "batch_size": 5, "method": "GET"}),
                "POST with format json",
            ),
            (
                json!({"url": "http://h.test/", "timeout_seconds": 0}),
                "timeout_seconds",
            ),
            (json!({"url": "http://h.test/", "method": "PUT"}), "POST or GET"),
            (
                json!({"url": "http://h.test/", "headers": {"Content-Type": "x"}}),
                "set by eventd",
            ),
            (
                json!({"url": "http://h.test/", "headers": {"bad name": "x"}}),
                "not a valid header name",
            ),
            (
                json!({"url": "http://h.test/", "colour": 1}),
                "unknown field 'http.colour'",
            ),
        ] {
            let err = http(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!(TriggerConfig::parse(&json!({"destination": "http"})).is_err());
    }

    #[test]
    fn parses_and_refuses() {
        let c = TriggerConfig::parse(&json!({"destination": "none"})).unwrap();
        assert_eq!(c.destination, Destination::None);
        assert!(matches!(
            TriggerConfig::parse(&json!({"destination": "carrier-pigeon"})),
            Err(DestinationError::Unknown(_))
        ));
        assert!(TriggerConfig::parse(&json!({"destination": "pull", "x": 1})).is_err());
        assert!(TriggerConfig::parse(&json!([])).is_err());
    }
}
