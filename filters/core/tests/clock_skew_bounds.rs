//! Property: a clock that goes backwards and jumps forwards never lets an algorithm admit more
//! than its documented bound. A request at a time earlier than the latest admission is counted
//! no earlier than that admission (GCRA never refills, the window algorithms count in the
//! stored window or at the newest log entry), so the bounds of `admission_bounds.rs` hold with
//! every admission placed at the latest admission time so far. (Requests that spend nothing,
//! denied ones and cost 0, leave no state, so their times do not count.)

mod common;

use common::{admitted, units_between};
use proptest::prelude::*;
use sluice_core::{Algorithm, Limit, Nanos, Quota};

/// A quota, and requests whose times step back as well as forwards (by up to two periods),
/// with occasional jumps far ahead.
fn scenario() -> impl Strategy<Value = (u64, Nanos, u64, Vec<(Nanos, u64)>)> {
    (1u64..=10, 1u64..=3)
        .prop_flat_map(|(limit, burst_factor)| {
            (
                Just(limit),
                limit..=limit * 40,
                1..=limit * burst_factor,
                prop::collection::vec((-40i64..40, 0u64..=4, 0u8..40), 1..160),
            )
        })
        .prop_map(|(limit, period, burst, steps)| {
            let step = (period / 20).max(1);
            let mut t: Nanos = 1 << 40;
            let requests = steps
                .into_iter()
                .map(|(gap, cost, jump)| {
                    t = if jump == 0 {
                        t + 1_000 * period
                    } else if gap < 0 {
                        t.saturating_sub(gap.unsigned_abs() * step)
                    } else {
                        t + gap.unsigned_abs() * step
                    };
                    (t, cost)
                })
                .collect();
            (limit, period, burst, requests)
        })
}

proptest! {
    #[test]
    fn gcra_admits_at_most_burst_plus_one_unit_per_interval((limit, period, burst, requests) in scenario()) {
        let l = Limit::new(Algorithm::Gcra, Quota::new(limit, period, burst).unwrap());
        let t = l.quota.emission_interval();
        let admitted = admitted(&l, &requests);
        for (i, &(from, _)) in admitted.iter().enumerate() {
            let mut units = 0;
            for &(at, cost) in &admitted[i..] {
                units += cost;
                prop_assert!(
                    units <= burst + (at - from) / t,
                    "{units} units in [{from}, {at}] exceed burst {burst} + elapsed / {t}"
                );
            }
        }
    }

    #[test]
    fn fixed_window_admits_at_most_limit_per_window((limit, period, _burst, requests) in scenario()) {
        let l = Limit::new(Algorithm::FixedWindow, Quota::new(limit, period, limit).unwrap());
        let admitted = admitted(&l, &requests);
        for &(from, _) in &admitted {
            let window = from - from % period;
            prop_assert!(units_between(&admitted, window, window + period) <= limit);
            prop_assert!(units_between(&admitted, from, from + period) <= 2 * limit);
        }
    }

    #[test]
    fn sliding_window_admits_at_most_limit_per_window_and_under_twice_per_period(
        (limit, period, _burst, requests) in scenario()
    ) {
        let l = Limit::new(Algorithm::SlidingWindow, Quota::new(limit, period, limit).unwrap());
        let admitted = admitted(&l, &requests);
        for &(from, _) in &admitted {
            let window = from - from % period;
            prop_assert!(units_between(&admitted, window, window + period) <= limit);
            prop_assert!(units_between(&admitted, from, from + period) < 2 * limit);
        }
    }

    #[test]
    fn sliding_log_admits_at_most_limit_in_any_period((limit, period, _burst, requests) in scenario()) {
        let l = Limit::new(Algorithm::SlidingLog, Quota::new(limit, period, limit).unwrap());
        let admitted = admitted(&l, &requests);
        for &(from, _) in &admitted {
            prop_assert!(units_between(&admitted, from, from + period) <= limit);
        }
    }
}
