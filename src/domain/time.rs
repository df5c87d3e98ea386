//! Timestamps are stored as milliseconds since the Unix epoch (the same
//! BIGINT on both backends) and shown as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp with any offset into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_utc() {
        let ms = parse_rfc3339("2026-11-25T18:00:00.250+01:00").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-25T17:00:00.250Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn now_is_the_wall_clock_in_milliseconds() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now_ms() - wall).abs() < 5_000, "{} vs {wall}", now_ms());
    }
}
