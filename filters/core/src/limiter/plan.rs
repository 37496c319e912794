//! Deciding every rule of a request from the states read: the part of check-then-commit that
//! the store-backed limiter and the in-memory one share.

use super::{Check, RuleOutcome, Status};
use crate::decision::Decision;
use crate::mode::{FailureMode, Mode};
use crate::state::State;
use crate::store::StoreError;
use crate::time::{NANOS_PER_SEC, Nanos};

/// `retry_after` (and the least `reset_after`) of a rule that failed closed: the store is
/// expected back soon, so clients are told to come back in a second rather than after a
/// whole period.
pub const FAILURE_RETRY_AFTER: Nanos = NANOS_PER_SEC;

/// Decides one rule from its stored state (or the error reading it). Returns the outcome and,
/// if the rule allows the request and spends something, the state to commit.
pub(super) fn decide_rule(
    check: &Check<'_>,
    prior: Result<Option<&State>, StoreError>,
    now: Nanos,
) -> (RuleOutcome, Option<State>) {
    let prev = match prior {
        Ok(prev) => prev,
        Err(error) => return (failed(check, None, error, 0), None),
    };
    let (decision, next) = check.limit.decide(prev, now, check.cost);
    let status = match (decision.allowed, check.mode) {
        (true, _) => Status::Allowed,
        (false, Mode::Enforce) => Status::Denied,
        (false, Mode::Shadow | Mode::Soft) => Status::ShadowDenied,
    };
    let commit = (decision.allowed && check.cost > 0).then_some(next);
    let outcome = RuleOutcome {
        status,
        decision,
        cas_retries: 0,
        store_error: None,
    };
    (outcome, commit)
}

/// The outcome of a rule whose counter could not be read or written: its failure mode
/// decides. `known` is the decision made before the failure, if any. A shadow rule never
/// denies (nor does a soft one): failing closed, it reports `ShadowDenied`.
pub(super) fn failed(
    check: &Check<'_>,
    known: Option<Decision>,
    error: StoreError,
    cas_retries: u32,
) -> RuleOutcome {
    let limit = check.limit.quota.limit();
    let (status, decision) = match check.failure_mode {
        FailureMode::Open => (
            Status::FailedOpen,
            known.unwrap_or(Decision {
                allowed: true,
                limit,
                remaining: 0,
                reset_after: 0,
                retry_after: 0,
                delay: 0,
            }),
        ),
        FailureMode::Closed => {
            let status = match check.mode {
                Mode::Enforce => Status::FailedClosed,
                Mode::Shadow | Mode::Soft => Status::ShadowDenied,
            };
            let reset_after = known.map_or(0, |d| d.reset_after).max(FAILURE_RETRY_AFTER);
            let decision = Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after,
                retry_after: FAILURE_RETRY_AFTER,
                delay: 0,
            };
            (status, decision)
        }
    };
    RuleOutcome {
        status,
        decision,
        cas_retries,
        store_error: Some(error),
    }
}

/// The request passes unless an enforcing rule denied it or failed closed.
pub(super) fn request_allowed(outcomes: &[RuleOutcome]) -> bool {
    !outcomes
        .iter()
        .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed))
}
