//! The sluice limiter core.
//!
//! `no_std` with `alloc`: no I/O, no clock, no randomness of its own. Time (`now`, absolute
//! nanoseconds since the Unix epoch), the counter store and the hash seed come in as arguments,
//! so the same state can be shared by many proxy-wasm VMs or kept in a Durable Object, and every
//! behaviour is testable with a fake clock.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod algorithm;
pub mod decision;
pub mod limiter;
pub mod mode;
pub mod quota;
pub mod store;
pub mod time;

pub use algorithm::{Algorithm, Limit};
pub use decision::Decision;
pub use limiter::{Check, RuleOutcome, Seed, Status, Verdict};
pub use mode::{FailureMode, Mode};
pub use quota::{Quota, QuotaError};
pub use store::{SetError, SlotStore, StoreError};
pub use time::Nanos;
