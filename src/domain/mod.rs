//! The product's own vocabulary: triggers, events and their validation,
//! destinations, credentials. Pure code: no I/O and no other module.

pub mod destination;
pub mod event;
pub mod keys;
pub mod signing;
pub mod time;
pub mod trigger;

pub use destination::{BodyFormat, Destination, DestinationError, HttpMethod, HttpSettings, TriggerConfig};
pub use event::{FieldError, NewEvent, ValidationErrors};
pub use trigger::{Trigger, UnknownTrigger};
