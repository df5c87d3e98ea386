//! The settings of an email destination (SPEC §6): recipients, digest
//! period, subject prefix. The SMTP relay is server-wide (`--smtp-url`).

use serde_json::{json, Value};

use super::destination_kind::{invalid, unknown_fields, DestinationError};

pub const MAX_RECIPIENTS: usize = 20;
pub const MAX_PERIOD_SECONDS: u32 = 86_400;
/// Shortest digest or FTP period a client may configure (a server started
/// with `--min-period-seconds` lowers it, for tests).
pub const MIN_PERIOD_SECONDS: u32 = 60;
const MAX_PREFIX: usize = 100;
const MAX_ADDRESS: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    pub to: Vec<String>,
    /// 0: one mail per event; else one digest mail per period.
    pub digest_seconds: u32,
    pub subject_prefix: String,
}

/// A period in seconds: `min..=86,400`.
pub(crate) fn period(v: Option<&Value>, name: &str, default: u32, min: u32) -> Result<u32, DestinationError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (u64::from(min)..=u64::from(MAX_PERIOD_SECONDS)).contains(&n) => Ok(n as u32),
            _ => Err(invalid(format!(
                "'{name}' must be an integer from {min} to {MAX_PERIOD_SECONDS}"
            ))),
        },
    }
}

/// Printable text without line breaks (it ends up in a header or a command).
pub(crate) fn single_line(v: &str) -> bool {
    !v.chars().any(char::is_control)
}

impl EmailSettings {
    /// Validates the `"email": {…}` object; `min_period` is the shortest
    /// digest period allowed.
    pub fn parse(v: &Value, min_period: u32) -> Result<EmailSettings, DestinationError> {
        let obj = v.as_object().ok_or_else(|| invalid("'email' must be a JSON object"))?;
        unknown_fields(obj, "email", &["to", "digest_seconds", "subject_prefix"])?;
        let to = match obj.get("to") {
            Some(Value::Array(items)) => {
                let mut out: Vec<String> = Vec::new();
                for item in items {
                    let raw = item
                        .as_str()
                        .ok_or_else(|| invalid("'email.to' must be an array of email addresses"))?
                        .trim();
                    let valid = raw.len() <= MAX_ADDRESS && raw.parse::<lettre::Address>().is_ok();
                    if !valid {
                        return Err(invalid(format!("'email.to': '{raw}' is not a valid email address")));
                    }
                    if !out.iter().any(|a| a.eq_ignore_ascii_case(raw)) {
                        out.push(raw.to_string());
                    }
                }
                if out.is_empty() || out.len() > MAX_RECIPIENTS {
                    return Err(invalid(format!("'email.to' must list 1 to {MAX_RECIPIENTS} addresses")));
                }
                out
            }
            Some(Value::String(_)) => return Err(invalid("'email.to' must be an array, e.g. [\"ops@example.com\"]")),
            Some(_) => return Err(invalid("'email.to' must be an array of email addresses")),
            None => return Err(invalid("'email.to' is required")),
        };
        let digest_seconds = match obj.get("digest_seconds") {
            Some(v) if v.as_u64() == Some(0) => 0,
            other => period(other, "email.digest_seconds", 0, min_period).map_err(|_| {
                invalid(format!(
                    "'email.digest_seconds' must be 0 (one mail per event) or from {min_period} to {MAX_PERIOD_SECONDS}"
                ))
            })?,
        };
        let subject_prefix = match obj.get("subject_prefix") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= MAX_PREFIX && single_line(s) => s.trim().to_string(),
            Some(_) => {
                return Err(invalid(format!(
                    "'email.subject_prefix' must be one line of at most {MAX_PREFIX} characters"
                )))
            }
        };
        Ok(EmailSettings {
            to,
            digest_seconds,
            subject_prefix,
        })
    }

    pub fn to_value(&self) -> Value {
        json!({
            "to": self.to,
            "digest_seconds": self.digest_seconds,
            "subject_prefix": self.subject_prefix,
        })
    }

    /// Digest mails gather a period's events; otherwise one mail per event.
    pub fn period_ms(&self) -> Option<i64> {
        (self.digest_seconds > 0).then(|| i64::from(self.digest_seconds) * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_recipients_period_and_prefix() {
        let s = EmailSettings::parse(
            &json!({"to": ["ops@example.com", "OPS@example.com", " b@x.test "], "subject_prefix": "[acme]"}),
            60,
        )
        .unwrap();
        assert_eq!(s.to, vec!["ops@example.com", "b@x.test"]);
        assert_eq!(s.digest_seconds, 0);
        assert_eq!(s.period_ms(), None);
        assert_eq!(EmailSettings::parse(&s.to_value(), 60).unwrap(), s);
        let d = EmailSettings::parse(&json!({"to": ["a@x.test"], "digest_seconds": 3600}), 60).unwrap();
        assert_eq!(d.period_ms(), Some(3_600_000));
        assert!(EmailSettings::parse(&json!({"to": ["a@x.test"], "digest_seconds": 2}), 1).is_ok());
        let many: Vec<String> = (0..21).map(|i| format!("u{i}@x.test")).collect();
        for (bad, needle) in [
            (json!({}), "'email.to' is required"),
            (json!({"to": []}), "1 to 20"),
            (json!({"to": many}), "1 to 20"),
            (json!({"to": "a@x.test"}), "must be an array"),
            (json!({"to": ["not an address"]}), "not a valid email address"),
            (
                json!({"to": ["a@x.test"], "digest_seconds": 59}),
                "0 (one mail per event) or from 60",
            ),
            (json!({"to": ["a@x.test"], "digest_seconds": 86_401}), "to 86400"),
            (
                json!({"to": ["a@x.test"], "subject_prefix": "a\r\nBcc: x@y"}),
                "one line",
            ),
            (json!({"to": ["a@x.test"], "cc": []}), "unknown field 'email.cc'"),
        ] {
            let err = EmailSettings::parse(&bad, 60).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn twenty_recipients_and_the_period_bounds_of_the_readme() {
        // README: `to` 1–20 addresses; digest_seconds 0, or 60..86,400.
        let twenty: Vec<String> = (0..20).map(|i| format!("u{i}@x.test")).collect();
        assert_eq!(EmailSettings::parse(&json!({"to": twenty}), 60).unwrap().to.len(), 20);
        let digest = |v: Value| EmailSettings::parse(&json!({"to": ["a@x.test"], "digest_seconds": v}), 60);
        let zero = digest(json!(0)).unwrap();
        assert_eq!((zero.digest_seconds, zero.period_ms()), (0, None));
        assert_eq!(digest(json!(60)).unwrap().period_ms(), Some(60_000));
        assert_eq!(digest(json!(86_400)).unwrap().period_ms(), Some(86_400_000));
        assert!(digest(json!(-1)).is_err());
        assert!(digest(json!("60")).is_err());
    }
}
