//! Concurrency rules: slots held while requests are in flight, given back on release (once),
//! expiring on their own between `slot_ttl` and `slot_ttl × 9/8` when a release is lost, and
//! all or nothing with the request's other rules.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Limiter, Released, Status, StoreError};

const TTL: u64 = 80 * SECOND;
/// A slot's bucket: an eighth of the TTL.
const W: u64 = TTL / 8;

fn in_flight(max: u64) -> sluice_core::Limit {
    limit(Algorithm::Concurrency, max, TTL, max)
}

#[test]
fn max_requests_in_flight_then_denied_until_one_ends() {
    let checks = [check("in-flight", in_flight(3), "k", 1)];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Strict);
    for (i, remaining) in [2, 1, 0].into_iter().enumerate() {
        let verdict = limiter.check(&checks, BASE + i as u64, &mut store);
        assert!(verdict.allowed, "request {i}");
        assert_eq!(verdict.outcomes[0].decision.remaining, remaining);
    }
    let denied = limiter.check(&checks, BASE + 3, &mut store);
    assert!(!denied.allowed);
    assert_eq!(denied.outcomes[0].status, Status::Denied);
    // A slot comes back when a request ends: no sooner known, so clients retry in a second.
    assert_eq!(denied.outcomes[0].decision.retry_after, SECOND);

    assert_eq!(
        limiter.release(&checks[0], BASE + 1, BASE + 4, &mut store),
        Released::Given
    );
    assert!(limiter.check(&checks, BASE + 5, &mut store).allowed);
    assert!(!limiter.check(&checks, BASE + 6, &mut store).allowed);
}

#[test]
fn each_slot_is_given_back_once() {
    let checks = [check("in-flight", in_flight(2), "k", 1)];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    assert_eq!(
        limiter.release(&checks[0], BASE, BASE + 1, &mut store),
        Released::Given
    );
    // A second release of the same slot finds nothing taken at that time.
    assert_eq!(
        limiter.release(&checks[0], BASE, BASE + 2, &mut store),
        Released::Expired
    );
    assert_eq!(remaining(&store, &checks[0], BASE + 3), 2);
}

#[test]
fn a_slot_never_released_expires_between_ttl_and_nine_eighths_of_it() {
    let checks = [check("in-flight", in_flight(1), "k", 1)];
    for taken_at in [BASE, BASE + W / 2, BASE + W - 1] {
        let mut limiter = Limiter::new(SEED, 8);
        let mut store = MemoryStore::new(Semantics::Envoy);
        assert!(limiter.check(&checks, taken_at, &mut store).allowed);
        // Still held just before slot_ttl, and at any time before the bucket expires.
        assert!(
            !limiter
                .check(&checks, taken_at + TTL - 1, &mut store)
                .allowed
        );
        let expiry = BASE + 9 * W;
        assert!(expiry > taken_at + TTL && expiry <= taken_at + TTL * 9 / 8);
        assert!(!limiter.check(&checks, expiry - 1, &mut store).allowed);
        assert!(limiter.check(&checks, expiry, &mut store).allowed);
    }
}

#[test]
fn releasing_an_expired_slot_gives_nothing_back() {
    let checks = [check("in-flight", in_flight(1), "k", 1)];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    // Expired at BASE + 9W; a new request takes the slot again.
    assert!(limiter.check(&checks, BASE + 9 * W, &mut store).allowed);
    // The old request's release must not free the new request's slot.
    assert_eq!(
        limiter.release(&checks[0], BASE, BASE + 9 * W + 1, &mut store),
        Released::Expired
    );
    assert!(!limiter.check(&checks, BASE + 9 * W + 2, &mut store).allowed);
}

#[test]
fn denied_by_another_rule_takes_no_slot() {
    let checks = [
        check("in-flight", in_flight(5), "k", 1),
        check("rate", limit(Algorithm::Gcra, 1, MINUTE, 1), "k", 1),
    ];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    for i in 1..10 {
        let verdict = limiter.check(&checks, BASE + i, &mut store);
        assert!(!verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
    }
    // Only the admitted request holds a slot.
    assert_eq!(remaining(&store, &checks[0], BASE + 10), 4);
}

#[test]
fn a_lost_race_refunds_the_slot_before_trying_again() {
    let checks = [
        check("in-flight", in_flight(2), "k", 1),
        check("rate", limit(Algorithm::Gcra, 100, MINUTE, 100), "k", 1),
    ];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    store.force_cas_mismatches(&bucket_key(&checks[1]), 3);
    let verdict = limiter.check(&checks, BASE, &mut store);
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[1].cas_retries, 3);
    // One slot held, not four.
    assert_eq!(remaining(&store, &checks[0], BASE + 1), 1);
}

#[test]
fn a_release_retries_lost_races_and_gives_up_on_store_errors() {
    let checks = [check("in-flight", in_flight(1), "k", 1)];
    let mut limiter = Limiter::new(SEED, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    store.force_cas_mismatches(&bucket_key(&checks[0]), 2);
    assert_eq!(
        limiter.release(&checks[0], BASE, BASE + 1, &mut store),
        Released::Given
    );
    assert!(limiter.check(&checks, BASE + 2, &mut store).allowed);
    store.force_cas_mismatches(&bucket_key(&checks[0]), 5);
    assert_eq!(
        limiter.release(&checks[0], BASE + 2, BASE + 3, &mut store),
        Released::Failed
    );
    store.fail_gets(1, StoreError::Unavailable);
    assert_eq!(
        limiter.release(&checks[0], BASE + 2, BASE + 4, &mut store),
        Released::Failed
    );
    // The slot stays held until it expires.
    assert!(!limiter.check(&checks, BASE + 5, &mut store).allowed);
}

#[test]
fn slots_are_counted_per_key() {
    let a = [check("in-flight", in_flight(1), "a", 1)];
    let b = [check("in-flight", in_flight(1), "b", 1)];
    let mut limiter = Limiter::new(SEED, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&a, BASE, &mut store).allowed);
    assert!(limiter.check(&b, BASE, &mut store).allowed);
    assert!(!limiter.check(&a, BASE, &mut store).allowed);
}

#[test]
fn a_clock_gone_back_never_frees_a_slot_early() {
    let limit = in_flight(1);
    let (_, held) = limit.decide(None, BASE + 5 * W, 1);
    // Asked at an earlier bucket, the slot is still there.
    assert!(!limit.decide(Some(&held), BASE, 1).0.allowed);
    // The slot expires after its own bucket, not the earlier one.
    assert!(!limit.decide(Some(&held), BASE + 14 * W - 1, 1).0.allowed);
    assert!(limit.decide(Some(&held), BASE + 14 * W, 1).0.allowed);
}

#[test]
fn decide_all_counts_slots_in_memory_states() {
    let checks = [check("in-flight", in_flight(1), "k", 1)];
    let mut states = [None];
    assert!(Limiter::decide_all(&checks, &mut states, BASE).allowed);
    assert!(!Limiter::decide_all(&checks, &mut states, BASE + 1).allowed);
    let state = states[0].as_ref().unwrap();
    let released = checks[0].limit.release(state, BASE, BASE + 2).unwrap();
    states[0] = Some(released);
    assert!(Limiter::decide_all(&checks, &mut states, BASE + 3).allowed);
}
