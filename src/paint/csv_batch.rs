//! The CSV of a PAINT event batch: one header line per requested trigger
//! (`eventMeta`, even when none of its events came) and the rows of every
//! event (`eventData`, RFC 4180, CRLF, base64), the first column of each row
//! being the trigger under the name it was requested by.
//!
//! Columns: `type,email,eventId,eventDate,receivedDate,campaignId,messageId,listId`,
//! then per trigger CLICK `url,ip,userAgent`; OPEN `ip,userAgent`;
//! BOUNCE, SOFTBOUNCE, BLOCKED, FAILED, SMSFAILED `bounceType,bounceReason`;
//! then `externalId`, then the requested custom fields (from `data`).

use base64::Engine;
use serde_json::Value;

use crate::domain::event::Event;
use crate::domain::Trigger;

const COMMON: [&str; 8] = [
    "type",
    "email",
    "eventId",
    "eventDate",
    "receivedDate",
    "campaignId",
    "messageId",
    "listId",
];

fn extras(t: Trigger) -> &'static [&'static str] {
    match t {
        Trigger::Click => &["url", "ip", "userAgent"],
        Trigger::Open => &["ip", "userAgent"],
        Trigger::Bounce | Trigger::SoftBounce | Trigger::Blocked | Trigger::Failed | Trigger::SmsFailed => {
            &["bounceType", "bounceReason"]
        }
        _ => &[],
    }
}

fn column<'a>(e: &'a Event, name: &str) -> &'a str {
    let v = match name {
        "type" => Some(e.trigger.as_str()),
        "email" => e.recipient.as_deref(),
        "eventId" => Some(e.id.as_str()),
        "eventDate" => Some(e.occurred_at.as_str()),
        "receivedDate" => Some(e.received_at.as_str()),
        "campaignId" => e.campaign_id.as_deref(),
        "messageId" => e.message_id.as_deref(),
        "listId" => e.list_id.as_deref(),
        "url" => e.url.as_deref(),
        "ip" => e.ip.as_deref(),
        "userAgent" => e.user_agent.as_deref(),
        "bounceType" => e.bounce_type.as_deref(),
        "bounceReason" => e.bounce_reason.as_deref(),
        "externalId" => e.external_id.as_deref(),
        _ => None,
    };
    v.unwrap_or("")
}

fn custom_value(e: &Event, name: &str) -> String {
    match e.data.as_ref().and_then(|d| d.get(name)) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn fixed_columns(t: Trigger) -> impl Iterator<Item = &'static str> {
    COMMON
        .iter()
        .copied()
        .chain(extras(t).iter().copied())
        .chain(["externalId"])
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(Vec::new())
}

/// The header line (without line end) of a trigger's rows.
pub fn header(t: Trigger, custom: &[String]) -> Result<String, csv::Error> {
    let mut w = writer();
    w.write_record(fixed_columns(t).map(str::to_string).chain(custom.iter().cloned()))?;
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    let mut s = String::from_utf8(bytes).unwrap_or_default();
    s.truncate(s.trim_end_matches(['\r', '\n']).len());
    Ok(s)
}

