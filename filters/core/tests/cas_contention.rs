//! Lost compare-and-swap races: retried (and counted) up to the limit, refunded so that a
//! request is counted once or not at all; once the retries run out, decided on the last state
//! read (a spent key denies), and only an allow that cannot be written takes the rule's
//! failure mode.

mod common;

use std::cell::RefCell;

use common::*;
use proptest::prelude::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{
    Algorithm, Check, FailureMode, Limiter, SetError, SlotStore, Status, StoreError,
};

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

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

#[test]
fn running_out_of_retries_on_a_key_the_winner_spent_denies() {
    for semantics in [Semantics::Envoy, Semantics::Strict] {
        for algorithm in ALGORITHMS {
            let l = limit(algorithm, 3, MINUTE, 3);
            let checks = vec![check("a", l, "k", 1)];
            let mut store = MemoryStore::new(semantics);
            let mut limiter = Limiter::new(SEED, 0);
            limiter.prepare("a", &l, 1024, &mut store).unwrap();
            assert!(limiter.check(&checks, BASE, &mut store).allowed);
            assert!(limiter.check(&checks, BASE, &mut store).allowed);
            // Our read sees one unit left; the other VM takes it before our write.
            let mut shared = Interleaved {
                store: &mut store,
                other: Some((Limiter::new(SEED, 0), checks.clone())),
                other_allowed: None,
            };
            let verdict = limiter.check(&checks, BASE, &mut shared);
            let what = format!("{algorithm:?} {semantics:?}");
            assert_eq!(shared.other_allowed, Some(true), "{what}");
            // Failing open here would let a fourth request through a limit of 3.
            assert!(!verdict.allowed, "{what}");
            assert_eq!(verdict.outcomes[0].status, Status::Denied, "{what}");
            assert_eq!(verdict.outcomes[0].store_error, None, "{what}");
            assert_eq!(verdict.outcomes[0].cas_retries, 1, "{what}");
            assert!(verdict.outcomes[0].decision.retry_after > 0, "{what}");
            assert_eq!(remaining(&store, &checks[0], BASE), 0, "{what}");
        }
    }
}

#[test]
fn a_later_rule_spent_by_the_winner_denies_and_refunds_the_earlier_one() {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let tight = limit(Algorithm::FixedWindow, 1, MINUTE, 1);
    let checks = vec![check("a", l, "k", 1), check("b", tight, "k", 1)];
    let mut store = MemoryStore::new(Semantics::Strict);
    let mut limiter = Limiter::new(SEED, 0);
    limiter.prepare("a", &l, 1024, &mut store).unwrap();
    limiter.prepare("b", &tight, 1024, &mut store).unwrap();
    // The other VM spends b's only unit while we write a.
    let mut shared = Interleaved {
        store: &mut store,
        other: Some((Limiter::new(SEED, 0), vec![checks[1].clone()])),
        other_allowed: None,
    };
    let verdict = limiter.check(&checks, BASE, &mut shared);
    assert_eq!(shared.other_allowed, Some(true));
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes[1].status, Status::Denied);
    assert_eq!(verdict.outcomes[1].store_error, None);
    assert_eq!(remaining(&store, &checks[0], BASE), 10, "a is refunded");
    assert_eq!(remaining(&store, &checks[1], BASE), 0);
}

#[test]
fn running_out_of_retries_with_room_left_still_takes_the_failure_mode() {
    for failure_mode in [FailureMode::Open, FailureMode::Closed] {
        let l = limit(Algorithm::Gcra, 10, MINUTE, 10);
        let mut checks = [check("a", l, "k", 1)];
        checks[0].failure_mode = failure_mode;
        let mut store = MemoryStore::new(Semantics::Envoy);
        let mut limiter = Limiter::new(SEED, 1);
        limiter.prepare("a", &l, 1024, &mut store).unwrap();
        store.force_cas_mismatches("sluice/default/a/", 2);
        let verdict = limiter.check(&checks, BASE, &mut store);
        let outcome = verdict.outcomes[0];
        assert_eq!(verdict.allowed, failure_mode == FailureMode::Open);
        assert_eq!(outcome.store_error, Some(StoreError::Contention));
        assert_eq!(outcome.cas_retries, 2);
        if failure_mode == FailureMode::Open {
            // The headers come from the last read: 10 left, this request not counted.
            assert_eq!(outcome.status, Status::FailedOpen);
            assert_eq!(outcome.decision.remaining, 9);
        }
        assert_eq!(remaining(&store, &checks[0], BASE), 10);
    }
}

