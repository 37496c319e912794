//! Property: over arbitrary request sequences (times non-decreasing, any costs), the units each
//! algorithm admits in any stretch of time never exceed its documented bound.

mod common;

use common::{admitted, units_between};
use proptest::prelude::*;
use sluice_core::{Algorithm, Limit, Nanos, Quota};

/// A quota with a short period (so sequences cross many windows), and the requests.
fn scenario() -> impl Strategy<Value = (u64, Nanos, u64, Nanos, Vec<(Nanos, u64)>)> {
    (1u64..=12, 1u64..=4)
        .prop_flat_map(|(limit, burst_factor)| {
            (
                Just(limit),
                // period ≥ limit so the quota is valid; small so windows roll often.
                limit..=limit * 40,
                1..=limit * burst_factor,
                0u64..1_000_000,
                prop::collection::vec((0u64..30, 0u64..=5), 1..160),
            )
        })
        .prop_map(|(limit, period, burst, start, steps)| {
            // Gaps are in units of period/20, sometimes zero: bursts and quiet spells.
            let mut t = start;
            let requests = steps
                .into_iter()
                .map(|(gap, cost)| {
                    t += gap * (period / 20).max(1) / 3;
                    (t, cost)
                })
                .collect();
            (limit, period, burst, start, requests)
        })
}

proptest! {
    #[test]
    fn gcra_admits_at_most_burst_plus_one_unit_per_interval(
        (limit, period, burst, _start, requests) in scenario()
    ) {
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
    fn fixed_window_admits_at_most_limit_per_window_and_twice_limit_per_period(
        (limit, period, _burst, _start, requests) in scenario()
    ) {
        let l = Limit::new(Algorithm::FixedWindow, Quota::new(limit, period, limit).unwrap());
        let admitted = admitted(&l, &requests);
        for &(from, _) in &admitted {
            let window = from - from % period;
            prop_assert!(units_between(&admitted, window, window + period) <= limit);
            prop_assert!(units_between(&admitted, from, from + period) <= 2 * limit);
        }
    }

    #[test]
    fn sliding_log_admits_at_most_limit_in_any_period(
        (limit, period, _burst, _start, requests) in scenario()
    ) {
        let l = Limit::new(Algorithm::SlidingLog, Quota::new(limit, period, limit).unwrap());
        let admitted = admitted(&l, &requests);
        for &(from, _) in &admitted {
            prop_assert!(units_between(&admitted, from, from + period) <= limit);
        }
    }

    /// The bound in the sliding window module docs: an interval of one period starting `e`
    /// into window k holds at most `limit + a − c (P − e) / P` units, where `c` is window k's
    /// count and `a` the part of it inside the interval; hence at most `2 limit − 1`. And a
    /// denial means the exact usage plus the request exceeds `limit` minus the previous
    /// window's weighted count.
    #[test]
    fn sliding_window_stays_within_its_documented_error_bound(
        (limit, period, _burst, _start, requests) in scenario()
    ) {
        let l = Limit::new(Algorithm::SlidingWindow, Quota::new(limit, period, limit).unwrap());
        let p = u128::from(period);
        let mut state = None;
        let mut admitted: Vec<(Nanos, u64)> = Vec::new();
        for &(t, cost) in &requests {
            let (decision, next) = l.decide(state.as_ref(), t, cost);
            let window = t - t % period;
            let elapsed = u128::from(t - window);
            if decision.allowed {
                if cost > 0 {
                    state = Some(next);
                    admitted.push((t, cost));
                }
            } else if cost <= limit {
                let previous = units_between(&admitted, window.saturating_sub(period), window);
                let exact = units_between(&admitted, (t + 1).saturating_sub(period), t + 1);
                // (exact + cost) > limit − previous (P − e) / P, scaled by P.
                prop_assert!(
                    u128::from(exact + cost) * p + u128::from(previous) * (p - elapsed)
                        > u128::from(limit) * p,
                    "denied {cost} at {t} with exact usage {exact}, previous {previous}"
                );
            }
        }
        for &(from, _) in &admitted {
            let window = from - from % period;
            let e = u128::from(from - window);
            let c = units_between(&admitted, window, window + period);
            let a = units_between(&admitted, from, window + period);
            let total = units_between(&admitted, from, from + period);
            prop_assert!(units_between(&admitted, window, window + period) <= limit);
            prop_assert!(
                u128::from(total) * p <= u128::from(limit + a) * p - u128::from(c) * (p - e),
                "{total} units in [{from}, +P): window count {c}, {a} of it inside, e = {e}"
            );
            prop_assert!(total < 2 * limit);
        }
    }
}
