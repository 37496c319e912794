//! When the store fails, each rule's failure mode decides, and a denial still consumes nothing.

mod common;

use common::*;
use sluice_core::limiter::FAILURE_RETRY_AFTER;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, FailureMode, Limiter, Mode, Status, StoreError};

fn rules() -> [sluice_core::Check<'static>; 2] {
    let l = limit(Algorithm::Gcra, 10, MINUTE, 10);
    [check("a", l, "k", 1), check("b", l, "k", 1)]
}

#[test]
fn a_failed_read_fails_open_and_reports_the_error() {
    let checks = rules();
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    store.set_outage(Some(StoreError::Host(10)));
    let verdict = limiter.check(&checks, BASE, &mut store);
    store.set_outage(None);
    assert!(verdict.allowed);
    for outcome in &verdict.outcomes {
        assert_eq!(outcome.status, Status::FailedOpen);
        assert_eq!(outcome.store_error, Some(StoreError::Host(10)));
        assert!(outcome.decision.allowed);
        assert_eq!(outcome.decision.limit, 10);
        assert_eq!(outcome.decision.remaining, 0);
    }
    assert!(store.is_empty());
}

#[test]
fn a_failed_read_fails_closed_and_the_other_rule_is_not_spent() {
    let mut checks = rules();
    checks[1].failure_mode = FailureMode::Closed;
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    limiter
        .prepare("a", &checks[0].limit, 1024, &mut store)
        .unwrap();
    // The first get (rule a) works, the second (rule b) fails.
    let mut flaky = FailNth {
        inner: &mut store,
        fail_get: 2,
        gets: 0,
    };
    let verdict = limiter.check(&checks, BASE, &mut flaky);
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes[0].status, Status::Allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedClosed);
    assert_eq!(
        verdict.outcomes[1].store_error,
        Some(StoreError::Unavailable)
    );
    let decision = verdict.outcomes[1].decision;
    assert!(!decision.allowed);
    assert_eq!(decision.remaining, 0);
    assert_eq!(decision.retry_after, FAILURE_RETRY_AFTER);
    assert_eq!(remaining(&store, &checks[0], BASE), 10);
}

#[test]
fn a_failed_write_fails_open_and_the_other_rule_still_counts() {
    let checks = rules();
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    // Rule a's write succeeds, rule b's fails.
    let mut flaky = FailNthSet {
        inner: &mut store,
        fail_set: 2,
        sets: 0,
    };
    let verdict = limiter.check(&checks, BASE, &mut flaky);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].status, Status::Allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedOpen);
    assert_eq!(verdict.outcomes[1].store_error, Some(StoreError::Host(10)));
    // The failed-open rule keeps the decision it had made.
    assert_eq!(verdict.outcomes[1].decision.remaining, 9);
    assert_eq!(remaining(&store, &checks[0], BASE), 9);
    assert_eq!(remaining(&store, &checks[1], BASE), 10);
}

#[test]
fn a_failed_write_fails_closed_and_refunds_what_was_written() {
    let mut checks = rules();
    checks[1].failure_mode = FailureMode::Closed;
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    let mut flaky = FailNthSet {
        inner: &mut store,
        fail_set: 2,
        sets: 0,
    };
    let verdict = limiter.check(&checks, BASE, &mut flaky);
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedClosed);
    // Rule a was written, then refunded: still one spent, not two.
    assert_eq!(remaining(&store, &checks[0], BASE), 9);
    assert_eq!(remaining(&store, &checks[1], BASE), 9);
}

#[test]
fn a_shadow_rule_failing_closed_reports_a_shadow_denial_and_passes() {
    let mut checks = rules();
    checks[0].mode = Mode::Shadow;
    checks[0].failure_mode = FailureMode::Closed;
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    store.set_outage(Some(StoreError::Unavailable));
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].status, Status::ShadowDenied);
    assert_eq!(
        verdict.outcomes[0].store_error,
        Some(StoreError::Unavailable)
    );
    assert_eq!(verdict.outcomes[1].status, Status::FailedOpen);
}

#[test]
fn the_store_recovering_resumes_counting() {
    let checks = rules();
    let mut store = MemoryStore::new(Semantics::Strict);
    let mut limiter = Limiter::new(SEED, 8);
    store.fail_gets(2, StoreError::Host(10));
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(verdict.outcomes.iter().all(|o| o.status == Status::Allowed));
    assert_eq!(remaining(&store, &checks[0], BASE), 9);
}

/// Fails the `fail_get`-th get (1-based) with `Unavailable`.
struct FailNth<'s> {
    inner: &'s mut MemoryStore,
    fail_get: u32,
    gets: u32,
}

impl sluice_core::SlotStore for FailNth<'_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        self.gets += 1;
        if self.gets == self.fail_get {
            return Err(StoreError::Unavailable);
        }
        self.inner.get(key, value)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), sluice_core::SetError> {
        self.inner.set(key, value, cas)
    }
}

/// Fails the `fail_set`-th set (1-based) with host status 10.
struct FailNthSet<'s> {
    inner: &'s mut MemoryStore,
    fail_set: u32,
    sets: u32,
}

impl sluice_core::SlotStore for FailNthSet<'_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        self.inner.get(key, value)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), sluice_core::SetError> {
        self.sets += 1;
        if self.sets == self.fail_set {
            return Err(sluice_core::SetError::Store(StoreError::Host(10)));
        }
        self.inner.set(key, value, cas)
    }
}
