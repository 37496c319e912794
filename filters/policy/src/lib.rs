//! sluice's policy: the JSON configuration, parsed and compiled into types that cannot be
//! invalid; how a request maps to the rules that apply and their keys; how decisions become a
//! response. Shared by the proxy-wasm filter and the edge worker, so both decide alike.
//!
//! - [`Policy::from_json`] compiles a configuration (reference: `CONFIG.md`), or explains in
//!   one line ([`ConfigError`]) which rule and field is wrong.
//! - [`Policy::evaluate`] turns a [`Request`] into [`Evaluation::Exempt`] or the core's
//!   [`Check`](sluice_core::Check)s of the applying rules.
//! - [`Policy::handle`] does the whole request: evaluate, check with the core's
//!   [`Limiter`](sluice_core::Limiter) over a store, and render the [`Response`].
//!
//! Nothing here reads a clock or does I/O: time, the request and the store come in.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod attributes;
pub mod client_ip;
pub mod concurrency;
mod config;
pub mod cost;
mod duration;
pub mod error;
pub mod exempt;
pub mod global;
mod json;
pub mod jwt;
pub mod key;
pub mod matching;
pub mod notice;
pub mod overrides;
mod policy;
pub mod request;
pub mod response;
pub mod shaping;
#[cfg(test)]
mod test_request;
pub mod tier;
mod uri;
pub mod warning;

pub use client_ip::ClientIpSource;
pub use concurrency::TakenSlots;
pub use config::{
    DEFAULT_CAS_RETRIES, DEFAULT_MAX_KEYS, MAX_CAS_RETRIES, MAX_KEYS, MAX_NAME_LEN,
    MAX_RULE_STORE_BYTES, MAX_SLIDING_LOG_REQUESTS,
};
pub use cost::CostSpec;
pub use error::{ConfigError, Problem, RuleRef};
pub use exempt::Exemptions;
pub use global::{GlobalConfig, Scope};
pub use jwt::{ClaimPath, JwtSource};
pub use key::{KeyDisplay, KeyPart, KeySpec, WhenKeyMissing};
pub use matching::{Condition, HostPattern, Match};
pub use notice::Notice;
pub use overrides::Overrides;
pub use policy::{AppliedRules, Evaluation, Handled, Policy, RequestBuffers, Rule};
pub use request::{OwnedRequest, Request};
pub use response::{HeaderStyle, Response, ResponseConfig};
pub use shaping::{HeldRequest, Shaping};
pub use tier::{LimitKind, NamedLimit, TierSource, Tiers};
pub use warning::Warning;