/// A batch as PAINT returns it.
pub struct CsvBatch {
    /// (name the trigger was requested by, header line), in request order.
    pub meta: Vec<(&'static str, String)>,
    /// Base64 of the CSV rows.
    pub data: String,
}

/// `requested`: each requested trigger with the name the client used for it
/// (e.g. PAINT's `SIGNUP` for OPTIN), in request order.
pub fn build(
    events: &[Event],
    custom: &[String],
    requested: &[(Trigger, &'static str)],
) -> Result<CsvBatch, csv::Error> {
    let meta = requested
        .iter()
        .map(|(t, name)| Ok((*name, header(*t, custom)?)))
        .collect::<Result<Vec<_>, csv::Error>>()?;
    let name_of = |t: Trigger| {
        requested
            .iter()
            .find(|(r, _)| *r == t)
            .map_or(t.as_str(), |(_, name)| *name)
    };
    let mut w = writer();
    let mut record: Vec<String> = Vec::new();
    for e in events {
        record.clear();
        record.push(name_of(e.trigger).to_string());
        record.extend(fixed_columns(e.trigger).skip(1).map(|c| column(e, c).to_string()));
        record.extend(custom.iter().map(|c| custom_value(e, c)));
        w.write_record(&record)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(CsvBatch {
        meta,
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(trigger: Trigger, recipient: &str, data: Value) -> Event {
        Event {
            id: "0193-1".into(),
            trigger,
            occurred_at: "2026-01-02T03:04:05Z".into(),
            received_at: "2026-01-02T03:04:06Z".into(),
            recipient: Some(recipient.into()),
            campaign_id: None,
            message_id: None,
            list_id: None,
            url: Some("https://x.test/?a=1,2".into()),
            bounce_type: None,
            bounce_reason: None,
            ip: None,
            user_agent: None,
            external_id: None,
            data: data.as_object().cloned(),
        }
    }

    #[test]
    fn quotes_commas_quotes_and_newlines() {
        let events = [
            event(
                Trigger::Click,
                "a@x.test",
                serde_json::json!({"name": "Smith, \"Jo\"\nline2", "n": 3}),
            ),
            event(Trigger::Open, "ü@x.test", serde_json::json!({})),
        ];
        let custom = vec!["name".to_string(), "n".to_string()];
        let requested = [
            (Trigger::Click, "CLICK"),
            (Trigger::Open, "OPEN"),
            (Trigger::OptIn, "SIGNUP"),
        ];
        let b = build(&events, &custom, &requested).unwrap();
        assert_eq!(
            b.meta.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["CLICK", "OPEN", "SIGNUP"]
        );
        assert_eq!(
            b.meta[0].1,
            "type,email,eventId,eventDate,receivedDate,campaignId,messageId,listId,url,ip,userAgent,externalId,name,n"
        );
        let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&b.data).unwrap()).unwrap();
        assert_eq!(
            raw,
            "CLICK,a@x.test,0193-1,2026-01-02T03:04:05Z,2026-01-02T03:04:06Z,,,,\"https://x.test/?a=1,2\",,,,\
             \"Smith, \"\"Jo\"\"\nline2\",3\r\n\
             OPEN,ü@x.test,0193-1,2026-01-02T03:04:05Z,2026-01-02T03:04:06Z,,,,,,,,\r\n"
        );
    }

    #[test]
    fn every_column_of_the_readme_per_trigger() {
        let full = |trigger| Event {
            id: "e1".into(),
            trigger,
            occurred_at: "2026-01-02T03:04:05Z".into(),
            received_at: "2026-01-02T03:04:06Z".into(),
            recipient: Some("a@x.test".into()),
            campaign_id: Some("c1".into()),
            message_id: Some("m1".into()),
            list_id: Some("l1".into()),
            url: Some("https://x.test/".into()),
            bounce_type: Some("hard".into()),
            bounce_reason: Some("550 no such user".into()),
            ip: Some("192.0.2.1".into()),
            user_agent: Some("UA/1".into()),
            external_id: Some("x1".into()),
            data: serde_json::json!({"plan": "gold", "n": 3, "none": null})
                .as_object()
                .cloned(),
        };
        let custom: Vec<String> = ["plan", "n", "none", "absent"].map(String::from).to_vec();
        let requested = [
            (Trigger::Bounce, "BOUNCE"),
            (Trigger::SoftBounce, "SOFTBOUNCE"),
            (Trigger::Blocked, "BLOCKED"),
            (Trigger::Failed, "FAILED"),
            (Trigger::SmsFailed, "SMSFAILED"),
            (Trigger::Open, "OPEN"),
            (Trigger::Click, "CLICK"),
            (Trigger::Delivery, "DELIVERY"),
        ];
        let events: Vec<Event> = requested.iter().map(|(t, _)| full(*t)).collect();
        let b = build(&events, &custom, &requested).unwrap();
        // README (PAINT): the common columns, then per trigger CLICK
        // url,ip,userAgent; OPEN ip,userAgent; the bounces and failures
        // bounceType,bounceReason; then externalId and the custom fields.
        let common = "type,email,eventId,eventDate,receivedDate,campaignId,messageId,listId";
        let values = "a@x.test,e1,2026-01-02T03:04:05Z,2026-01-02T03:04:06Z,c1,m1,l1";
        let mut rows = String::new();
        assert_eq!(b.meta.len(), requested.len());
        for (name, header) in &b.meta {
            let (extra_header, extra_values) = match *name {
                "BOUNCE" | "SOFTBOUNCE" | "BLOCKED" | "FAILED" | "SMSFAILED" => {
                    ("bounceType,bounceReason,", "hard,550 no such user,")
                }
                "OPEN" => ("ip,userAgent,", "192.0.2.1,UA/1,"),
                "CLICK" => ("url,ip,userAgent,", "https://x.test/,192.0.2.1,UA/1,"),
                _ => ("", ""),
            };
            assert_eq!(*header, format!("{common},{extra_header}externalId,plan,n,none,absent"));
            rows.push_str(&format!("{name},{values},{extra_values}x1,gold,3,,\r\n"));
        }
        let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&b.data).unwrap()).unwrap();
        assert_eq!(raw, rows);
    }
}
