//! The limiter behaves the same on Envoy's and ngx_wasm_module's shared data, and `prepare`
//! removes the one difference (Envoy's non-atomic create-if-absent).

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Limiter, SetError, SlotStore, StoreError, Verdict};

fn script(semantics: Semantics, prepared: bool) -> Vec<Verdict> {
    let rules = [
        limit(Algorithm::Gcra, 5, MINUTE, 3),
        limit(Algorithm::FixedWindow, 4, MINUTE, 4),
        limit(Algorithm::SlidingWindow, 6, MINUTE, 6),
        limit(Algorithm::SlidingLog, 3, MINUTE, 3),
    ];
    let names = ["g", "f", "s", "l"];
    let mut store = MemoryStore::new(semantics);
    let mut limiter = Limiter::new(SEED, 8);
    if prepared {
        for (name, l) in names.iter().zip(rules) {
            limiter.prepare(name, &l, 16, &mut store).unwrap();
        }
    }
    let mut verdicts = Vec::new();
    for step in 0..200u64 {
        let key = ["a", "b", "c"][(step % 3) as usize];
        let checks: Vec<_> = names
            .iter()
            .zip(rules)
            .map(|(name, l)| {
                let mut c = check(name, l, key, 1 + step % 2);
                c.max_keys = 16;
                c
            })
            .collect();
        verdicts.push(limiter.check(&checks, BASE + step * 3 * SECOND, &mut store));
    }
    verdicts
}

#[test]
fn envoy_and_strict_stores_give_the_same_verdicts() {
    let reference = script(Semantics::Envoy, true);
    assert!(reference.iter().any(|v| v.allowed) && reference.iter().any(|v| !v.allowed));
    assert_eq!(script(Semantics::Strict, true), reference);
    assert_eq!(script(Semantics::Envoy, false), reference);
    assert_eq!(script(Semantics::Strict, false), reference);
}

/// Another VM's request runs between this VM's read and write.
struct OtherVmFirst<'s> {
    store: &'s mut MemoryStore,
    other: Option<Vec<sluice_core::Check<'static>>>,
}

impl SlotStore for OtherVmFirst<'_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        self.store.get(key, value)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if let Some(checks) = self.other.take() {
            Limiter::new(SEED, 8).check(&checks, BASE, self.store);
        }
        self.store.set(key, value, cas)
    }
}

fn race_on_a_fresh_bucket(semantics: Semantics, prepared: bool) -> u64 {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let checks = vec![check("a", l, "k", 1)];
    let mut store = MemoryStore::new(semantics);
    let mut limiter = Limiter::new(SEED, 8);
    if prepared {
        limiter.prepare("a", &l, 1024, &mut store).unwrap();
    }
    let mut shared = OtherVmFirst {
        store: &mut store,
        other: Some(checks.clone()),
    };
    assert!(limiter.check(&checks, BASE, &mut shared).allowed);
    10 - remaining(&store, &checks[0], BASE)
}

#[test]
fn prepared_tables_count_racing_first_requests_on_both_hosts() {
    assert_eq!(race_on_a_fresh_bucket(Semantics::Envoy, true), 2);
    assert_eq!(race_on_a_fresh_bucket(Semantics::Strict, true), 2);
    // ngx_wasm_module's strict create is atomic even without preparing.
    assert_eq!(race_on_a_fresh_bucket(Semantics::Strict, false), 2);
}

#[test]
fn without_prepare_envoy_loses_one_of_two_racing_creates() {
    // Why prepare exists: Envoy accepts a set on a missing key whatever the cas, so the
    // second writer overwrites the first.
    assert_eq!(race_on_a_fresh_bucket(Semantics::Envoy, false), 1);
}
