//! Sending one webhook request, shared by the push worker and the API's
//! `POST /v1/triggers/{T}/test`: the HTTP client (no redirects, optional
//! source address, private targets refused after DNS resolution unless
//! allowed), the body in the destination's format, the Standard Webhooks
//! signature, and the classification of the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::domain::destination::EVENT_FIELDS;
use crate::domain::event::Event;
use crate::domain::signing::sign;
use crate::domain::time::now_ms;
use crate::domain::{BodyFormat, HttpMethod, HttpSettings};

/// Bytes of the response body kept in the attempt log.
pub const RESPONSE_EXCERPT: usize = 1024;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

mod target;
use target::GuardedResolver;
pub use target::{check_target, is_private, TargetError};

/// The outgoing HTTP client.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    allow_private: bool,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    pub method: HttpMethod,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub msg_id: String,
}

impl Prepared {
    /// What the signature covers: what carries the event. For a GET, the
    /// query string exactly as sent (the configured URL's own parameters
    /// included, without the `?`); otherwise the body (JSON, or form fields).
    pub fn signed_content(&self) -> Vec<u8> {
        match self.method {
            HttpMethod::Get => url::Url::parse(&self.url)
                .ok()
                .and_then(|u| u.query().map(|q| q.as_bytes().to_vec()))
                .unwrap_or_default(),
            HttpMethod::Post => self.body.clone(),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// Transport error or a description of a non-2xx status.
    pub error: Option<String>,
    pub response: Option<String>,
    /// A Retry-After given with 429 or 503, as a delay.
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl Webhooks {
    pub fn new(allow_private: bool, source_ip: Option<IpAddr>, max_idle_per_host: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eventd/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .local_address(source_ip)
            .pool_max_idle_per_host(max_idle_per_host)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(Webhooks { client, allow_private })
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Sends a prepared request, signed at the current time with each of
    /// `secrets` (space-separated signatures, as during a rotation).
    pub async fn send(&self, p: &Prepared, settings: &HttpSettings, secrets: &[String]) -> Answer {
        let started = Instant::now();
        let elapsed = |s: Instant| i64::try_from(s.elapsed().as_millis()).unwrap_or(i64::MAX);
        // An IP literal skips the resolver: check it here.
        if !self.allow_private {
            if let Ok(u) = url::Url::parse(&p.url) {
                let ip = match u.host() {
                    Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                    Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| is_private(*ip)) {
                    return Answer {
                        status: None,
                        latency_ms: 0,
                        error: Some(format!("refused: {ip} is a private address")),
                        response: None,
                        retry_after: None,
                    };
                }
            }
        }
        let timestamp = now_ms() / 1000;
        let content = p.signed_content();
        let signature: Vec<String> = secrets
            .iter()
            .filter_map(|s| sign(s, &p.msg_id, timestamp, &content).ok())
            .collect();
        let signature = signature.join(" ");
        let mut req = match p.method {
            HttpMethod::Post => self.client.post(&p.url),
            HttpMethod::Get => self.client.get(&p.url),
        };
        for (k, v) in &settings.headers {
            req = req.header(k, v);
        }
        req = req
            .header("webhook-id", &p.msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(Duration::from_secs(u64::from(settings.timeout_seconds)));
        if let Some(ct) = p.content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct).body(p.body.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: None,
                    latency_ms: elapsed(started),
                    error: Some(describe(&e)),
                    response: None,
                    retry_after: None,
                }
            }
        };
        let status = resp.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        let mut excerpt: Vec<u8> = Vec::new();
        let mut read_error = None;
        while excerpt.len() < RESPONSE_EXCERPT {
            match resp.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(describe(&e));
                    break;
                }
            }
        }
        excerpt.truncate(RESPONSE_EXCERPT);
        let success = (200..300).contains(&status);
        let error = if success {
            None
        } else {
            Some(read_error.unwrap_or_else(|| format!("HTTP {status}")))
        };
        Answer {
            status: Some(status),
            latency_ms: elapsed(started),
            error,
            response: (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned()),
            retry_after,
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// `Retry-After`: delay-seconds or an HTTP date, capped at an hour.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let ms = at.timestamp_millis() - now_ms();
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// The selected fields of one stored event, as a JSON object whose keys come
/// in the order of `fields` (the stored event as is when none are chosen).
fn select_json(payload: &str, fields: &[String]) -> String {
    if fields.is_empty() {
        return payload.to_string();
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(payload) else {
        return payload.to_string();
    };
    // serde_json's Map sorts its keys: the object is written by hand.
    let mut out = String::from("{");
    for (name, value) in fields.iter().filter_map(|f| map.get_key_value(f.as_str())) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(name.clone()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// The selected fields of one stored event as `key=value&…`, in the order of
/// `fields` (every field in the canonical order when none are chosen).
fn select_form(payload: &str, fields: &[String]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    if let Ok(event) = serde_json::from_str::<Event>(payload) {
        let values = event.fields();
        let chosen: Vec<&str> = if fields.is_empty() {
            EVENT_FIELDS.to_vec()
        } else {
            fields.iter().map(String::as_str).collect()
        };
        for name in chosen {
            if let Some((_, Some(v))) = values.iter().find(|(n, _)| *n == name) {
                ser.append_pair(name, v);
            }
        }
    }
    ser.finish()
}

/// Builds the request for one or more events (stored JSON, oldest first)
/// of a destination. `msg_id` is `msg_<event id>` for a single-event
/// destination; in batch mode (`batch_size` > 1, a JSON array per request)
/// it is `msg_batch_<first id>_<count>` whatever the count, one included.
pub fn prepare(settings: &HttpSettings, events: &[(&str, &str)]) -> Prepared {
    let batch_mode =
        settings.batch_size > 1 && (settings.method, settings.format) == (HttpMethod::Post, BodyFormat::Json);
    let msg_id = match events.first() {
        Some((id, _)) if batch_mode => format!("msg_batch_{id}_{}", events.len()),
        Some((id, _)) => format!("msg_{id}"),
        None => "msg_empty".to_string(),
    };
    match (settings.method, settings.format) {
        (HttpMethod::Get, _) => {
            let query = events
                .first()
                .map(|(_, p)| select_form(p, &settings.fields))
                .unwrap_or_default();
            let mut url = settings.url.clone();
            if !query.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&query);
            }
            Prepared {
                url,
                method: HttpMethod::Get,
                content_type: None,
                body: Vec::new(),
                msg_id,
            }
        }
        (HttpMethod::Post, BodyFormat::Form) => Prepared {
            url: settings.url.clone(),
            method: HttpMethod::Post,
            content_type: Some("application/x-www-form-urlencoded"),
            body: events
                .first()
                .map(|(_, p)| select_form(p, &settings.fields))
                .unwrap_or_default()
                .into_bytes(),
            msg_id,
        },
        (HttpMethod::Post, BodyFormat::Json) => {
            let body = if batch_mode {
                let parts: Vec<String> = events.iter().map(|(_, p)| select_json(p, &settings.fields)).collect();
                format!("[{}]", parts.join(","))
            } else {
                events
                    .first()
                    .map(|(_, p)| select_json(p, &settings.fields))
                    .unwrap_or_default()
            };
            Prepared {
                url: settings.url.clone(),
                method: HttpMethod::Post,
                content_type: Some("application/json"),
                body: body.into_bytes(),
                msg_id,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: Value) -> HttpSettings {
        HttpSettings::parse(&v).unwrap()
    }

    const EV: &str = r#"{"id":"e1","trigger":"OPEN","occurred_at":"2026-01-01T00:00:00.000Z","received_at":"2026-01-01T00:00:00.000Z","recipient":"a b@x.test","data":{"k":1}}"#;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn bodies_in_each_format() {
        let p = prepare(&settings(json!({"url": "http://h.test/x"})), &[("e1", EV)]);
        assert_eq!(p.body, EV.as_bytes());
        assert_eq!(p.msg_id, "msg_e1");
        let p = prepare(
            &settings(json!({"url": "http://h.test/x", "batch_size": 2, "fields": ["recipient", "id"]})),
            &[("e1", EV), ("e1", EV)],
        );
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            v,
            json!([{"id": "e1", "recipient": "a b@x.test"}, {"id": "e1", "recipient": "a b@x.test"}])
        );
        let p = prepare(
            &settings(json!({"url": "http://h.test/x?t=1", "method": "GET", "fields": ["trigger", "recipient"]})),
            &[("e1", EV)],
        );
        assert_eq!(p.url, "http://h.test/x?t=1&trigger=OPEN&recipient=a+b%40x.test");
        assert_eq!(p.signed_content(), b"t=1&trigger=OPEN&recipient=a+b%40x.test");
        let p = prepare(
            &settings(json!({"url": "http://h.test/", "format": "form"})),
            &[("e1", EV)],
        );
        let body = String::from_utf8(p.body).unwrap();
        assert!(body.starts_with("id=e1&trigger=OPEN&"), "{body}");
        assert!(body.contains("data=%7B%22k%22%3A1%7D"), "{body}");
    }

    #[test]
    fn fields_in_the_requested_order_and_a_batch_of_one_is_a_batch() {
        let s = settings(json!({"url": "http://h.test/x", "batch_size": 5, "fields": ["recipient", "data", "id"]}));
        let p = prepare(&s, &[("e1", EV)]);
        assert_eq!(
            String::from_utf8(p.body.clone()).unwrap(),
            r#"[{"recipient":"a b@x.test","data":{"k":1},"id":"e1"}]"#
        );
        assert_eq!(p.msg_id, "msg_batch_e1_1");
        assert_eq!(p.signed_content(), p.body);
        let s = settings(json!({"url": "http://h.test/x", "format": "form", "fields": ["recipient", "id"]}));
        let p = prepare(&s, &[("e1", EV)]);
        assert_eq!(p.body, b"recipient=a+b%40x.test&id=e1");
        assert_eq!(p.msg_id, "msg_e1");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
