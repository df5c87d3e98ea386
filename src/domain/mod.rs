//! The product's own vocabulary: triggers, events and their validation,
//! destinations, credentials. Pure code: no I/O and no other module.

pub mod destination;
mod destination_kind;
pub mod email;
pub mod event;
pub mod export;
pub mod ftp;
pub mod http;
pub mod keys;
pub mod public_id;
pub mod signing;
pub mod time;
pub mod trigger;

pub use destination::{
    BodyFormat, DeliverySettings, Destination, DestinationError, HttpMethod, HttpSettings, TriggerConfig,
};
pub use email::EmailSettings;
pub use event::{FieldError, NewEvent, ValidationErrors};
pub use ftp::{FileFormat, FtpSettings, FtpTls};
pub use trigger::{Trigger, UnknownTrigger};
