//! `Limiter::prepare` creates a rule's whole table up front, once, and tolerates other VMs.

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::table::Bucket;
use sluice_core::{Algorithm, Limiter, RuleTable, StoreError};

#[test]
fn creates_every_bucket_once() {
    for semantics in [Semantics::Envoy, Semantics::Strict] {
        let l = limit(Algorithm::Gcra, 10, MINUTE, 10);
        let table = RuleTable::new("per-client", l, 1000);
        let mut store = MemoryStore::new(semantics);
        let limiter = Limiter::new(SEED, 8);
        assert_eq!(limiter.prepare("per-client", &l, 1000, &mut store), Ok(250));
        assert_eq!(store.len(), 250);
        assert_eq!(limiter.prepare("per-client", &l, 1000, &mut store), Ok(0));
        let keys: Vec<&str> = store.keys().collect();
        assert!(keys.contains(&table.bucket_key(0).as_str()));
        assert!(keys.contains(&table.bucket_key(249).as_str()));
        for key in keys {
            let value = store.peek(key).unwrap().0;
            assert_eq!(
                value.len() as u64,
                table.max_bucket_bytes(),
                "written at full size"
            );
            let bucket = Bucket::decode(value).unwrap();
            assert_eq!(bucket.signature(), table.signature());
            assert!(bucket.entries().is_empty());
        }
        // Everything the table will ever hold is written up front.
        assert!(store.total_bytes() as u64 <= table.max_store_bytes());
        assert!(store.total_bytes() as u64 >= table.max_store_bytes() - 250 * 2);
    }
}

#[test]
fn leaves_existing_buckets_alone() {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let second = RuleTable::new("a", l, 8).bucket_key(1);
    store.put(&second, b"not a bucket");
    let limiter = Limiter::new(SEED, 8);
    assert_eq!(limiter.prepare("a", &l, 8, &mut store), Ok(1));
    assert_eq!(store.peek(&second).unwrap().0, b"not a bucket");
}

#[test]
fn a_bucket_created_by_another_vm_meanwhile_is_not_an_error() {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let mut store = MemoryStore::new(Semantics::Strict);
    store.force_cas_mismatches(&RuleTable::new("a", l, 8).bucket_key(0), 1);
    let limiter = Limiter::new(SEED, 8);
    assert_eq!(limiter.prepare("a", &l, 8, &mut store), Ok(1));
    assert_eq!(store.len(), 2);
}

#[test]
fn a_store_error_is_returned() {
    let l = limit(Algorithm::FixedWindow, 10, MINUTE, 10);
    let mut store = MemoryStore::new(Semantics::Envoy);
    store.fail_sets(1, StoreError::Host(10));
    let limiter = Limiter::new(SEED, 8);
    assert_eq!(
        limiter.prepare("a", &l, 8, &mut store),
        Err(StoreError::Host(10))
    );
    store.set_outage(Some(StoreError::Unavailable));
    assert_eq!(
        limiter.prepare("a", &l, 8, &mut store),
        Err(StoreError::Unavailable)
    );
}
