//! Response bodies, written straight into one buffer: linear in the number
//! of events.

use std::fmt::Write;

use crate::domain::event::Event;
use crate::domain::time::{now_ms, rfc3339};
use crate::soapxml::envelope::{self, SoapVersion};
use crate::soapxml::map::{encode_str_item, Prefixes};
use crate::soapxml::write::{escape_into, text_element};
use crate::store::queue::{Batch, QueueStatus};

/// The namespace of the service's operations and types.
pub const NS: &str = "urn:eventd:eventNotification";

fn start(out: &mut String, v: SoapVersion, p: &Prefixes) {
    let d = p.declarations();
    envelope::start(out, v, &[("tns", NS), d[0], d[1], d[2]]);
}

pub fn fetch_response(v: SoapVersion, batch: Option<&Batch>) -> Result<String, String> {
    let p = Prefixes::default();
    let payload: usize = batch.map(|b| b.payloads.iter().map(|s| s.len() * 3).sum()).unwrap_or(0);
    let mut out = String::with_capacity(payload + 1024);
    start(&mut out, v, &p);
    out.push_str("<tns:fetchBatchResponse>");
    match batch {
        None => out.push_str("<tns:remaining>0</tns:remaining><tns:count>0</tns:count><tns:events/>"),
        Some(b) => {
            text_element(&mut out, "tns:batchId", &b.id);
            text_element(&mut out, "tns:consumer", &b.consumer);
            text_element(&mut out, "tns:expiresAt", &rfc3339(b.expires_at_ms));
            let _ = write!(
                out,
                "<tns:remaining>{}</tns:remaining><tns:count>{}</tns:count><tns:events>",
                b.remaining,
                b.payloads.len()
            );
            for payload in &b.payloads {
                let event: Event =
                    serde_json::from_str(payload).map_err(|e| format!("a stored event is unreadable: {e}"))?;
                out.push_str("<tns:event>");
                for (key, value) in event.fields() {
                    if let Some(value) = value {
                        encode_str_item(&mut out, key, &value, &p);
                    }
                }
                out.push_str("</tns:event>");
            }
            out.push_str("</tns:events>");
        }
    }
    out.push_str("</tns:fetchBatchResponse>");
    envelope::end(&mut out);
    Ok(out)
}

pub fn count_response(v: SoapVersion, element: &str, batch_id: &str, field: &str, n: i64) -> String {
    let mut out = String::with_capacity(512);
    envelope::start(&mut out, v, &[("tns", NS)]);
    let _ = write!(out, "<tns:{element}><tns:batchId>");
    escape_into(&mut out, batch_id);
    let _ = write!(out, "</tns:batchId><tns:{field}>{n}</tns:{field}></tns:{element}>");
    envelope::end(&mut out);
    out
}

pub fn status_response(v: SoapVersion, s: &QueueStatus) -> String {
    let mut out = String::with_capacity(2048);
    envelope::start(&mut out, v, &[("tns", NS)]);
    let (pending, in_flight) = s.totals();
    let _ = write!(
        out,
        "<tns:getQueueStatusResponse><tns:pending>{pending}</tns:pending><tns:inFlight>{in_flight}</tns:inFlight>"
    );
    if let Some(age) = s.oldest_pending_age_seconds(now_ms()) {
        let _ = write!(out, "<tns:oldestPendingAgeSeconds>{age}</tns:oldestPendingAgeSeconds>");
    }
    for d in &s.triggers {
        let _ = write!(
            out,
            "<tns:trigger><tns:name>{}</tns:name><tns:pending>{}</tns:pending><tns:inFlight>{}</tns:inFlight></tns:trigger>",
            d.trigger.as_str(),
            d.pending,
            d.in_flight
        );
    }
    for b in &s.open_batches {
        out.push_str("<tns:openBatch>");
        text_element(&mut out, "tns:batchId", &b.id);
        text_element(&mut out, "tns:consumer", &b.consumer);
        text_element(&mut out, "tns:expiresAt", &rfc3339(b.expires_at_ms));
        let _ = write!(out, "<tns:events>{}</tns:events></tns:openBatch>", b.events);
    }
    out.push_str("</tns:getQueueStatusResponse>");
    envelope::end(&mut out);
    out
}
