//! The retry schedule: `30s*10,30m*10` = ten retries 30 s apart, then ten
//! 30 min apart; after the last, the delivery is dead.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{input}': {reason}")]
pub struct ScheduleError {
    what: &'static str,
    input: String,
    reason: String,
}

/// `250ms`, `30s`, `30m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, ScheduleError> {
    let err = |reason: &str| ScheduleError {
        what: "duration",
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| err("expected a number followed by ms, s, m or h"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(err("the unit must be ms, s, m or h")),
    };
    Ok(Duration::from_millis(ms))
}

/// Parses `DURATION*COUNT,…` (a step without `*COUNT` counts once) into the
/// list of delays, one per retry. An empty string means no retries.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, ScheduleError> {
    let mut out = Vec::new();
    for step in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (d, count) = match step.split_once('*') {
            Some((d, c)) => (
                d,
                c.trim().parse::<usize>().map_err(|_| ScheduleError {
                    what: "retry schedule",
                    input: s.to_string(),
                    reason: format!("'{c}' is not a count"),
                })?,
            ),
            None => (step, 1),
        };
        if count > 1000 || out.len() + count > 1000 {
            return Err(ScheduleError {
                what: "retry schedule",
                input: s.to_string(),
                reason: "at most 1000 retries".into(),
            });
        }
        let d = parse_duration(d)?;
        out.extend(std::iter::repeat_n(d, count));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule() {
        let s = parse_schedule("30s*10,30m*10").unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s[0], Duration::from_secs(30));
        assert_eq!(s[9], Duration::from_secs(30));
        assert_eq!(s[10], Duration::from_secs(1800));
        assert_eq!(
            parse_schedule("5ms, 1s").unwrap(),
            vec![Duration::from_millis(5), Duration::from_secs(1)]
        );
        assert!(parse_schedule("").unwrap().is_empty());
        assert!(parse_schedule("5x*2").is_err());
        assert!(parse_schedule("5s*lots").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn every_unit_and_spec_default_in_milliseconds() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_millis(30_000));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_millis(1_800_000));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_millis(7_200_000));
        assert_eq!(parse_duration(" 1h ").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("2d").is_err());
        // SPEC §6: 10 tries 30 s apart, then 10 tries 30 min apart.
        let s = parse_schedule("30s*10,30m*10").unwrap();
        assert_eq!(s[..10], [Duration::from_secs(30); 10]);
        assert_eq!(s[10..], [Duration::from_secs(30 * 60); 10]);
    }

    #[test]
    fn at_most_1000_retries_in_all_steps() {
        assert_eq!(parse_schedule("1s*1000").unwrap().len(), 1000);
        assert_eq!(parse_schedule("1s*600,2s*400").unwrap().len(), 1000);
        assert!(parse_schedule("1s*1001").is_err());
        assert!(parse_schedule("1s*600,2s*401").is_err());
        // An absurd count is refused, not added up (and overflowed).
        assert!(parse_schedule("1s,1s*18446744073709551615").is_err());
    }
}