/// Many requests for one hot key, each on its own VM, interleaved by a schedule: at each write,
/// the schedule may run another whole request first (which may itself be interrupted the same
/// way), so a request can lose any number of races in a row.
struct Contest<'c> {
    store: RefCell<MemoryStore>,
    check: Check<'c>,
    cas_retries: u32,
    /// One bit per write: run the next request before it.
    schedule: RefCell<std::vec::IntoIter<bool>>,
    requests_left: RefCell<u32>,
    finished: RefCell<Vec<Finished>>,
}

/// A request of the contest, once decided.
struct Finished {
    status: Status,
    /// What the key had left at the request's last read of it.
    remaining_at_last_read: u64,
    /// What the key had left just after the request last lost a race (`u64::MAX` if none).
    remaining_after_lost_race: u64,
}

/// One request's view of the contest's store.
struct Turn<'t, 'c> {
    contest: &'t Contest<'c>,
    remaining_at_last_read: u64,
    /// What the key had left just after this request last lost a race.
    remaining_after_lost_race: u64,
}

impl Contest<'_> {
    fn run_next(&self) {
        {
            let mut left = self.requests_left.borrow_mut();
            if *left == 0 {
                return;
            }
            *left -= 1;
        }
        let mut turn = Turn {
            contest: self,
            remaining_at_last_read: u64::MAX,
            remaining_after_lost_race: u64::MAX,
        };
        let mut limiter = Limiter::new(SEED, self.cas_retries);
        let verdict = limiter.check(std::slice::from_ref(&self.check), BASE, &mut turn);
        self.finished.borrow_mut().push(Finished {
            status: verdict.outcomes[0].status,
            remaining_at_last_read: turn.remaining_at_last_read,
            remaining_after_lost_race: turn.remaining_after_lost_race,
        });
    }
}

impl SlotStore for Turn<'_, '_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        let mut store = self.contest.store.borrow_mut();
        let got = store.get(key, value);
        self.remaining_at_last_read = remaining(&store, &self.contest.check, BASE);
        got
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let interrupt = self.contest.schedule.borrow_mut().next().unwrap_or(false);
        if interrupt {
            self.contest.run_next();
        }
        let mut store = self.contest.store.borrow_mut();
        let result = store.set(key, value, cas);
        if result.is_err() {
            self.remaining_after_lost_race = remaining(&store, &self.contest.check, BASE);
        }
        result
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However the writes interleave: the key counts at most its limit and exactly what it
    /// admitted as allowed; a request denied after running out of retries saw the key spent,
    /// and one that took its failure mode saw room for it.
    #[test]
    fn a_hot_key_never_admits_past_a_spent_counter(
        algorithm in proptest::sample::select(ALGORITHMS.to_vec()),
        limit_requests in 1u64..8,
        extra in 1u32..12,
        cas_retries in 0u32..4,
        closed in any::<bool>(),
        semantics in proptest::sample::select(vec![Semantics::Envoy, Semantics::Strict]),
        schedule in proptest::collection::vec(any::<bool>(), 0..64),
    ) {
        let l = limit(algorithm, limit_requests, HOUR, limit_requests);
        let mut hot = check("hot", l, "k", 1);
        if closed {
            hot.failure_mode = FailureMode::Closed;
        }
        let mut store = MemoryStore::new(semantics);
        Limiter::new(SEED, 0).prepare("hot", &l, 1024, &mut store).unwrap();
        let requests = u32::try_from(limit_requests).unwrap() + extra;
        let contest = Contest {
            store: RefCell::new(store),
            check: hot.clone(),
            cas_retries,
            schedule: RefCell::new(schedule.into_iter()),
            requests_left: RefCell::new(requests),
            finished: RefCell::new(Vec::new()),
        };
        while *contest.requests_left.borrow() > 0 {
            contest.run_next();
        }
        let finished = contest.finished.into_inner();
        prop_assert_eq!(finished.len(), requests as usize);
        let counted = finished.iter().filter(|f| f.status == Status::Allowed).count() as u64;
        let left = remaining(&contest.store.borrow(), &hot, BASE);
        prop_assert!(counted <= limit_requests);
        prop_assert_eq!(left, limit_requests - counted, "every allowed request is counted once");
        for f in &finished {
            match f.status {
                // Only an allow that could not be written takes the failure mode: the key had
                // room when the request gave up, so failing open never passes a spent key.
                Status::FailedOpen | Status::FailedClosed => {
                    prop_assert!(f.remaining_after_lost_race >= 1, "{:?} on a spent key", f.status);
                    prop_assert!(f.remaining_at_last_read >= 1);
                }
                Status::Denied => prop_assert_eq!(f.remaining_at_last_read, 0),
                Status::Allowed => {}
                Status::ShadowDenied => prop_assert!(false, "no shadow rule here"),
            }
        }
    }
}
