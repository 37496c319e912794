//! Soft rules decide exactly as shadow rules (marking them is the policy's business): they
//! count what they allow, never deny, and report an over-limit request as `ShadowDenied`
//! without writing anything, whether the store works or fails closed.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, FailureMode, Limiter, Mode, Status};

#[test]
fn a_soft_rule_over_its_limit_passes_and_counts_nothing() {
    let mut soft = check("soft", limit(Algorithm::FixedWindow, 2, MINUTE, 2), "k", 1);
    soft.mode = Mode::Soft;
    assert!(!Mode::Soft.enforces() && !Mode::Shadow.enforces() && Mode::Enforce.enforces());
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    for expected_remaining in [1, 0] {
        let verdict = limiter.check(std::slice::from_ref(&soft), BASE, &mut store);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(verdict.outcomes[0].decision.remaining, expected_remaining);
    }
    let sets = store.calls().sets;
    for _ in 0..3 {
        let verdict = limiter.check(std::slice::from_ref(&soft), BASE + SECOND, &mut store);
        assert!(verdict.allowed, "a soft rule never denies");
        assert_eq!(verdict.outcomes[0].status, Status::ShadowDenied);
        assert_eq!(verdict.outcomes[0].decision.retry_after, MINUTE - SECOND);
    }
    assert_eq!(
        store.calls().sets,
        sets,
        "over-limit requests write nothing"
    );
}

#[test]
fn a_soft_rule_failing_closed_still_lets_the_request_through() {
    let mut soft = check("soft", limit(Algorithm::Gcra, 2, MINUTE, 2), "k", 1);
    soft.mode = Mode::Soft;
    soft.failure_mode = FailureMode::Closed;
    let verdict = Limiter::decide_all(std::slice::from_ref(&soft), &mut [], BASE);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].status, Status::ShadowDenied);
    assert!(verdict.outcomes[0].store_error.is_some());
}
