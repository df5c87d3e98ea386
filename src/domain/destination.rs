//! Where the events of one trigger of one account go (SPEC §6).

use serde_json::Value;

pub use super::destination_kind::{Destination, DestinationError};
use super::email::{EmailSettings, MIN_PERIOD_SECONDS};
use super::ftp::FtpSettings;
pub use super::http::{
    BodyFormat, HttpMethod, HttpSettings, DEFAULT_TIMEOUT_SECONDS, EVENT_FIELDS, MAX_TIMEOUT_SECONDS,
};

/// A trigger's configuration: the destination and the settings of that
/// destination (one sub-object per destination kind, e.g. `"http": {…}`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TriggerConfig {
    pub destination: Destination,
    /// Destination-specific settings, validated by the destination's own
    /// module and stored as JSON. `Value::Null` when there are none.
    pub settings: Value,
}

impl TriggerConfig {
    /// Validates a `PUT /v1/triggers/{T}` body (default limits, no previous
    /// configuration).
    pub fn parse(body: &Value) -> Result<TriggerConfig, DestinationError> {
        TriggerConfig::parse_with(body, MIN_PERIOD_SECONDS, None)
    }

    /// Validates a `PUT /v1/triggers/{T}` body. `min_period` is the shortest
    /// digest/FTP period allowed; `previous` is the trigger's current
    /// configuration (an FTP password left out is kept from it).
    pub fn parse_with(
        body: &Value,
        min_period: u32,
        previous: Option<&TriggerConfig>,
    ) -> Result<TriggerConfig, DestinationError> {
        let obj = body
            .as_object()
            .ok_or_else(|| DestinationError::Invalid("the body must be a JSON object".into()))?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "destination" | "http" | "email" | "ftp") {
                return Err(DestinationError::Invalid(format!("unknown field '{key}'")));
            }
        }
        let destination = match obj.get("destination") {
            Some(Value::String(s)) => s.parse::<Destination>()?,
            Some(_) => return Err(DestinationError::Invalid("'destination' must be a string".into())),
            None => return Err(DestinationError::Invalid("'destination' is required".into())),
        };
        if !destination.is_available() {
            return Err(DestinationError::Unavailable(destination));
        }
        let settings = obj.get(destination.as_str()).cloned().unwrap_or(Value::Null);
        let settings = match destination {
            Destination::Http => {
                if settings.is_null() {
                    return Err(DestinationError::Invalid(
                        "destination 'http' needs its settings: \"http\": {\"url\": …}".into(),
                    ));
                }
                HttpSettings::parse(&settings)?.to_value()
            }
            Destination::Email => {
                if settings.is_null() {
                    return Err(DestinationError::Invalid(
                        "destination 'email' needs its settings: \"email\": {\"to\": […]}".into(),
                    ));
                }
                EmailSettings::parse(&settings, min_period)?.to_value()
            }
            Destination::Ftp => {
                if settings.is_null() {
                    return Err(DestinationError::Invalid(
                        "destination 'ftp' needs its settings: \"ftp\": {\"host\": …}".into(),
                    ));
                }
                let previous = previous.and_then(TriggerConfig::ftp);
                FtpSettings::parse(&settings, min_period, previous.as_ref())?.to_value()
            }
            _ => settings,
        };
        Ok(TriggerConfig { destination, settings })
    }

    /// The HTTP settings of an `http` destination (stored validated).
    pub fn http(&self) -> Option<HttpSettings> {
        if self.destination != Destination::Http {
            return None;
        }
        HttpSettings::parse(&self.settings).ok()
    }

    /// The settings of an `email` destination (stored validated).
    pub fn email(&self) -> Option<EmailSettings> {
        if self.destination != Destination::Email {
            return None;
        }
        EmailSettings::parse(&self.settings, 1).ok()
    }

    /// The settings of an `ftp` destination (stored validated).
    pub fn ftp(&self) -> Option<FtpSettings> {
        if self.destination != Destination::Ftp {
            return None;
        }
        FtpSettings::parse(&self.settings, 1, None).ok()
    }

    /// The settings as shown to clients (an FTP password never is).
    pub fn public_settings(&self) -> Value {
        match self.ftp() {
            Some(f) => f.public_value(),
            None => self.settings.clone(),
        }
    }

    /// How long the events of one file or digest mail gather (None: each
    /// event is sent on its own).
    pub fn period_ms(&self) -> Option<i64> {
        match self.destination {
            Destination::Email => self.email().and_then(|e| e.period_ms()),
            Destination::Ftp => self.ftp().map(|f| f.period_ms()),
            _ => None,
        }
    }
}

