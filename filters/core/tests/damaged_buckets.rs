//! Buckets that are missing, unreadable or written under another rule configuration count as
//! empty and are overwritten; a changed rule never misreads old state.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::table::Bucket;
use sluice_core::{Algorithm, Limiter, RuleTable, Status};

#[test]
fn a_garbage_bucket_counts_as_empty_and_is_overwritten() {
    for garbage in [
        &b""[..],
        b"\x01",
        b"\xff\xff\xff\xff",
        b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x09",
    ] {
        let l = limit(Algorithm::Gcra, 3, MINUTE, 3);
        let c = check("a", l, "k", 1);
        let mut store = MemoryStore::new(Semantics::Strict);
        let mut limiter = Limiter::new(SEED, 8);
        store.put(&bucket_key(&c), garbage);
        let verdict = limiter.check(std::slice::from_ref(&c), BASE, &mut store);
        assert!(verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(verdict.outcomes[0].decision.remaining, 2);
        let (bytes, _) = store.peek(&bucket_key(&c)).unwrap();
        let bucket = Bucket::decode(bytes).unwrap();
        assert_eq!(
            bucket.signature(),
            RuleTable::new("a", l, c.max_keys).signature()
        );
        assert_eq!(remaining(&store, &c, BASE), 2);
    }
}

/// A rule whose limit changes gets a table of its own (its key names carry a tag of the
/// signature): it starts afresh, and the table written under the old limit is never touched,
/// so two configurations with one rule name and different limits cannot reset each other.
#[test]
fn changing_a_rule_starts_its_keys_afresh_in_a_table_of_its_own() {
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    let old = limit(Algorithm::FixedWindow, 1, HOUR, 1);
    let new = limit(Algorithm::FixedWindow, 2, HOUR, 2);
    let before = check("a", old, "k", 1);
    let after = check("a", new, "k", 1);
    assert_ne!(bucket_key(&before), bucket_key(&after), "another table");
    assert!(
        limiter
            .check(std::slice::from_ref(&before), BASE, &mut store)
            .allowed
    );
    assert!(
        !limiter
            .check(std::slice::from_ref(&before), BASE, &mut store)
            .allowed
    );
    // The old count of 1 is not read as 1 of 2.
    let verdict = limiter.check(std::slice::from_ref(&after), BASE, &mut store);
    assert_eq!(verdict.outcomes[0].decision.remaining, 1);
    // Nor did the new rule overwrite the old one's count: 1 of 1 is still spent.
    let verdict = limiter.check(std::slice::from_ref(&before), BASE, &mut store);
    assert!(!verdict.allowed);
}

#[test]
fn changing_the_algorithm_starts_afresh_too() {
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    let gcra = check("a", limit(Algorithm::Gcra, 1, HOUR, 1), "k", 1);
    let log = check("a", limit(Algorithm::SlidingLog, 1, HOUR, 1), "k", 1);
    assert!(
        limiter
            .check(std::slice::from_ref(&gcra), BASE, &mut store)
            .allowed
    );
    assert!(
        limiter
            .check(std::slice::from_ref(&log), BASE, &mut store)
            .allowed
    );
    assert!(
        !limiter
            .check(std::slice::from_ref(&log), BASE, &mut store)
            .allowed
    );
}

#[test]
fn an_evicted_bucket_is_recreated_at_request_time() {
    for semantics in [Semantics::Envoy, Semantics::Strict] {
        let l = limit(Algorithm::SlidingWindow, 5, MINUTE, 5);
        let c = check("a", l, "k", 1);
        let mut store = MemoryStore::new(semantics);
        let mut limiter = Limiter::new(SEED, 8);
        limiter.prepare("a", &l, c.max_keys, &mut store).unwrap();
        assert!(
            limiter
                .check(std::slice::from_ref(&c), BASE, &mut store)
                .allowed
        );
        assert!(store.evict(&bucket_key(&c)));
        let verdict = limiter.check(std::slice::from_ref(&c), BASE, &mut store);
        assert!(verdict.allowed);
        assert_eq!(verdict.outcomes[0].cas_retries, 0);
        assert_eq!(remaining(&store, &c, BASE), 4);
    }
}
