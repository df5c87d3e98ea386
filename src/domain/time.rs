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

/// The instant `age` before `now` (both epoch milliseconds): what is older
/// than that is past a retention of `age`. Saturates rather than wrapping
/// for an absurd age.
pub fn cutoff(now: i64, age: std::time::Duration) -> i64 {
    now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
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
    fn cutoff_is_the_age_before_now_and_saturates() {
        use std::time::Duration;
        assert_eq!(cutoff(10_000, Duration::from_secs(3)), 7_000);
        assert_eq!(cutoff(10_000, Duration::ZERO), 10_000);
        assert_eq!(cutoff(10_000, Duration::MAX), 10_000 - i64::MAX);
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
