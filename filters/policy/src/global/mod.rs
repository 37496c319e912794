//! The global tier: rules whose counters live in the rate-limit service (`sluice-service`)
//! rather than in the proxy's shared data, so one count holds across every proxy.
//!
//! - [`GlobalConfig`]: the top-level `global` object (which service, how long to wait) and
//!   [`Scope`], a rule's `scope`.
//! - The native decide protocol, shared by the filter and the service: [`DecideRequest`] and
//!   [`DecideReply`] with their JSON encoding, hex keys ([`hex`]) and limit signatures
//!   ([`limit_text`]).
//! - The filter's side of a request with global rules ([`Policy::start`](crate::Policy::start)
//!   and [`Policy::finish`](crate::Policy::finish)): local rules first, one call for the
//!   global ones, all or nothing across both.
//! - Leases ([`LeaseConfig`], a rule's `lease`) and the lease protocol ([`LeaseRequest`],
//!   [`LeaseReply`], `POST /v1/lease`): a holder reserves a slice of a key's global quota and
//!   spends it locally.
//! - [`FailureLog`]: at most one log line per kind of call failure per interval.
//! - [`MemoryService`]: the service's side over states in memory, the reference the filter's
//!   tests run against.

mod assemble;
mod config;
pub(crate) mod exchange;
pub mod hex;
mod lease;
mod lease_wire;
pub mod limit_text;
mod log;
mod memory_service;
mod wire;

pub use assemble::{RuleKeys, failure_outcome, unasked};
pub use config::{
    DEFAULT_DOMAIN, DEFAULT_PATH, DEFAULT_TIMEOUT, GlobalConfig, MAX_TIMEOUT, MIN_TIMEOUT, Scope,
};
pub(crate) use config::{parse_global, parse_scope};
pub use exchange::{CallFailure, Finished, GlobalCall, Started};
pub(crate) use lease::parse_lease;
pub use lease::{
    AUTO_GROWTH_DENOMINATOR, AUTO_GROWTH_NUMERATOR, DEFAULT_LEASE_LIFETIME,
    DEFAULT_RENEW_AT_PERCENT, LeaseConfig, LeaseSize, MAX_RENEW_AT_PERCENT, MIN_LEASE_LIFETIME,
};
pub use lease_wire::{
    LeaseAcquire, LeaseAcquisition, LeaseGrant, LeaseItems, LeaseRefund, LeaseReply, LeaseRequest,
    LeaseReturn, LeaseReturned, MAX_LEASE_ITEMS,
};
pub use log::{FailureLog, LOG_INTERVAL};
pub use memory_service::MemoryService;
pub use wire::{
    DecideCheck, DecideOutcome, DecideReply, DecideRequest, MAX_BODY_BYTES, MAX_CHECKS, ReplyError,
    RequestError,
};
