//! The benchmark's machinery works on 1 and 2 threads: every decision is made and counted,
//! and interleaved rounds give one run per contender per round. (Speed itself is measured by
//! `cargo bench -p sluice-bench`, never asserted here.)

use governor::clock::QuantaClock;
use sluice_bench::contenders::{Governor, SluiceDecide, SluiceLimiter};
use sluice_bench::keys::{Distribution, KeySet};
use sluice_bench::measure::{interleave, run};

#[test]
fn rounds_run_every_contender_on_two_threads() {
    let distribution = Distribution::Uniform { keys: 1_000 };
    let keys = KeySet::addresses(distribution.key_count());
    let sequence = distribution.sequence(4_096, 3);
    let governor = Governor::keyed(keys.clone());
    let limiter = SluiceLimiter::new(&keys, QuantaClock::default());
    let decide = SluiceDecide::new(keys.clone(), QuantaClock::default());
    let rounds = interleave(
        3,
        &mut [
            &mut || run(&governor, 2, &sequence, 2_000),
            &mut || run(&limiter, 2, &sequence, 2_000),
            &mut || run(&decide, 2, &sequence, 2_000),
        ],
    );
    for runs in &rounds.runs {
        assert_eq!(runs.len(), 3);
        for run in runs {
            assert_eq!(run.decisions, 4_000);
            // 1,000 keys with a burst of 100 each: 4,000 requests in well under a second
            // are all admitted.
            assert_eq!(run.admitted, run.decisions);
        }
    }
    assert!(rounds.median_ratio(1, 0) > 0.0);
}
