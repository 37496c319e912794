//! Shared helpers for the integration tests.
#![allow(dead_code)]

use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{Algorithm, Check, FailureMode, Limit, Mode, Nanos, Quota, Seed};

/// 2026-01-01T00:00:00Z: aligned to every period the tests use (up to a day).
pub const BASE: Nanos = 1_767_225_600 * NANOS_PER_SEC;

pub const SECOND: Nanos = NANOS_PER_SEC;
pub const MINUTE: Nanos = 60 * SECOND;
pub const HOUR: Nanos = 60 * MINUTE;
pub const DAY: Nanos = 24 * HOUR;

/// The periods every algorithm is exercised with.
pub const PERIODS: [Nanos; 4] = [30 * SECOND, 5 * MINUTE, HOUR, DAY];

pub const SEED: Seed = Seed {
    k0: 0x0123_4567_89ab_cdef,
    k1: 0xfedc_ba98_7654_3210,
};

pub fn limit(algorithm: Algorithm, requests: u64, period: Nanos, burst: u64) -> Limit {
    Limit::new(algorithm, Quota::new(requests, period, burst).unwrap())
}

/// An enforcing, fail-open check of `cost` units for `key`.
pub fn check<'a>(rule: &'a str, limit: Limit, key: &str, cost: u64) -> Check<'a> {
    Check {
        rule,
        limit,
        max_keys: 1024,
        key: key.as_bytes().to_vec(),
        cost,
        mode: Mode::Enforce,
        failure_mode: FailureMode::Open,
    }
}

/// One key's state driven directly through an algorithm, committing what is allowed (as the
/// limiter does for a single rule).
pub struct Key {
    pub limit: Limit,
    pub state: Option<sluice_core::State>,
}

impl Key {
    pub fn new(limit: Limit) -> Key {
        Key { limit, state: None }
    }

    pub fn send(&mut self, at: Nanos, cost: u64) -> sluice_core::Decision {
        let (decision, next) = self.limit.decide(self.state.as_ref(), at, cost);
        assert_eq!(decision.limit, self.limit.quota.limit());
        if decision.allowed {
            assert_eq!(
                decision.retry_after, 0,
                "an allowed request has no retry_after"
            );
            if cost > 0 {
                self.state = Some(next);
            }
        } else {
            assert_eq!(decision.remaining, 0, "a denied request has no remaining");
            assert!(
                decision.retry_after > 0,
                "a denied request has a retry_after"
            );
        }
        decision
    }

    /// Asserts an allowed decision with exactly these values.
    pub fn allow(&mut self, at: Nanos, cost: u64, remaining: u64, reset_after: Nanos) {
        let d = self.send(at, cost);
        assert!(
            d.allowed,
            "expected cost {cost} at +{} to pass: {d:?}",
            at.wrapping_sub(BASE)
        );
        assert_eq!(
            (d.remaining, d.reset_after),
            (remaining, reset_after),
            "(remaining, reset_after) of cost {cost} at +{}",
            at.wrapping_sub(BASE)
        );
    }

    /// Asserts a denied decision with exactly this retry_after (and reset_after).
    pub fn deny(&mut self, at: Nanos, cost: u64, retry_after: Nanos, reset_after: Nanos) {
        let d = self.send(at, cost);
        assert!(
            !d.allowed,
            "expected cost {cost} at +{} to be denied: {d:?}",
            at.wrapping_sub(BASE)
        );
        assert_eq!(
            (d.retry_after, d.reset_after),
            (retry_after, reset_after),
            "(retry_after, reset_after) of cost {cost} at +{}",
            at.wrapping_sub(BASE)
        );
    }
}

/// The state the store holds for a check's key, decoded from its bucket.
pub fn stored_state(
    store: &sluice_core::MemoryStore,
    check: &Check<'_>,
) -> Option<sluice_core::State> {
    let table = sluice_core::RuleTable::new(check.rule, check.limit, check.max_keys);
    let placement = table.place(&SEED, &check.key);
    let (bytes, _) = store.peek(&table.bucket_key(placement.bucket))?;
    let bucket = sluice_core::table::Bucket::decode(bytes).ok()?;
    if bucket.signature() != table.signature() {
        return None;
    }
    bucket.find(placement.fingerprint).cloned()
}

/// The store key of a check's bucket.
pub fn bucket_key(check: &Check<'_>) -> String {
    let table = sluice_core::RuleTable::new(check.rule, check.limit, check.max_keys);
    table.bucket_key(table.place(&SEED, &check.key).bucket)
}

/// What a key has left under its rule right now, asked without spending (cost 0).
pub fn remaining(store: &sluice_core::MemoryStore, check: &Check<'_>, now: Nanos) -> u64 {
    let state = stored_state(store, check);
    check.limit.decide(state.as_ref(), now, 0).0.remaining
}

/// Runs `requests` (time, cost) through one key and returns what was admitted (time, units).
/// Each admission is placed at the latest time seen so far, the time it is counted at: with
/// non-decreasing times that is its own time; with a clock that goes back, the later one.
pub fn admitted(limit: &Limit, requests: &[(Nanos, u64)]) -> Vec<(Nanos, u64)> {
    let mut state = None;
    let mut latest = 0;
    let mut out = Vec::new();
    for &(t, cost) in requests {
        let (decision, next) = limit.decide(state.as_ref(), t, cost);
        if decision.allowed && cost > 0 {
            state = Some(next);
            latest = latest.max(t);
            out.push((latest, cost));
        }
    }
    out
}

/// Units admitted at times in `[from, to)`.
pub fn units_between(admitted: &[(Nanos, u64)], from: Nanos, to: Nanos) -> u64 {
    admitted
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, c)| c)
        .sum()
}
