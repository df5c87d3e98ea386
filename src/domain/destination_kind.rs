//! What every destination's settings module shares: the destination kinds
//! and the validation error, with its two helpers. Below `destination.rs`
//! and the per-transport modules (`http.rs`, `email.rs`, `ftp.rs`), which
//! all import it.

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
        true
    }

    /// Destinations delivered by the delivery worker (one pipeline, one
    /// transport each).
    pub fn is_delivered(self) -> bool {
        matches!(self, Destination::Http | Destination::Email | Destination::Ftp)
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

/// A validation error with this message.
pub(crate) fn invalid(msg: impl Into<String>) -> DestinationError {
    DestinationError::Invalid(msg.into())
}

/// Refuses fields other than `valid` in the `section` object.
pub(crate) fn unknown_fields(
    obj: &serde_json::Map<String, Value>,
    section: &str,
    valid: &[&str],
) -> Result<(), DestinationError> {
    match obj.keys().find(|k| !valid.contains(&k.as_str())) {
        Some(key) => Err(invalid(format!(
            "unknown field '{section}.{key}'; valid fields are {}",
            valid.join(", ")
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_which_the_worker_delivers() {
        let all = [
            Destination::Pull,
            Destination::Http,
            Destination::Email,
            Destination::Ftp,
            Destination::None,
        ];
        let names: Vec<String> = all.iter().map(|d| d.to_string()).collect();
        assert_eq!(names, ["pull", "http", "email", "ftp", "none"]);
        for d in all {
            assert_eq!(d.to_string().parse::<Destination>(), Ok(d));
        }
        let delivered: Vec<Destination> = all.into_iter().filter(|d| d.is_delivered()).collect();
        assert_eq!(delivered, [Destination::Http, Destination::Email, Destination::Ftp]);
    }
}
