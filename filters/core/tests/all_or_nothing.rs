//! A request consumes nothing from any rule unless every enforcing rule allows it.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Limiter, Status};

#[test]
fn a_denial_by_the_second_rule_leaves_the_first_unspent() {
    let per_client = limit(Algorithm::Gcra, 5, MINUTE, 5);
    let per_path = limit(Algorithm::FixedWindow, 1, MINUTE, 1);
    let checks = [
        check("per-client", per_client, "203.0.113.7", 1),
        check("per-path", per_path, "/login", 1),
    ];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);

    let first = limiter.check(&checks, BASE, &mut store);
    assert!(first.allowed);
    assert_eq!(remaining(&store, &checks[0], BASE), 4);

    let snapshot = store
        .peek(&bucket_key(&checks[0]))
        .map(|(v, cas)| (v.to_vec(), cas));
    for _ in 0..10 {
        let verdict = limiter.check(&checks, BASE, &mut store);
        assert!(!verdict.allowed);
        assert_eq!(verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(verdict.outcomes[1].status, Status::Denied);
    }
    // Not even rewritten: same bytes, same cas.
    let after = store
        .peek(&bucket_key(&checks[0]))
        .map(|(v, cas)| (v.to_vec(), cas));
    assert_eq!(snapshot, after);
    assert_eq!(remaining(&store, &checks[0], BASE), 4);
}

#[test]
fn a_denial_by_the_first_rule_leaves_the_later_ones_unspent() {
    let strict = limit(Algorithm::SlidingLog, 1, HOUR, 1);
    let loose = limit(Algorithm::SlidingWindow, 100, HOUR, 100);
    let checks = [
        check("strict", strict, "k", 1),
        check("loose", loose, "k", 1),
    ];
    let mut store = MemoryStore::new(Semantics::Strict);
    let mut limiter = Limiter::new(SEED, 8);
    assert!(limiter.check(&checks, BASE, &mut store).allowed);
    for i in 1..50 {
        assert!(!limiter.check(&checks, BASE + i, &mut store).allowed);
    }
    assert_eq!(remaining(&store, &checks[1], BASE + 50), 99);
}

#[test]
fn outcomes_follow_the_order_of_the_checks_with_meaningful_decisions() {
    let a = limit(Algorithm::Gcra, 10, MINUTE, 10);
    let b = limit(Algorithm::FixedWindow, 2, MINUTE, 2);
    let checks = [check("a", a, "x", 1), check("b", b, "x", 3)];
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    let verdict = limiter.check(&checks, BASE + SECOND, &mut store);
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes.len(), 2);
    assert_eq!(verdict.outcomes[0].decision.remaining, 9);
    assert_eq!(verdict.outcomes[0].decision.limit, 10);
    // Cost 3 over a limit of 2 can never pass: retry after a period.
    assert_eq!(verdict.outcomes[1].decision.limit, 2);
    assert_eq!(verdict.outcomes[1].decision.remaining, 0);
    assert_eq!(verdict.outcomes[1].decision.retry_after, MINUTE);
}

#[test]
fn rules_with_the_same_key_bytes_keep_separate_counters() {
    let l = limit(Algorithm::FixedWindow, 1, MINUTE, 1);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    assert!(
        limiter
            .check(&[check("a", l, "same", 1)], BASE, &mut store)
            .allowed
    );
    assert!(
        limiter
            .check(&[check("b", l, "same", 1)], BASE, &mut store)
            .allowed
    );
    assert!(
        !limiter
            .check(&[check("a", l, "same", 1)], BASE, &mut store)
            .allowed
    );
}

#[test]
fn no_checks_means_allowed_without_touching_the_store() {
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    let verdict = limiter.check(&[], BASE, &mut store);
    assert!(verdict.allowed);
    assert!(verdict.outcomes.is_empty());
    assert_eq!(store.calls().gets + store.calls().sets, 0);
}

#[test]
fn cost_zero_passes_without_writing() {
    let l = limit(Algorithm::Gcra, 1, MINUTE, 1);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    let verdict = limiter.check(&[check("a", l, "k", 0)], BASE, &mut store);
    assert!(verdict.allowed);
    assert_eq!(store.calls().sets, 0);
}

/// `check_into` decides exactly as `check` (same outcomes, same writes), into one verdict
/// kept from request to request whose outcomes' buffer is reused, not replaced.
#[test]
fn check_into_decides_as_check_in_a_reused_verdict() {
    let checks = [
        check(
            "per-client",
            limit(Algorithm::Gcra, 3, MINUTE, 3),
            "203.0.113.7",
            1,
        ),
        check(
            "per-path",
            limit(Algorithm::FixedWindow, 5, MINUTE, 5),
            "/login",
            1,
        ),
        check(
            "daily",
            limit(Algorithm::SlidingWindow, 4, HOUR, 4),
            "all",
            1,
        ),
    ];
    let (mut owned_store, mut store) = (
        MemoryStore::new(Semantics::Envoy),
        MemoryStore::new(Semantics::Envoy),
    );
    let (mut owned_limiter, mut limiter) = (Limiter::new(SEED, 8), Limiter::new(SEED, 8));
    let mut verdict = sluice_core::Verdict {
        allowed: false,
        outcomes: Vec::with_capacity(checks.len()),
    };
    let buffer = verdict.outcomes.as_ptr();
    for i in 0..8 {
        let now = BASE + i * SECOND;
        let expected = owned_limiter.check(&checks, now, &mut owned_store);
        limiter.check_into(&checks, now, &mut store, &mut verdict);
        assert_eq!(verdict, expected, "request {i}");
        assert_eq!(verdict.outcomes.as_ptr(), buffer, "request {i}");
    }
    assert!(!verdict.allowed);
}

/// A check position that alternates among more tables than the limiter keeps worked out per
/// position (a tiered rule's tiers, overrides) counts every request in its own table's
/// bucket, as `RuleTable::place` and `bucket_key` name it.
#[test]
fn a_position_alternating_among_many_tables_counts_each_in_its_own() {
    let names = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let checks: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let requests = 10 + i as u64;
            check(
                name,
                limit(Algorithm::FixedWindow, requests, HOUR, requests),
                "k",
                1,
            )
        })
        .collect();
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    // Round robin over six tables, then runs of one table: every order a position meets.
    let order = (0..18).map(|i| i % 6).chain([2, 2, 2, 5, 5, 0]);
    let mut sent = [0u64; 6];
    for (at, i) in order.enumerate() {
        let check = &checks[i];
        let verdict = limiter.check(std::slice::from_ref(check), BASE + at as u64, &mut store);
        assert!(verdict.allowed, "request {at} to {}", check.rule);
        sent[i] += 1;
    }
    for (check, sent) in checks.iter().zip(sent) {
        let full = check.limit.quota.limit();
        assert_eq!(
            remaining(&store, check, BASE + 100),
            full - sent,
            "{}",
            check.rule
        );
    }
}
