//! Where the events of one trigger of one account go (SPEC §6).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// Queued for client pull (JSON, SOAP, PAINT). The default.
    #[default]
    Pull,
    Http,
    Email,
    Ftp,
    /// Kept in the history only.
    None,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Pull => "pull",
            Destination::Http => "http",
            Destination::Email => "email",
            Destination::Ftp => "ftp",
            Destination::None => "none",
        }
    }

    /// Destinations whose delivery this build implements. The others are
    /// refused at configuration time rather than accepted and dropped.
    pub fn is_available(self) -> bool {
        matches!(self, Destination::Pull | Destination::None)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Destination {
    type Err = DestinationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Destination::Pull),
            "http" => Ok(Destination::Http),
            "email" => Ok(Destination::Email),
            "ftp" => Ok(Destination::Ftp),
            "none" => Ok(Destination::None),
            other => Err(DestinationError::Unknown(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("unknown destination '{0}'; valid destinations are pull, http, email, ftp, none")]
    Unknown(String),
    #[error("destination '{0}' is not available in this version of eventd")]
    Unavailable(Destination),
    #[error("{0}")]
    Invalid(String),
}

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
    /// Validates a `PUT /v1/triggers/{T}` body.
    pub fn parse(body: &Value) -> Result<TriggerConfig, DestinationError> {
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
        Ok(TriggerConfig { destination, settings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
