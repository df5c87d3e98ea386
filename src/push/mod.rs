//! The HTTP push delivery worker (SPEC §6): claims due deliveries with
//! leases, sends them (bounded concurrency per destination and overall),
//! writes results back in batches, retries on a schedule, suspends failing
//! destinations. Runs inside `serve` or alone as `eventd worker`, any number
//! of times on any number of nodes.

mod completer;
pub mod lease;
mod request;
pub mod schedule;
pub mod worker;

pub use worker::{PushWorker, WorkerConfig};
