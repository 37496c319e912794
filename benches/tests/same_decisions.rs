//! The comparison is like for like: with one fake clock, governor and both sluice contenders
//! admit exactly the same requests, for a hot key and for many keys.

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use sluice_bench::contenders::{Contender, Governor, SluiceDecide, SluiceLimiter};
use sluice_bench::keys::{Distribution, KeySet};

fn decisions<C: Contender>(
    contender: &C,
    clock: &FakeRelativeClock,
    sequence: &[u32],
    step: Duration,
) -> Vec<bool> {
    let mut worker = contender.worker();
    sequence
        .iter()
        .map(|&key| {
            clock.advance(step);
            contender.decide(&mut worker, key as usize)
        })
        .collect()
}

fn assert_same_decisions(distribution: Distribution, requests: usize, step: Duration) {
    let keys = KeySet::addresses(distribution.key_count());
    let sequence = distribution.sequence(requests, 7);
    let runs: Vec<Vec<bool>> = (0..3)
        .map(|which| {
            let clock = FakeRelativeClock::default();
            match which {
                0 => {
                    let governor = Governor::with_clock(keys.clone(), clock.clone());
                    decisions(&governor, &clock, &sequence, step)
                }
                1 => {
                    let limiter = SluiceLimiter::new(&keys, clock.clone());
                    decisions(&limiter, &clock, &sequence, step)
                }
                _ => {
                    let decide = SluiceDecide::new(keys.clone(), clock.clone());
                    decisions(&decide, &clock, &sequence, step)
                }
            }
        })
        .collect();
    let admitted = runs[0].iter().filter(|&&allowed| allowed).count();
    assert!(
        admitted > 0 && admitted < requests,
        "{admitted} of {requests}: the quota binds"
    );
    assert_eq!(
        runs[1], runs[0],
        "sluice Limiter::check decides as governor"
    );
    assert_eq!(runs[2], runs[0], "sluice Limit::decide decides as governor");
}

#[test]
fn a_hot_key_is_admitted_alike() {
    // One request every 0.7 ms against 100/s: the burst, then one in ~14.
    assert_same_decisions(Distribution::HotKey, 20_000, Duration::from_micros(700));
}

#[test]
fn many_keys_are_admitted_alike() {
    // 50 keys, one request every 0.1 ms overall: each key asks about twice its quota.
    assert_same_decisions(
        Distribution::Uniform { keys: 50 },
        50_000,
        Duration::from_micros(100),
    );
}
