//! Soft limits: which passed requests are marked, and the warning header that marks them.
//!
//! A request is marked by a rule when it passes and
//!
//! - the rule is `"mode": "soft"` and would have denied it (it passed uncounted, as a shadow
//!   rule's would), or
//! - the rule has `warn_at` (enforcing or soft) and allowed it leaving at most
//!   `warn_at.remaining` units.
//!
//! A rule whose counter store failed is never marking (its state is unknown), and a denied
//! request is not marked (its denial says more).
//!
//! # The header's value
//!
//! A list in the syntax of `RateLimit` (RFC 8941 structured fields), one item per marking rule
//! in rule order: `"<name>";reason=<reason>;r=<remaining>`, where `<name>` is the rule's check
//! name (`<rule>`, or `<rule>:<tier>` / `<rule>:<override>`, as in `RateLimit`), `<reason>` is
//! `exceeded` (a soft rule is over its limit; `r` is 0) or `low` (at or below `warn_at`; `r`
//! is what is left after this request). For example
//! `"per-key";reason=exceeded;r=0, "daily";reason=low;r=3`.

use core::fmt::Write as _;

use alloc::string::String;
use sluice_core::{Check, Mode, RuleOutcome, Status, Verdict};

/// `response.warning_header` when not given.
pub const DEFAULT_WARNING_HEADER: &str = "ratelimit-warning";

/// The mark on a passed request: one header, on the response to the client and on the
/// request to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning<'p> {
    /// The header's name (`response.warning_header`, lowercase).
    pub name: &'p str,
    /// Its value (see the module docs).
    pub value: String,
}

/// Why a rule marked a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A soft rule is over its limit: an enforcing rule would have denied the request.
    Exceeded,
    /// The request left at most `warn_at.remaining` units.
    Low,
}

impl Reason {
    /// The reason as the header writes it.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Exceeded => "exceeded",
            Reason::Low => "low",
        }
    }
}

/// Why `check`'s rule marks a passed request given its `outcome`, if it does; `warn_at` is
/// the rule's `warn_at.remaining`.
pub fn reason(check: &Check<'_>, outcome: &RuleOutcome, warn_at: Option<u64>) -> Option<Reason> {
    if outcome.store_error.is_some() {
        return None;
    }
    match (check.mode, outcome.status) {
        (Mode::Soft, Status::ShadowDenied) => Some(Reason::Exceeded),
        (Mode::Enforce | Mode::Soft, Status::Allowed)
            if warn_at.is_some_and(|n| outcome.decision.remaining <= n) =>
        {
            Some(Reason::Low)
        }
        _ => None,
    }
}

/// The warning header's value for a passed request, if a rule marks it.
pub(crate) fn value(
    checks: &[Check<'_>],
    verdict: &Verdict,
    warn_at: &dyn Fn(&Check<'_>) -> Option<u64>,
) -> Option<String> {
    if !verdict.allowed {
        return None;
    }
    let mut value = String::new();
    for (check, outcome) in checks.iter().zip(&verdict.outcomes) {
        let Some(reason) = reason(check, outcome, warn_at(check)) else {
            continue;
        };
        if !value.is_empty() {
            value.push_str(", ");
        }
        let remaining = match reason {
            Reason::Exceeded => 0,
            Reason::Low => outcome.decision.remaining,
        };
        let _ = write!(
            value,
            "\"{}\";reason={};r={remaining}",
            check.rule,
            reason.name()
        );
    }
    (!value.is_empty()).then_some(value)
}
