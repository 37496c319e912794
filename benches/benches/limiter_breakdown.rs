//! Where `Limiter::check` spends its time on one thread: each stage of the path timed on its
//! own (hot key, denied request, so nothing is written; then the write stages of an allowed
//! one), against the whole call and against governor's whole decision. Stage times are
//! approximate (each stage runs in a loop of its own, with warm caches), but they say which
//! work would have to go for the whole path to match governor.
//!
//! `cargo bench -p sluice-bench --bench limiter_breakdown`

use std::hint::black_box;
use std::slice;
use std::time::Instant;

use governor::clock::{Clock, QuantaClock, Reference};
use sluice_bench::contenders::{CAS_RETRIES, Contender, Governor, MAX_KEYS, SluiceLimiter};
use sluice_bench::keys::KeySet;
use sluice_bench::sharded::ShardedCasStore;
use sluice_core::table::{Bucket, RuleTable};
use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{
    Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, RuleOutcome, Seed, SlotStore,
    Status,
};

const ITERATIONS: u32 = 2_000_000;
const RULE: &str = "per-client";
const T0_NS: u64 = 1_767_225_600_000_000_000;

/// Nanoseconds per call of `f`, the best of 5 loops.
fn time(mut f: impl FnMut(u32)) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for i in 0..ITERATIONS {
                f(black_box(i));
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(ITERATIONS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let quota = Quota::new(100, NANOS_PER_SEC, 100).unwrap_or_else(|e| panic!("{e:?}"));
    let limit = Limit::new(Algorithm::Gcra, quota);
    let seed = Seed { k0: 1, k1: 2 };
    let key = b"10.0.0.0".to_vec();
    let keys = KeySet::addresses(1);

    // The whole decisions, as in core_vs_governor (hot key: denied after the burst).
    let governor = Governor::keyed(keys.clone());
    let limiter = SluiceLimiter::new(&keys, QuantaClock::default());
    let mut unit = ();
    let mut worker = limiter.worker();
    let governor_ns = time(|_| {
        black_box(governor.decide(&mut unit, 0));
    });
    let check_ns = time(|_| {
        black_box(limiter.decide(&mut worker, 0));
    });

    // The stages, on a store holding the key's bucket with a denying state.
    let store = ShardedCasStore::default();
    let mut handle = store.handle();
    let mut prepare = Limiter::new(seed, CAS_RETRIES);
    if let Err(error) = prepare.prepare(RULE, &limit, MAX_KEYS, &mut handle) {
        panic!("{error}");
    }
    let check = Check {
        rule: RULE,
        limit,
        max_keys: MAX_KEYS,
        key: key.clone(),
        cost: 1,
        mode: Mode::Enforce,
        failure_mode: FailureMode::Open,
    };
    for i in 0..200 {
        prepare.check(slice::from_ref(&check), T0_NS + i, &mut handle);
    }
    let table = RuleTable::new(RULE, limit, MAX_KEYS);
    let placement = table.place(&seed, &key);
    let mut bucket_key = String::new();
    table.write_bucket_key(placement.bucket, &mut bucket_key);
    let mut raw = Vec::new();
    let _ = handle.get(&bucket_key, &mut raw);
    let mut bucket = Bucket::new(0);
    let _ = bucket.decode_from(&raw);
    let clock = QuantaClock::default();
    let start = clock.now();

    let outcome = RuleOutcome {
        status: Status::Denied,
        decision: limit.decide(None, T0_NS, 1).0,
        cas_retries: 0,
        store_error: None,
    };
    let stages: Vec<(&str, f64)> = vec![
        (
            "clock read (quanta, as governor)",
            time(|_| {
                black_box(clock.now().duration_since(start));
            }),
        ),
        (
            "place (SipHash of rule + key)",
            time(|_| {
                black_box(table.place(&seed, black_box(&key)));
            }),
        ),
        (
            "write_bucket_key (prefix + digits)",
            time(|i| {
                table.write_bucket_key(placement.bucket ^ (i & 1), &mut bucket_key);
                black_box(&bucket_key);
            }),
        ),
        (
            "store get (lock, map lookup, copy)",
            time(|_| {
                black_box(handle.get(black_box(&bucket_key), &mut raw).ok());
            }),
        ),
        (
            "Bucket::decode_from",
            time(|_| {
                black_box(bucket.decode_from(black_box(&raw)).is_ok());
            }),
        ),
        (
            "Limit::decide (GCRA)",
            time(|i| {
                let prior = bucket.find(placement.fingerprint);
                black_box(limit.decide(prior, T0_NS + u64::from(i & 1), 1));
            }),
        ),
        (
            "verdict outcomes Vec (alloc + free)",
            time(|_| {
                let outcomes: Vec<RuleOutcome> = vec![black_box(outcome)];
                black_box(outcomes);
            }),
        ),
    ];
    let mut encoded = Vec::new();
    let writes: Vec<(&str, f64)> = vec![
        (
            "Bucket::put + encode_into",
            time(|i| {
                let (_, state) = limit.decide(None, T0_NS + u64::from(i), 1);
                bucket.put(placement.fingerprint, state, &limit, T0_NS);
                encoded.clear();
                bucket.encode_into(&mut encoded);
                black_box(&encoded);
            }),
        ),
        (
            "store set (lock, map lookup, cas, copy)",
            time(|_| {
                let cas = handle
                    .get(&bucket_key, &mut raw)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                black_box(handle.set(&bucket_key, &encoded, cas).is_ok());
            }),
        ),
    ];

    println!(
        "Limiter::check, one rule, hot key, 1 thread: stages timed alone (best of 5 x {ITERATIONS})"
    );
    println!(
        "  {:<42} {:>8.1} ns",
        "governor: whole decision", governor_ns
    );
    println!(
        "  {:<42} {:>8.1} ns",
        "sluice Limiter::check: whole (denied)", check_ns
    );
    let mut sum = 0.0;
    for (name, ns) in &stages {
        sum += ns;
        println!("    {name:<40} {ns:>8.1} ns");
    }
    println!("    {:<40} {:>8.1} ns", "sum of the stages above", sum);
    println!("  allowed requests also write:");
    for (name, ns) in &writes {
        println!("    {name:<40} {ns:>8.1} ns  (set includes a get for the cas)");
    }
}