/// The settings of a destination the delivery worker serves: one pipeline,
/// one transport per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliverySettings {
    Http(HttpSettings),
    Email(EmailSettings),
    Ftp(FtpSettings),
}

impl DeliverySettings {
    /// From a destination row: its transport name and stored settings.
    pub fn parse(transport: &str, settings: &Value) -> Option<DeliverySettings> {
        match transport {
            "http" => HttpSettings::parse(settings).ok().map(DeliverySettings::Http),
            "email" => EmailSettings::parse(settings, 1).ok().map(DeliverySettings::Email),
            "ftp" => FtpSettings::parse(settings, 1, None).ok().map(DeliverySettings::Ftp),
            _ => None,
        }
    }

    /// Whether events gather into one mail or file per period (a "parcel").
    pub fn period_ms(&self) -> Option<i64> {
        match self {
            DeliverySettings::Http(_) => None,
            DeliverySettings::Email(e) => e.period_ms(),
            DeliverySettings::Ftp(f) => Some(f.period_ms()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http(v: Value) -> Result<TriggerConfig, DestinationError> {
        TriggerConfig::parse(&json!({"destination": "http", "http": v}))
    }

    #[test]
    fn http_settings_are_validated_and_normalised() {
        let c = http(json!({"url": "https://hooks.example.com/x?token=1"})).unwrap();
        let s = c.http().unwrap();
        assert_eq!(s.method, HttpMethod::Post);
        assert_eq!(s.format, BodyFormat::Json);
        assert_eq!(s.batch_size, 1);
        assert_eq!(s.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert!(s.fields.is_empty());
        let s = http(
            json!({"url": "http://h.test/", "method": "get", "fields": ["id", "recipient"],
            "headers": {"X-Token": "abc"}, "timeout_seconds": 5, "ordered": true}),
        )
        .unwrap()
        .http()
        .unwrap();
        assert_eq!(s.method, HttpMethod::Get);
        assert_eq!(s.fields, vec!["id", "recipient"]);
        assert_eq!(s.headers, vec![("X-Token".to_string(), "abc".to_string())]);
        assert!(s.ordered);
        // Round trip through the stored form.
        assert_eq!(HttpSettings::parse(&s.to_value()).unwrap(), s);

        for (bad, needle) in [
            (json!({}), "url' is required"),
            (json!({"url": "ftp://h.test/"}), "http or https"),
            (json!({"url": "not a url"}), "not a valid URL"),
            (
                json!({"url": "http://h.test/", "fields": ["nope"]}),
                "unknown event field 'nope'",
            ),
            (json!({"url": "http://h.test/", "batch_size": 0}), "1 to 1000"),
            (json!({"url": "http://h.test/", "batch_size": 1001}), "1 to 1000"),
            (
                json!({"url": "http://h.test/", "batch_size": 5, "method": "GET"}),
                "POST with format json",
            ),
            (
                json!({"url": "http://h.test/", "timeout_seconds": 0}),
                "timeout_seconds",
            ),
            (json!({"url": "http://h.test/", "method": "PUT"}), "POST or GET"),
            (
                json!({"url": "http://h.test/", "headers": {"Content-Type": "x"}}),
                "set by eventd",
            ),
            (
                json!({"url": "http://h.test/", "headers": {"bad name": "x"}}),
                "not a valid header name",
            ),
            (
                json!({"url": "http://h.test/", "colour": 1}),
                "unknown field 'http.colour'",
            ),
        ] {
            let err = http(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!(TriggerConfig::parse(&json!({"destination": "http"})).is_err());
    }

    #[test]
    fn parses_and_refuses() {
        let c = TriggerConfig::parse(&json!({"destination": "none"})).unwrap();
        assert_eq!(c.destination, Destination::None);
        assert!(matches!(
            TriggerConfig::parse(&json!({"destination": "carrier-pigeon"})),
            Err(DestinationError::Unknown(_))
        ));
        assert!(TriggerConfig::parse(&json!({"destination": "pull", "x": 1})).is_err());
        assert!(TriggerConfig::parse(&json!([])).is_err());
    }

    fn ftp_body(extra: Value) -> Value {
        let mut f = json!({"host": "ftp.example.com", "username": "acme", "password": "s3cret"});
        for (k, x) in extra.as_object().unwrap() {
            f[k] = x.clone();
        }
        json!({"destination": "ftp", "ftp": f})
    }

    #[test]
    fn email_and_ftp_settings_are_validated_and_stored_normalised() {
        let c = TriggerConfig::parse(&json!({"destination": "email", "email": {"to": [" ops@example.com "]}})).unwrap();
        assert_eq!(
            c.settings,
            json!({"to": ["ops@example.com"], "digest_seconds": 0, "subject_prefix": ""})
        );
        assert_eq!(c.email().unwrap().to, vec!["ops@example.com"]);
        assert_eq!((c.http(), c.ftp()), (None, None));
        assert_eq!(c.public_settings(), c.settings);
        for bad in [
            json!({"destination": "email"}),
            json!({"destination": "email", "email": {"to": "ops@example.com"}}),
            // README: digest_seconds 0 or 60..86,400.
            json!({"destination": "email", "email": {"to": ["a@x.test"], "digest_seconds": 59}}),
        ] {
            assert!(TriggerConfig::parse(&bad).is_err(), "{bad}");
        }

        let c = TriggerConfig::parse(&ftp_body(json!({"directory": " /in "}))).unwrap();
        let f = c.ftp().unwrap();
        assert_eq!(
            (f.host.as_str(), f.directory.as_str(), f.port),
            ("ftp.example.com", "/in", 21)
        );
        assert_eq!((c.http(), c.email()), (None, None));
        assert_eq!(c.settings["password"], json!("s3cret"));
        // GET never shows the password.
        let shown = c.public_settings();
        assert_eq!(shown["password_set"], json!(true));
        assert!(shown.get("password").is_none(), "{shown}");
        assert_eq!(shown["host"], json!("ftp.example.com"));
        // A PUT of what GET showed keeps the password (README).
        let again = TriggerConfig::parse_with(&json!({"destination": "ftp", "ftp": shown}), 60, Some(&c)).unwrap();
        assert_eq!(again.ftp().unwrap().password, "s3cret");
        assert!(TriggerConfig::parse(&json!({"destination": "ftp"})).is_err());
        assert!(TriggerConfig::parse(&ftp_body(json!({"port": 0}))).is_err());
    }

    #[test]
    fn periods_of_digests_and_files() {
        let config = |body: Value| TriggerConfig::parse(&body).unwrap();
        let email = |digest: u32| {
            config(json!({"destination": "email", "email": {"to": ["a@x.test"], "digest_seconds": digest}}))
        };
        assert_eq!(email(0).period_ms(), None);
        assert_eq!(email(3600).period_ms(), Some(3_600_000));
        // SPEC §6: every_seconds defaults to 86,400.
        assert_eq!(config(ftp_body(json!({}))).period_ms(), Some(86_400_000));
        assert_eq!(config(ftp_body(json!({"every_seconds": 60}))).period_ms(), Some(60_000));
        assert_eq!(http(json!({"url": "https://h.test/"})).unwrap().period_ms(), None);
        assert_eq!(config(json!({"destination": "pull"})).period_ms(), None);
    }

    #[test]
    fn delivery_settings_from_a_destination_row() {
        let stored = |c: TriggerConfig| c.settings;
        let h = stored(http(json!({"url": "https://h.test/"})).unwrap());
        let e = stored(
            TriggerConfig::parse(
                &json!({"destination": "email", "email": {"to": ["a@x.test"], "digest_seconds": 600}}),
            )
            .unwrap(),
        );
        let f = stored(TriggerConfig::parse(&ftp_body(json!({"every_seconds": 120}))).unwrap());
        let Some(DeliverySettings::Http(s)) = DeliverySettings::parse("http", &h) else {
            panic!("http row not read")
        };
        assert_eq!(s.url, "https://h.test/");
        assert_eq!(DeliverySettings::parse("http", &h).unwrap().period_ms(), None);
        let Some(DeliverySettings::Email(s)) = DeliverySettings::parse("email", &e) else {
            panic!("email row not read")
        };
        assert_eq!(s.to, vec!["a@x.test"]);
        assert_eq!(DeliverySettings::parse("email", &e).unwrap().period_ms(), Some(600_000));
        let one_by_one = json!({"to": ["a@x.test"], "digest_seconds": 0, "subject_prefix": ""});
        assert_eq!(DeliverySettings::parse("email", &one_by_one).unwrap().period_ms(), None);
        let Some(DeliverySettings::Ftp(s)) = DeliverySettings::parse("ftp", &f) else {
            panic!("ftp row not read")
        };
        assert_eq!(s.password, "s3cret");
        assert_eq!(DeliverySettings::parse("ftp", &f).unwrap().period_ms(), Some(120_000));
        assert_eq!(DeliverySettings::parse("pull", &h), None);
        assert_eq!(DeliverySettings::parse("email", &h), None);
    }
}
