//! Property: refunding a committed spend puts a key back where it was: every later decision
//! is the same as if the spend never happened.

mod common;

use proptest::prelude::*;
use sluice_core::{Algorithm, Limit, Nanos, Quota};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

proptest! {
    #[test]
    fn refund_after_decide_restores_every_later_decision(
        algorithm in prop::sample::select(&ALGORITHMS[..]),
        limit in 1u64..=10,
        period_factor in 1u64..=100,
        history in prop::collection::vec((0u64..200, 1u64..=3), 0..40),
        gap in 0u64..200,
        cost in 1u64..=10,
        probes in prop::collection::vec((0u64..400, 0u64..=10), 1..20),
    ) {
        let period = limit * period_factor;
        let l = Limit::new(algorithm, Quota::new(limit, period, limit).unwrap());
        let mut state = None;
        let mut now: Nanos = 1_000_000;
        for (step, c) in history {
            now += step;
            let (decision, next) = l.decide(state.as_ref(), now, c);
            if decision.allowed {
                state = Some(next);
            }
        }
        now += gap;
        // A cost within capacity always passes at retry_after.
        let cost = 1 + (cost - 1) % limit;
        let (mut decision, mut spent) = l.decide(state.as_ref(), now, cost);
        if !decision.allowed {
            now += decision.retry_after;
            (decision, spent) = l.decide(state.as_ref(), now, cost);
        }
        prop_assert!(decision.allowed, "cost {} still denied at retry_after", cost);
        let refunded = l.refund(&spent, cost, now);
        for (offset, probe_cost) in probes {
            let at = now + offset;
            let before = l.decide(state.as_ref(), at, probe_cost).0;
            let after = l.decide(Some(&refunded), at, probe_cost).0;
            prop_assert_eq!(before, after, "probe of {} at +{}", probe_cost, offset);
        }
    }
}
