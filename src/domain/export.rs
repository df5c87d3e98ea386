//! What email and FTP destinations write: event files (CSV with a header
//! row per RFC 4180, UTF-8, or JSON Lines), the plain-text mail bodies, and
//! the deterministic names (file names, Message-IDs) that make a retried
//! send recognisable as the same one.

use chrono::{DateTime, Utc};

use super::destination::EVENT_FIELDS;
use super::event::Event;
use super::ftp::FileFormat;
use super::time::rfc3339;
use super::trigger::Trigger;

/// Most events in one file or digest mail; a larger period is split.
pub const MAX_EVENTS_PER_FILE: usize = 10_000;

/// Stored event JSON, parsed (a row that is not an event is skipped: stored
/// events always are).
pub fn parse_events<'a>(payloads: impl IntoIterator<Item = &'a str>) -> Vec<Event> {
    payloads
        .into_iter()
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect()
}

/// CSV: a header row with every event field, then one row per event
/// (`data` as its JSON text), CRLF line ends, quoted where needed.
pub fn csv(events: &[Event]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = w.write_record(EVENT_FIELDS);
    for e in events {
        let _ = w.write_record(e.fields().into_iter().map(|(_, v)| v.unwrap_or_default()));
    }
    w.into_inner().unwrap_or_default()
}

/// JSON Lines: each event's stored JSON, one per line.
pub fn jsonl<'a>(payloads: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(p.as_bytes());
        out.push(b'\n');
    }
    out
}

pub fn file_body(format: FileFormat, payloads: &[&str]) -> Vec<u8> {
    match format {
        FileFormat::Csv => csv(&parse_events(payloads.iter().copied())),
        FileFormat::Jsonl => jsonl(payloads.iter().copied()),
    }
}

/// `20261206T110000Z`
pub fn compact_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The name of one period's file: `eventd_{account}_{TRIGGER}_{start}.{ext}`,
/// with `_{part}` (4 digits) before the extension from the second file of a
/// period on, so names sort by time, then part.
pub fn file_name(account_id: i64, trigger: &str, period_start_ms: i64, part: i64, ext: &str) -> String {
    let start = compact_time(period_start_ms);
    if part <= 1 {
        format!("eventd_{account_id}_{trigger}_{start}.{ext}")
    } else {
        format!("eventd_{account_id}_{trigger}_{start}_{part:04}.{ext}")
    }
}

/// The plain-text body of a one-event mail: one `field: value` line per
/// field the event has, in the canonical order.
pub fn event_text(e: &Event) -> String {
    let mut out = String::new();
    for (name, value) in e.fields() {
        if let Some(v) = value {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&v.replace(['\r', '\n'], " "));
            out.push_str("\r\n");
        }
    }
    out
}

/// The subject of a one-event mail: `{prefix} {TRIGGER} {recipient}`.
pub fn event_subject(prefix: &str, e: &Event) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    parts.push(e.trigger.as_str());
    if let Some(r) = &e.recipient {
        parts.push(r);
    }
    parts.join(" ")
}

/// The short summary of a digest mail: counts per trigger, first and last time.
pub fn digest_text(events: &[Event], attachment: &str) -> String {
    let mut counts: Vec<(Trigger, usize)> = Vec::new();
    for e in events {
        match counts.iter_mut().find(|(t, _)| *t == e.trigger) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.trigger, 1)),
        }
    }
    let mut out = format!("{} event(s)\r\n\r\n", events.len());
    for (t, n) in &counts {
        out.push_str(&format!("{}: {n}\r\n", t.as_str()));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        out.push_str(&format!(
            "\r\nfirst received: {}\r\nlast received:  {}\r\n",
            first.received_at, last.received_at
        ));
    }
    out.push_str(&format!("\r\nEvery event is in the attached {attachment}.\r\n"));
    out
}

pub fn digest_subject(prefix: &str, trigger: &str, count: usize, period_start_ms: i64) -> String {
    let head = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix} ")
    };
    format!(
        "{head}{trigger} digest: {count} event(s) since {}",
        rfc3339(period_start_ms)
    )
}

/// Message-ID of a one-event mail (without the angle brackets).
pub fn event_message_id(event_id: &str, domain: &str) -> String {
    format!("{event_id}@{domain}")
}

