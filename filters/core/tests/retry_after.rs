//! Property: `retry_after` is exact for every algorithm: the same request is still denied one
//! nanosecond earlier and passes at exactly `now + retry_after` (when nothing else is spent).

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
    fn a_denied_request_passes_exactly_at_retry_after(
        algorithm in prop::sample::select(&ALGORITHMS[..]),
        limit in 1u64..=10,
        burst in 1u64..=10,
        period_factor in 1u64..=100,
        history in prop::collection::vec((0u64..100, 1u64..=4), 1..60),
        cost in 1u64..=10,
    ) {
        let period = limit * period_factor;
        let burst = if algorithm == Algorithm::Gcra { burst } else { limit };
        let l = Limit::new(algorithm, Quota::new(limit, period, burst).unwrap());
        let cost = 1 + (cost - 1) % l.capacity();
        let mut state = None;
        let mut now: Nanos = 5_000_000;
        for (gap, c) in history {
            now += gap;
            let (decision, next) = l.decide(state.as_ref(), now, c);
            if decision.allowed {
                state = Some(next);
            }
        }
        // Spend at `now` until denied (at most capacity / cost + 1 requests).
        let decision = loop {
            let (decision, next) = l.decide(state.as_ref(), now, cost);
            if !decision.allowed {
                break decision;
            }
            state = Some(next);
        };
        let retry_at = now + decision.retry_after;
        prop_assert!(!l.decide(state.as_ref(), retry_at - 1, cost).0.allowed, "passes before retry_after");
        prop_assert!(l.decide(state.as_ref(), retry_at, cost).0.allowed, "still denied at retry_after");
    }
}
