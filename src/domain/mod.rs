//! The product's own vocabulary: triggers, events and their validation,
//! destinations, credentials. Pure code: no I/O and no other module.

pub mod destination;
pub mod event;
pub mod keys;
pub mod time;
pub mod trigger;

pub use destination::{Destination, DestinationError, TriggerConfig};
pub use event::{FieldError, NewEvent, ValidationErrors};
pub use trigger::{Trigger, UnknownTrigger};
