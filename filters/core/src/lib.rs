//! The sluice limiter core.
//!
//! `no_std` with `alloc`: no I/O, no clock, no randomness of its own. Time (`now`, absolute
//! nanoseconds since the Unix epoch), the counter store and the hash seed come in as arguments,
//! so the same state can be shared by many proxy-wasm VMs or kept in a Durable Object, and every
//! behaviour is testable with a fake clock.
//!
//! - [`algorithm`]: GCRA, fixed window, sliding window counter and sliding log, each a pure
//!   function from (previous state, now, cost, quota) to (decision, new state).
//! - [`state`]: the per-key state and its versioned byte encoding.
//! - [`table`]: the bounded table of store keys a rule's states live in, so memory stays
//!   bounded however many distinct keys clients send.
//! - [`shm_zone`]: the ngx_wasm_module shared-memory zone size a set of tables needs.
//! - [`grant`]: leases, a slice of a key's quota granted at once and spent later.
//! - [`limiter`]: check-then-commit across all of a request's rules over a CAS store, and the
//!   same over in-memory states.
//! - [`store`] and [`memory_store`]: the store interface, and an in-memory store that behaves
//!   like either proxy-wasm host.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod algorithm;
pub mod decision;
mod encoding;
pub mod grant;
pub mod limiter;
pub mod memory_store;
pub mod mode;
pub mod quota;
pub mod shm_zone;
pub mod state;
pub mod store;
pub mod table;
pub mod time;

pub use algorithm::{Algorithm, Limit};
pub use decision::Decision;
pub use grant::Grant;
pub use limiter::{Check, Limiter, Released, RuleOutcome, Seed, Status, Verdict};
pub use memory_store::{MemoryStore, Semantics};
pub use mode::{FailureMode, Mode};
pub use quota::{Quota, QuotaError};
pub use state::{State, StateError};
pub use store::{SetError, SlotStore, StoreError};
pub use table::{RuleTable, TableNames, TableSpec};
pub use time::Nanos;
