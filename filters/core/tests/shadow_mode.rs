//! Shadow rules count what they allow, never deny, and report what they would have denied.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Limiter, Mode, Status};

#[test]
fn a_shadow_rule_that_would_deny_lets_the_request_through_and_counts_nothing() {
    let l = limit(Algorithm::FixedWindow, 2, MINUTE, 2);
    let mut shadow = check("trial", l, "k", 1);
    shadow.mode = Mode::Shadow;
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    for expected_remaining in [1, 0] {
        let verdict = limiter.check(std::slice::from_ref(&shadow), BASE, &mut store);
        assert!(verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(verdict.outcomes[0].decision.remaining, expected_remaining);
    }
    let sets = store.calls().sets;
    for _ in 0..5 {
        let verdict = limiter.check(std::slice::from_ref(&shadow), BASE + SECOND, &mut store);
        assert!(verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::ShadowDenied);
        assert!(!verdict.outcomes[0].decision.allowed);
        assert_eq!(verdict.outcomes[0].decision.retry_after, MINUTE - SECOND);
    }
    assert_eq!(store.calls().sets, sets, "shadow denials write nothing");
}

#[test]
fn a_shadow_denial_does_not_stop_enforcing_rules_from_counting() {
    let tight = limit(Algorithm::Gcra, 1, MINUTE, 1);
    let loose = limit(Algorithm::Gcra, 10, MINUTE, 10);
    let mut shadow = check("tight", tight, "k", 1);
    shadow.mode = Mode::Shadow;
    let checks = [shadow, check("loose", loose, "k", 1)];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    for n in 1..=5u64 {
        let verdict = limiter.check(&checks, BASE, &mut store);
        assert!(verdict.allowed);
        let expected = if n == 1 {
            Status::Allowed
        } else {
            Status::ShadowDenied
        };
        assert_eq!(verdict.outcomes[0].status, expected);
        assert_eq!(verdict.outcomes[1].decision.remaining, 10 - n);
    }
}

#[test]
fn an_enforcing_denial_leaves_a_shadow_rule_unspent() {
    let mut shadow = check("trial", limit(Algorithm::Gcra, 10, MINUTE, 10), "k", 1);
    shadow.mode = Mode::Shadow;
    let checks = [
        shadow,
        check("hard", limit(Algorithm::Gcra, 1, MINUTE, 1), "k", 1),
    ];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    assert!(!limiter.check(&checks, BASE, &mut store).allowed);
    assert_eq!(remaining(&store, &checks[0], BASE), 9);
}