/// Message-ID of a digest mail: from its first and last events.
pub fn digest_message_id(first_event_id: &str, last_event_id: &str, domain: &str) -> String {
    format!("digest.{first_event_id}.{last_event_id}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, recipient: &str, data: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "id": id, "trigger": "OPEN", "occurred_at": "2026-12-06T10:00:00.000Z",
            "received_at": "2026-12-06T10:00:01.000Z", "recipient": recipient,
        });
        if let Some(d) = data {
            v["data"] = serde_json::from_str(d).unwrap();
        }
        v.to_string()
    }

    #[test]
    fn csv_quotes_and_uses_crlf() {
        let a = event("e1", "a@x.test", Some(r#"{"note":"comma, \"quote\"\nline"}"#));
        let b = event("e2", "b@x.test", None);
        let out = String::from_utf8(file_body(FileFormat::Csv, &[&a, &b])).unwrap();
        let mut lines = out.split("\r\n");
        assert_eq!(lines.next().unwrap(), EVENT_FIELDS.join(","));
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "e1");
        assert_eq!(&rows[0][14], r#"{"note":"comma, \"quote\"\nline"}"#);
        assert_eq!(&rows[1][4], "b@x.test");
        assert_eq!(&rows[1][14], "");
        let j = String::from_utf8(file_body(FileFormat::Jsonl, &[&a, &b])).unwrap();
        assert_eq!(j, format!("{a}\n{b}\n"));
    }

    #[test]
    fn names_sort_by_time_then_part() {
        let t = 1_796_556_000_000; // 2026-12-06T11:20:00Z
        assert_eq!(file_name(7, "OPEN", t, 1, "csv"), "eventd_7_OPEN_20261206T112000Z.csv");
        assert_eq!(
            file_name(7, "OPEN", t, 2, "csv"),
            "eventd_7_OPEN_20261206T112000Z_0002.csv"
        );
        let mut names = [
            file_name(7, "OPEN", t + 60_000, 1, "csv"),
            file_name(7, "OPEN", t, 12, "csv"),
            file_name(7, "OPEN", t, 2, "csv"),
            file_name(7, "OPEN", t, 1, "csv"),
        ];
        names.sort();
        assert_eq!(names[0], file_name(7, "OPEN", t, 1, "csv"));
        assert_eq!(names[1], file_name(7, "OPEN", t, 2, "csv"));
        assert_eq!(names[3], file_name(7, "OPEN", t + 60_000, 1, "csv"));
    }

    #[test]
    fn mail_texts() {
        let e = parse_events([event("e1", "a@x.test", None).as_str()]);
        assert_eq!(event_subject("[acme]", &e[0]), "[acme] OPEN a@x.test");
        assert_eq!(event_subject("", &e[0]), "OPEN a@x.test");
        let body = event_text(&e[0]);
        assert!(body.starts_with("id: e1\r\ntrigger: OPEN\r\n"), "{body}");
        assert!(!body.contains("campaign_id"));
        let d = digest_text(&e, "x.csv");
        assert!(
            d.contains("OPEN: 1") && d.contains("first received: 2026-12-06T10:00:01.000Z"),
            "{d}"
        );
    }

    #[test]
    fn digest_summary_counts_each_trigger() {
        let at = |id: &str, trigger: &str, received: &str| {
            serde_json::json!({
                "id": id, "trigger": trigger, "occurred_at": "2026-12-06T10:00:00.000Z",
                "received_at": received,
            })
            .to_string()
        };
        let rows = [
            at("e1", "OPEN", "2026-12-06T10:00:01.000Z"),
            at("e2", "CLICK", "2026-12-06T10:00:02.000Z"),
            at("e3", "OPEN", "2026-12-06T10:00:03.000Z"),
            at("e4", "OPEN", "2026-12-06T10:00:04.000Z"),
        ];
        let events = parse_events(rows.iter().map(String::as_str));
        let d = digest_text(&events, "eventd_7_OPEN_20261206T100000Z.csv");
        assert!(d.starts_with("4 event(s)\r\n"), "{d}");
        assert!(d.contains("\r\nOPEN: 3\r\nCLICK: 1\r\n"), "{d}");
        assert!(d.contains("first received: 2026-12-06T10:00:01.000Z"), "{d}");
        assert!(d.contains("last received:  2026-12-06T10:00:04.000Z"), "{d}");
        assert!(d.contains("attached eventd_7_OPEN_20261206T100000Z.csv"), "{d}");
    }

    #[test]
    fn digest_subjects_and_message_ids() {
        let t = 1_796_556_000_000; // 2026-12-06T11:20:00Z
        assert_eq!(
            digest_subject("[acme]", "OPEN", 3, t),
            "[acme] OPEN digest: 3 event(s) since 2026-12-06T11:20:00.000Z"
        );
        assert_eq!(
            digest_subject("", "CLICK", 1, t),
            "CLICK digest: 1 event(s) since 2026-12-06T11:20:00.000Z"
        );
        // README: `<{event id}@{from domain}>` and `<digest.{first id}.{last id}@…>`.
        assert_eq!(event_message_id("evt_1", "mail.example.com"), "evt_1@mail.example.com");
        assert_eq!(
            digest_message_id("evt_1", "evt_9", "mail.example.com"),
            "digest.evt_1.evt_9@mail.example.com"
        );
    }
}
