//! Several rules, all of which must pass: check every rule's counter first, then commit, over a
//! `SlotStore` with bounded CAS retries.

use alloc::vec::Vec;

use crate::algorithm::Limit;
use crate::decision::Decision;
use crate::mode::{FailureMode, Mode};
use crate::store::StoreError;

/// The key of the keyed hash that places keys in the table. Random per deployment, so that
/// nobody who knows the code can aim many keys at one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub k0: u64,
    pub k1: u64,
}

/// One rule to check for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<'a> {
    /// The rule's name; it namespaces the rule's table in the store.
    pub rule: &'a str,
    pub limit: Limit,
    /// The most distinct keys the rule's table holds (its memory ceiling).
    pub max_keys: u32,
    /// The request's key for this rule, as built from the rule's key parts.
    pub key: Vec<u8>,
    /// Units this request spends.
    pub cost: u64,
    pub mode: Mode,
    pub failure_mode: FailureMode,
}

/// What happened to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Allowed,
    Denied,
    /// A shadow rule that would have denied: the request passes.
    ShadowDenied,
    /// The store failed and the rule's failure mode is open: the request passes.
    FailedOpen,
    /// The store failed and the rule's failure mode is closed: the request is denied.
    FailedClosed,
}

/// The result of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOutcome {
    pub status: Status,
    pub decision: Decision,
    /// CAS conflicts met before the rule's counter was committed (or gave up).
    pub cas_retries: u32,
    /// Set when the store failed for this rule.
    pub store_error: Option<StoreError>,
}

/// The result of every rule for one request, in the order of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every enforcing rule allowed the request (shadow rules never deny).
    pub allowed: bool,
    pub outcomes: Vec<RuleOutcome>,
}
