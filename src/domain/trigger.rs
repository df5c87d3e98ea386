use std::fmt;
use std::str::FromStr;

/// The fifteen event kinds of SPEC §1, upper-case on every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    DeliveryStart,
    Delivery,
    Sent,
    Failed,
    Open,
    Click,
    Bounce,
    SoftBounce,
    Blocked,
    Complaint,
    OptIn,
    OptOut,
    Resubscribe,
    SmsOptOut,
    SmsFailed,
}

impl Trigger {
    pub const ALL: [Trigger; 15] = [
        Trigger::DeliveryStart,
        Trigger::Delivery,
        Trigger::Sent,
        Trigger::Failed,
        Trigger::Open,
        Trigger::Click,
        Trigger::Bounce,
        Trigger::SoftBounce,
        Trigger::Blocked,
        Trigger::Complaint,
        Trigger::OptIn,
        Trigger::OptOut,
        Trigger::Resubscribe,
        Trigger::SmsOptOut,
        Trigger::SmsFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::DeliveryStart => "DELIVERYSTART",
            Trigger::Delivery => "DELIVERY",
            Trigger::Sent => "SENT",
            Trigger::Failed => "FAILED",
            Trigger::Open => "OPEN",
            Trigger::Click => "CLICK",
            Trigger::Bounce => "BOUNCE",
            Trigger::SoftBounce => "SOFTBOUNCE",
            Trigger::Blocked => "BLOCKED",
            Trigger::Complaint => "COMPLAINT",
            Trigger::OptIn => "OPTIN",
            Trigger::OptOut => "OPTOUT",
            Trigger::Resubscribe => "RESUBSCRIBE",
            Trigger::SmsOptOut => "SMSOPTOUT",
            Trigger::SmsFailed => "SMSFAILED",
        }
    }

    /// Campaign-level triggers carry no recipient.
    pub fn needs_recipient(self) -> bool {
        !matches!(self, Trigger::DeliveryStart | Trigger::Delivery)
    }

    /// Parses a comma-separated list ("OPEN, click"), rejecting unknown names
    /// all at once so the caller can name every offender.
    pub fn parse_list(list: &str) -> Result<Vec<Trigger>, UnknownTrigger> {
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<Trigger>() {
                Ok(t) if !out.contains(&t) => out.push(t),
                Ok(_) => {}
                Err(_) => unknown.push(part.to_string()),
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(UnknownTrigger { names: unknown })
        }
    }

    pub fn valid_names() -> String {
        Trigger::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One or more names that are not triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTrigger {
    pub names: Vec<String>,
}

impl fmt::Display for UnknownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown trigger {}; valid triggers are {}",
            self.names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", "),
            Trigger::valid_names()
        )
    }
}

impl std::error::Error for UnknownTrigger {}

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    /// Case-insensitive on input; always upper-case on output.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .iter()
            .copied()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownTrigger {
                names: vec![s.to_string()],
            })
    }
}

impl serde::Serialize for Trigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Trigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Trigger {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Trigger::ALL.iter().map(|t| t.as_str())))
            .description(Some("Event kind; upper case on output, any case accepted on input"))
            .into()
    }
}

impl utoipa::ToSchema for Trigger {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_case_insensitively() {
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>().unwrap(), t);
            assert_eq!(t.as_str().to_lowercase().parse::<Trigger>().unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(Trigger::Click.to_string(), "CLICK");
    }

    #[test]
    fn list_names_every_unknown() {
        let err = Trigger::parse_list("OPEN,NOPE,click,ALSO").unwrap_err();
        assert_eq!(err.names, vec!["NOPE", "ALSO"]);
        assert!(err.to_string().contains("SMSFAILED"));
        assert_eq!(
            Trigger::parse_list(" OPEN , CLICK,OPEN").unwrap(),
            vec![Trigger::Open, Trigger::Click]
        );
    }
}
