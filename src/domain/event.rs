//! The event of SPEC §2 and the all-or-nothing validation of ingest (§4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::time::{parse_rfc3339, rfc3339};
use super::trigger::Trigger;

pub const MAX_EXTERNAL_ID: usize = 200;
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// An event as stored and as handed to consumers. The stored JSON is this
/// struct serialized once at ingest; readers pass it through untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    pub trigger: Trigger,
    pub occurred_at: String,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

impl Event {
    /// The event's fields in their canonical order, as (name, text) pairs:
    /// what flat formats (SOAP maps, CSV, form encoding) show. `data` is
    /// carried as its JSON text.
    pub fn fields(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("id", Some(self.id.clone())),
            ("trigger", Some(self.trigger.as_str().to_string())),
            ("occurred_at", Some(self.occurred_at.clone())),
            ("received_at", Some(self.received_at.clone())),
            ("recipient", self.recipient.clone()),
            ("campaign_id", self.campaign_id.clone()),
            ("message_id", self.message_id.clone()),
            ("list_id", self.list_id.clone()),
            ("url", self.url.clone()),
            ("bounce_type", self.bounce_type.clone()),
            ("bounce_reason", self.bounce_reason.clone()),
            ("ip", self.ip.clone()),
            ("user_agent", self.user_agent.clone()),
            ("external_id", self.external_id.clone()),
            (
                "data",
                self.data.as_ref().map(|d| serde_json::to_string(d).unwrap_or_default()),
            ),
        ]
    }
}

/// An event that passed validation, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub trigger: Trigger,
    pub received_at_ms: i64,
    pub external_id: Option<String>,
    /// The serialized [`Event`].
    pub payload: String,
}

/// One reason one event of a request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub index: usize,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        match self.0.first() {
            Some(e) => write!(
                f,
                "{n} invalid field(s); first: event {} field '{}': {}",
                e.index, e.field, e.message
            ),
            None => write!(f, "invalid input"),
        }
    }
}

impl std::error::Error for ValidationErrors {}

/// (name, maximum length in characters) of the optional string fields.
const TEXT_FIELDS: [(&str, usize); 9] = [
    ("campaign_id", 200),
    ("message_id", 200),
    ("list_id", 200),
    ("url", 8192),
    ("bounce_type", 100),
    ("bounce_reason", 4000),
    ("ip", 45),
    ("user_agent", 2000),
    ("external_id", MAX_EXTERNAL_ID),
];
const MAX_RECIPIENT: usize = 320;

/// Validates every event of a request. Either all are valid, or every
/// problem is reported with the index of its event.
pub fn validate_all(items: &[Value], received_at_ms: i64) -> Result<Vec<NewEvent>, ValidationErrors> {
    let mut ok = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match validate_one(index, item, received_at_ms) {
            Ok(e) => ok.push(e),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(ValidationErrors(errors))
    }
}

