//! Lost compare-and-swap races: retried (and counted) up to the limit, refunded so that a
//! request is counted once or not at all, then the rule's failure mode.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, FailureMode, Limiter, SetError, SlotStore, Status, StoreError};

#[test]
fn lost_races_are_retried_counted_and_the_request_is_spent_once() {
    for semantics in [Semantics::Envoy, Semantics::Strict] {
        let l = limit(Algorithm::Gcra, 10, MINUTE, 10);
        let checks = [check("a", l, "k", 1)];
        let mut store = MemoryStore::new(semantics);
        let mut limiter = Limiter::new(SEED, 8);
        limiter.prepare("a", &l, 1024, &mut store).unwrap();
        store.force_cas_mismatches("sluice/default/a/", 3);
        let verdict = limiter.check(&checks, BASE, &mut store);
        assert!(verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(verdict.outcomes[0].cas_retries, 3);
        assert_eq!(store.calls().cas_mismatches, 3);
        assert_eq!(remaining(&store, &checks[0], BASE), 9);
    }
}

#[test]
fn a_race_lost_by_a_later_rule_refunds_the_earlier_one() {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let checks = [check("a", l, "k", 2), check("b", l, "k", 2)];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    store.force_cas_mismatches("sluice/default/b/", 1);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].cas_retries, 0);
    assert_eq!(verdict.outcomes[1].cas_retries, 1);
    // a written, refunded, written again: three sets; b: a lost one and a good one.
    assert_eq!(store.calls().sets, 5);
    assert_eq!(remaining(&store, &checks[0], BASE), 8);
    assert_eq!(remaining(&store, &checks[1], BASE), 8);
}

#[test]
fn running_out_of_retries_fails_open_without_counting_that_rule() {
    let l = limit(Algorithm::SlidingWindow, 10, MINUTE, 10);
    let checks = [check("a", l, "k", 1), check("b", l, "k", 1)];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 3);
    store.force_cas_mismatches("sluice/default/b/", 100);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].status, Status::Allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedOpen);
    assert_eq!(
        verdict.outcomes[1].store_error,
        Some(StoreError::Contention)
    );
    // Three retries, so four attempts, each lost.
    assert_eq!(verdict.outcomes[1].cas_retries, 4);
    assert_eq!(store.calls().cas_mismatches, 4);
    assert_eq!(remaining(&store, &checks[0], BASE), 9);
    assert_eq!(remaining(&store, &checks[1], BASE), 10);
}

#[test]
fn running_out_of_retries_fails_closed_and_refunds_the_other_rules() {
    let l = limit(Algorithm::SlidingLog, 10, MINUTE, 10);
    let mut checks = [check("a", l, "k", 1), check("b", l, "k", 1)];
    checks[1].failure_mode = FailureMode::Closed;
    let mut store = MemoryStore::new(Semantics::Strict);
    let mut limiter = Limiter::new(SEED, 2);
    store.force_cas_mismatches("sluice/default/b/", 100);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedClosed);
    assert_eq!(
        verdict.outcomes[1].store_error,
        Some(StoreError::Contention)
    );
    assert_eq!(verdict.outcomes[1].cas_retries, 3);
    assert_eq!(remaining(&store, &checks[0], BASE), 10);
}

#[test]
fn zero_retries_gives_up_at_the_first_lost_race() {
    let l = limit(Algorithm::Gcra, 10, MINUTE, 10);
    let checks = [check("a", l, "k", 1)];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 0);
    store.force_cas_mismatches("sluice/default/a/", 1);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert_eq!(verdict.outcomes[0].status, Status::FailedOpen);
    assert_eq!(verdict.outcomes[0].cas_retries, 1);
    assert!(limiter.check(&checks, BASE, &mut store).outcomes[0].status == Status::Allowed);
}

/// A store shared by two VMs, where the other VM's whole request runs between this VM's read
/// and write of the key (the interleaving CAS exists for).
struct Interleaved<'s> {
    store: &'s mut MemoryStore,
    other: Option<(Limiter, Vec<sluice_core::Check<'static>>)>,
    other_allowed: Option<bool>,
}

impl SlotStore for Interleaved<'_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        self.store.get(key, value)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if let Some((mut limiter, checks)) = self.other.take() {
            self.other_allowed = Some(limiter.check(&checks, BASE, self.store).allowed);
        }
        self.store.set(key, value, cas)
    }
}

#[test]
fn two_vms_racing_for_the_last_unit_let_exactly_one_request_through() {
    for semantics in [Semantics::Envoy, Semantics::Strict] {
        let l = limit(Algorithm::Gcra, 3, MINUTE, 3);
        let checks = vec![check("a", l, "k", 1)];
        let mut store = MemoryStore::new(semantics);
        let mut limiter = Limiter::new(SEED, 8);
        limiter.prepare("a", &l, 1024, &mut store).unwrap();
        assert!(limiter.check(&checks, BASE, &mut store).allowed);
        assert!(limiter.check(&checks, BASE, &mut store).allowed);
        let mut shared = Interleaved {
            store: &mut store,
            other: Some((Limiter::new(SEED, 8), checks.clone())),
            other_allowed: None,
        };
        let verdict = limiter.check(&checks, BASE, &mut shared);
        assert_eq!(shared.other_allowed, Some(true), "the other VM wrote first");
        assert!(!verdict.allowed, "the last unit went to the other VM");
        assert_eq!(verdict.outcomes[0].cas_retries, 1);
        assert_eq!(remaining(&store, &checks[0], BASE), 0);
    }
}

#[test]
fn a_racing_write_to_another_key_in_the_bucket_is_kept() {
    // One bucket (max_keys ≤ 4): two keys share it, so their writes race.
    let l = limit(Algorithm::FixedWindow, 5, MINUTE, 5);
    let mut mine = check("a", l, "mine", 1);
    let mut theirs = check("a", l, "theirs", 1);
    mine.max_keys = 4;
    theirs.max_keys = 4;
    assert_eq!(bucket_key(&mine), bucket_key(&theirs));
    let mut store = MemoryStore::new(Semantics::Strict);
    let mut limiter = Limiter::new(SEED, 8);
    limiter.prepare("a", &l, 4, &mut store).unwrap();
    let mut shared = Interleaved {
        store: &mut store,
        other: Some((Limiter::new(SEED, 8), vec![theirs.clone()])),
        other_allowed: None,
    };
    let verdict = limiter.check(std::slice::from_ref(&mine), BASE, &mut shared);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].cas_retries, 1);
    assert_eq!(remaining(&store, &mine, BASE), 4);
    assert_eq!(remaining(&store, &theirs, BASE), 4);
}
