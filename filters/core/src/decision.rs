//! What a limiter answers for one request and one rule.

use crate::time::Nanos;

/// The outcome of one rule for one request. Being limited is a value, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may pass (as far as this rule is concerned).
    pub allowed: bool,
    /// The quota's limit (units per period), as advertised in rate-limit headers.
    pub limit: u64,
    /// Units left after this request (0 when denied).
    pub remaining: u64,
    /// Time until the key is back to its full quota, as if it spent nothing from now on (fixed
    /// window: until the window ends; 0 when nothing is spent).
    pub reset_after: Nanos,
    /// When denied: time until a request of the same cost would be allowed. 0 when allowed.
    pub retry_after: Nanos,
    /// When allowed: how long the request must be held before it goes on (a GCRA rule with a
    /// delay allowance, see [`crate::Limit::with_max_delay`]). 0 when it goes on at once and
    /// when denied.
    pub delay: Nanos,
}