fn validate_one(index: usize, item: &Value, received_at_ms: i64) -> Result<NewEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            index,
            field: field.to_string(),
            message,
        })
    };
    let Some(obj) = item.as_object() else {
        err("", "an event must be a JSON object".into());
        return Err(errors);
    };

    for key in obj.keys() {
        let known = matches!(key.as_str(), "trigger" | "occurred_at" | "recipient" | "data")
            || TEXT_FIELDS.iter().any(|(n, _)| n == key);
        if !known {
            let hint = if key == "id" || key == "received_at" {
                " (assigned by eventd)"
            } else {
                ""
            };
            err(key, format!("unknown field{hint}"));
        }
    }

    let text = |name: &str, max: usize, err: &mut dyn FnMut(&str, String)| -> Option<String> {
        match obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > max => {
                err(name, format!("longer than {max} characters"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                err(name, "must be a string".into());
                None
            }
        }
    };

    let trigger = match obj.get("trigger") {
        None | Some(Value::Null) => {
            err("trigger", format!("required; one of {}", Trigger::valid_names()));
            None
        }
        Some(Value::String(s)) => match s.parse::<Trigger>() {
            Ok(t) => Some(t),
            Err(e) => {
                err("trigger", e.to_string());
                None
            }
        },
        Some(_) => {
            err("trigger", "must be a string".into());
            None
        }
    };

    let recipient = text("recipient", MAX_RECIPIENT, &mut err);
    if let Some(t) = trigger {
        if t.needs_recipient() && recipient.as_deref().is_none_or(|r| r.trim().is_empty()) {
            err("recipient", format!("required for {t}"));
        }
    }

    let occurred_at = match obj.get("occurred_at") {
        None | Some(Value::Null) => Some(received_at_ms),
        Some(Value::String(s)) => match parse_rfc3339(s) {
            Some(ms) => Some(ms),
            None => {
                err(
                    "occurred_at",
                    "must be an RFC 3339 timestamp such as 2026-11-25T17:00:00Z".into(),
                );
                None
            }
        },
        Some(_) => {
            err("occurred_at", "must be an RFC 3339 timestamp string".into());
            None
        }
    };

    let mut texts: Vec<Option<String>> = Vec::with_capacity(TEXT_FIELDS.len());
    for (name, max) in TEXT_FIELDS {
        texts.push(text(name, max, &mut err));
    }
    if let Some(ip) = &texts[6] {
        if ip.parse::<std::net::IpAddr>().is_err() {
            err("ip", "must be an IPv4 or IPv6 address".into());
        }
    }
    if let Some(x) = &texts[8] {
        if x.is_empty() {
            err("external_id", "must not be empty".into());
        }
    }

    let data = match obj.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > MAX_DATA_BYTES {
                err(
                    "data",
                    format!("{size} bytes serialized; the limit is {MAX_DATA_BYTES}"),
                );
            }
            Some(m.clone())
        }
        Some(_) => {
            err("data", "must be a JSON object".into());
            None
        }
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(trigger), Some(occurred_at)) = (trigger, occurred_at) else {
        // Not reachable: a missing value always recorded an error above.
        errors.push(FieldError {
            index,
            field: String::new(),
            message: "invalid event".into(),
        });
        return Err(errors);
    };
    let mut t = texts.into_iter();
    let mut next = || t.next().flatten();
    let id = Uuid::now_v7().to_string();
    let event = Event {
        id: id.clone(),
        trigger,
        occurred_at: rfc3339(occurred_at),
        received_at: rfc3339(received_at_ms),
        recipient,
        campaign_id: next(),
        message_id: next(),
        list_id: next(),
        url: next(),
        bounce_type: next(),
        bounce_reason: next(),
        ip: next(),
        user_agent: next(),
        external_id: next(),
        data,
    };
    let payload = serde_json::to_string(&event).expect("an event always serializes");
    Ok(NewEvent {
        id,
        trigger,
        received_at_ms,
        external_id: event.external_id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_full_event_and_serializes_it_once() {
        let items = vec![json!({
            "trigger": "click", "recipient": "a@example.com", "url": "https://x.test/",
            "occurred_at": "2026-11-25T10:00:00+02:00", "external_id": "x1",
            "ip": "192.0.2.1", "data": {"geo": "FR"}
        })];
        let ev = validate_all(&items, 0).unwrap().remove(0);
        assert_eq!(ev.trigger, Trigger::Click);
        let back: Event = serde_json::from_str(&ev.payload).unwrap();
        assert_eq!(back.occurred_at, "2026-11-25T08:00:00.000Z");
        assert_eq!(back.external_id.as_deref(), Some("x1"));
        assert_eq!(back.data.unwrap()["geo"], "FR");
        assert!(Uuid::parse_str(&back.id).unwrap().get_version_num() == 7);
    }

    #[test]
    fn reports_every_offender_by_index_and_field() {
        let items = vec![
            json!({"trigger": "OPEN", "recipient": "a@b.c"}),
            json!({"trigger": "NOPE", "recipient": "a@b.c"}),
            json!({"trigger": "OPEN"}),
            json!({"trigger": "DELIVERY", "campaign_id": 5, "id": "x"}),
            json!("not an object"),
        ];
        let errs = validate_all(&items, 0).unwrap_err().0;
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert!(got.contains(&(1, "trigger")));
        assert!(got.contains(&(2, "recipient")));
        assert!(got.contains(&(3, "campaign_id")));
        assert!(got.contains(&(3, "id")));
        assert!(got.contains(&(4, "")));
        assert!(!got.iter().any(|(i, _)| *i == 0));
    }

    #[test]
    fn limits_external_id_and_data() {
        let long = "x".repeat(201);
        let big = "y".repeat(MAX_DATA_BYTES);
        let items = vec![
            json!({"trigger": "DELIVERY", "external_id": long}),
            json!({"trigger": "DELIVERY", "data": {"b": big}}),
            json!({"trigger": "DELIVERY", "data": [1]}),
        ];
        let errs = validate_all(&items, 0).unwrap_err().0;
        assert_eq!(errs.len(), 3);
    }

    /// SPEC §3: `data` up to 64 KiB serialized (65,536 bytes) is accepted.
    #[test]
    fn data_limit_is_64_kib_serialized() {
        // `{"b":"` + n + `"}` is n + 8 bytes.
        let at_limit = json!({"trigger": "DELIVERY", "data": {"b": "y".repeat(65_536 - 8)}});
        assert!(validate_all(&[at_limit], 0).is_ok());
        let over = json!({"trigger": "DELIVERY", "data": {"b": "y".repeat(65_536 - 7)}});
        let errs = validate_all(&[over], 0).unwrap_err().0;
        assert_eq!(errs[0].field, "data");
        assert_eq!(errs[0].message, "65537 bytes serialized; the limit is 65536");
    }

    /// SPEC §3: `external_id` up to 200 characters (not bytes).
    #[test]
    fn text_limits_count_characters_and_include_the_maximum() {
        let at_limit = json!({"trigger": "DELIVERY", "external_id": "é".repeat(200)});
        assert!(validate_all(&[at_limit], 0).is_ok());
        let over = json!({"trigger": "DELIVERY", "external_id": "é".repeat(201)});
        let errs = validate_all(&[over], 0).unwrap_err().0;
        assert_eq!(errs[0].field, "external_id");
        assert_eq!(errs[0].message, "longer than 200 characters");
    }

    #[test]
    fn fields_eventd_assigns_are_named_as_such() {
        let items = vec![json!({"trigger": "DELIVERY", "id": "x", "received_at": "y", "colour": "red"})];
        let errs = validate_all(&items, 0).unwrap_err();
        let message = |field: &str| errs.0.iter().find(|e| e.field == field).unwrap().message.clone();
        assert_eq!(message("id"), "unknown field (assigned by eventd)");
        assert_eq!(message("received_at"), "unknown field (assigned by eventd)");
        assert_eq!(message("colour"), "unknown field");
        assert!(
            errs.to_string()
                .starts_with("3 invalid field(s); first: event 0 field '"),
            "{errs}"
        );
    }
}
