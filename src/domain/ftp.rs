//! The settings of an FTP destination (SPEC §6). The password is
//! write-only: stored, used to log in, never shown ([`FtpSettings::public_value`]).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::destination_kind::{invalid, unknown_fields, DestinationError};
use super::email::{period, single_line};

pub const DEFAULT_EVERY_SECONDS: u32 = 86_400;
const MAX_FIELD: usize = 256;
const MAX_DIRECTORY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Jsonl,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FtpTls {
    /// Plain FTP: the password crosses the network in clear.
    None,
    /// FTPS with explicit TLS (`AUTH TLS` on the control connection, then
    /// protected data connections).
    Explicit,
}

#[derive(Clone, PartialEq, Eq)]
pub struct FtpSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub directory: String,
    pub every_seconds: u32,
    pub format: FileFormat,
    pub tls: FtpTls,
}

/// Never prints the password.
impl std::fmt::Debug for FtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("directory", &self.directory)
            .field("every_seconds", &self.every_seconds)
            .field("format", &self.format)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn text(obj: &serde_json::Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, DestinationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max && single_line(s) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("'ftp.{key}' must be one line of at most {max} bytes"))),
    }
}

impl FtpSettings {
    /// Validates the `"ftp": {…}` object. Without a `password`, the one of
    /// `previous` is kept when host and username did not change (a client can
    /// send back what GET showed); otherwise a password is required.
    pub fn parse(v: &Value, min_period: u32, previous: Option<&FtpSettings>) -> Result<FtpSettings, DestinationError> {
        let obj = v.as_object().ok_or_else(|| invalid("'ftp' must be a JSON object"))?;
        unknown_fields(
            obj,
            "ftp",
            &[
                "host",
                "port",
                "username",
                "password",
                "password_set",
                "directory",
                "every_seconds",
                "format",
                "tls",
            ],
        )?;
        let host = text(obj, "host", 253)?
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("'ftp.host' is required"))?;
        let host_ok = url::Host::parse(&host).is_ok() && !host.contains(['/', '@', ':', ' ']);
        if !host_ok {
            return Err(invalid(format!(
                "'ftp.host': '{host}' is not a host name or IPv4 address"
            )));
        }
        let port = match obj.get("port") {
            None | Some(Value::Null) => 21,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=65_535).contains(&n) => n as u16,
                _ => return Err(invalid("'ftp.port' must be an integer from 1 to 65535")),
            },
        };
        let username = text(obj, "username", MAX_FIELD)?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("'ftp.username' is required"))?;
        let password = match text(obj, "password", MAX_FIELD)? {
            Some(p) => p,
            None => match previous {
                Some(p) if p.host.eq_ignore_ascii_case(&host) && p.username == username => p.password.clone(),
                _ => return Err(invalid("'ftp.password' is required (it is never shown back)")),
            },
        };
        let directory = text(obj, "directory", MAX_DIRECTORY)?.unwrap_or_else(|| "/".into());
        let directory = if directory.trim().is_empty() {
            "/".to_string()
        } else {
            directory.trim().to_string()
        };
        let every_seconds = period(
            obj.get("every_seconds"),
            "ftp.every_seconds",
            DEFAULT_EVERY_SECONDS,
            min_period,
        )?;
        let format = match obj.get("format") {
            None | Some(Value::Null) => FileFormat::Csv,
            Some(Value::String(s)) if s == "csv" => FileFormat::Csv,
            Some(Value::String(s)) if s == "jsonl" => FileFormat::Jsonl,
            Some(_) => return Err(invalid("'ftp.format' must be \"csv\" or \"jsonl\"")),
        };
        let tls = match obj.get("tls") {
            None | Some(Value::Null) => FtpTls::Explicit,
            Some(Value::String(s)) if s == "none" => FtpTls::None,
            Some(Value::String(s)) if s == "explicit" => FtpTls::Explicit,
            Some(_) => return Err(invalid("'ftp.tls' must be \"none\" or \"explicit\"")),
        };
        Ok(FtpSettings {
            host,
            port,
            username,
            password,
            directory,
            every_seconds,
            format,
            tls,
        })
    }

    /// The stored form (with the password).
    pub fn to_value(&self) -> Value {
        let mut v = self.public_value();
        let obj = v.as_object_mut().expect("an object");
        obj.remove("password_set");
        obj.insert("password".into(), json!(self.password));
        v
    }

    /// What GET shows: everything but the password.
    pub fn public_value(&self) -> Value {
        json!({
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password_set": !self.password.is_empty(),
            "directory": self.directory,
            "every_seconds": self.every_seconds,
            "format": self.format,
            "tls": self.tls,
        })
    }

    pub fn period_ms(&self) -> i64 {
        i64::from(self.every_seconds) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"host": "ftp.example.com", "username": "acme", "password": "s3cret", "directory": "/in"})
    }

    #[test]
    fn defaults_round_trip_and_hidden_password() {
        let s = FtpSettings::parse(&base(), 60, None).unwrap();
        assert_eq!(
            (s.port, s.every_seconds, s.format, s.tls),
            (21, 86_400, FileFormat::Csv, FtpTls::Explicit)
        );
        assert_eq!(FtpSettings::parse(&s.to_value(), 60, None).unwrap(), s);
        let shown = s.public_value();
        assert_eq!(shown["password_set"], json!(true));
        assert!(shown.get("password").is_none());
        assert!(!format!("{s:?}").contains("s3cret"));
        // Sent back as shown: the password is kept for the same host and user only.
        assert_eq!(FtpSettings::parse(&shown, 60, Some(&s)).unwrap(), s);
        let mut moved = shown.clone();
        moved["host"] = json!("evil.example.net");
        assert!(FtpSettings::parse(&moved, 60, Some(&s))
            .unwrap_err()
            .to_string()
            .contains("password"));
    }

    #[test]
    fn refuses_bad_settings() {
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            FtpSettings::parse(&b, 60, None).unwrap_err().to_string()
        };
        assert!(with("host", json!("")).contains("'ftp.host' is required"));
        assert!(with("host", json!("user@host")).contains("not a host name"));
        assert!(with("port", json!(0)).contains("1 to 65535"));
        assert!(with("username", json!("a\r\nDELE x")).contains("one line"));
        assert!(with("every_seconds", json!(59)).contains("60 to 86400"));
        assert!(with("format", json!("xml")).contains("csv"));
        assert!(with("tls", json!("implicit")).contains("explicit"));
        assert!(with("mode", json!("active")).contains("unknown field 'ftp.mode'"));
        assert!(FtpSettings::parse(&json!({"host": "h", "username": "u"}), 60, None).is_err());
    }

    #[test]
    fn formats_tls_modes_and_periods_by_name() {
        let with = |extra: Value| {
            let mut b = base();
            for (k, x) in extra.as_object().unwrap() {
                b[k] = x.clone();
            }
            FtpSettings::parse(&b, 60, None).unwrap()
        };
        // SPEC §6: format csv or jsonl; tls explicit (the default) or none.
        let s = with(json!({"format": "jsonl", "tls": "none", "port": 2121}));
        assert_eq!((s.format, s.tls, s.port), (FileFormat::Jsonl, FtpTls::None, 2121));
        let s = with(json!({"format": "csv", "tls": "explicit"}));
        assert_eq!((s.format, s.tls), (FileFormat::Csv, FtpTls::Explicit));
        // README: files end in .csv or .jsonl.
        assert_eq!(
            (FileFormat::Csv.extension(), FileFormat::Jsonl.extension()),
            ("csv", "jsonl")
        );
        // SPEC §6: every_seconds defaults to 86,400 (one file a day).
        assert_eq!(with(json!({})).period_ms(), 86_400_000);
        assert_eq!(with(json!({"every_seconds": 60})).period_ms(), 60_000);
    }

    #[test]
    fn hosts_are_names_or_ipv4_and_debug_shows_all_but_the_password() {
        let s = FtpSettings::parse(&base(), 60, None).unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("ftp.example.com") && shown.contains("acme") && shown.contains("/in"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let host = |h: &str| {
            let mut b = base();
            b["host"] = json!(h);
            FtpSettings::parse(&b, 60, None)
        };
        assert_eq!(host("192.0.2.7").unwrap().host, "192.0.2.7");
        assert_eq!(host(" ftp.example.com ").unwrap().host, "ftp.example.com");
        for bad in ["[::1]", "::1", "h/x", "a b"] {
            let err = host(bad).unwrap_err().to_string();
            assert!(err.contains("not a host name or IPv4 address"), "{bad}: {err}");
        }
    }
}
