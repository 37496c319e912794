//! GCRA with a delay allowance through the limiter: the verdict carries the hold time, several
//! rules hold for the longest, a denial holds nothing, and a held request given up is refunded.

mod common;

use common::{BASE, SECOND, SEED, check, limit};
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Limiter};

const MS: u64 = 1_000_000;

#[test]
fn a_burst_passes_then_is_spaced_then_denied() {
    // 5 per second (T = 200 ms), burst 2 (τ = 400 ms), held up to 500 ms.
    let gcra = limit(Algorithm::Gcra, 5, SECOND, 2).with_max_delay(500 * MS);
    let checks = [check("spaced", gcra, "k", 1)];
    let mut limiter = Limiter::new(SEED, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let holds: Vec<Option<u64>> = (0..6)
        .map(|_| {
            let verdict = limiter.check(&checks, BASE, &mut store);
            verdict.allowed.then(|| verdict.delay() / MS)
        })
        .collect();
    // New debts 200 and 400 ms (≤ τ) pass at once; 600 and 800 ms are held debt − τ = 200
    // and 400 ms; 1000 ms would be held 600 ms > 500 ms: denied, as is every later request
    // at that instant (a denial commits nothing).
    assert_eq!(holds, [Some(0), Some(0), Some(200), Some(400), None, None]);
}

#[test]
fn the_longest_hold_of_several_rules_is_the_verdicts() {
    let fast = limit(Algorithm::Gcra, 10, SECOND, 1).with_max_delay(SECOND);
    let slow = limit(Algorithm::Gcra, 2, SECOND, 1).with_max_delay(SECOND);
    let checks = [check("fast", fast, "k", 1), check("slow", slow, "k", 1)];
    let mut limiter = Limiter::new(SEED, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert_eq!(limiter.check(&checks, BASE, &mut store).delay(), 0);
    let second = limiter.check(&checks, BASE, &mut store);
    assert_eq!(second.outcomes[0].decision.delay, 100 * MS);
    assert_eq!(second.outcomes[1].decision.delay, 500 * MS);
    assert_eq!(second.delay(), 500 * MS);
}

#[test]
fn a_denied_request_holds_nothing_and_spends_nothing() {
    // The second rule has no delay: its denial denies the request, and the first rule's
    // hold is not committed.
    let held = limit(Algorithm::Gcra, 10, SECOND, 1).with_max_delay(SECOND);
    let strict = limit(Algorithm::Gcra, 1, SECOND, 1);
    let checks = [check("held", held, "k", 1), check("strict", strict, "k", 1)];
    let mut limiter = Limiter::new(SEED, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    let denied = limiter.check(&checks, BASE, &mut store);
    assert!(!denied.allowed);
    assert_eq!(denied.delay(), 0);
    // "held" alone now is held one interval, as if the denied request never came.
    let alone = [check("held", held, "k", 1)];
    assert_eq!(limiter.check(&alone, BASE, &mut store).delay(), 100 * MS);
}

#[test]
fn a_held_request_given_up_gives_its_slot_back() {
    let gcra = limit(Algorithm::Gcra, 10, SECOND, 1).with_max_delay(SECOND);
    let checks = [check("spaced", gcra, "k", 1)];
    let mut limiter = Limiter::new(SEED, 4);
    let mut store = MemoryStore::new(Semantics::Strict);
    limiter.check(&checks, BASE, &mut store);
    let held = limiter.check(&checks, BASE, &mut store);
    assert_eq!(held.delay(), 100 * MS);
    let later = limiter.check(&checks, BASE + 10 * MS, &mut store);
    assert_eq!(later.delay(), 190 * MS);
    // The first held request's client leaves: refunded, the next one takes its place.
    limiter.refund(&checks, &held.outcomes, BASE, &mut store);
    let next = limiter.check(&checks, BASE + 20 * MS, &mut store);
    assert_eq!(next.delay(), 180 * MS);
}

#[test]
fn decide_all_holds_like_check() {
    let gcra = limit(Algorithm::Gcra, 4, SECOND, 1).with_max_delay(SECOND);
    let checks = [check("spaced", gcra, "k", 1)];
    let mut states = [None];
    let first = Limiter::decide_all(&checks, &mut states, BASE);
    let second = Limiter::decide_all(&checks, &mut states, BASE);
    assert_eq!((first.delay(), second.delay()), (0, 250 * MS));
}
