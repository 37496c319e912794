//! Property: GCRA decides exactly like a plainly written token bucket (capacity `burst`, one
//! token back every emission interval, tracked as credit in nanoseconds).

mod common;

use proptest::prelude::*;
use sluice_core::{Algorithm, Limit, Nanos, Quota};

/// The token bucket written the obvious way.
struct TokenBucket {
    interval: Nanos,
    capacity: Nanos,
    credit: Nanos,
    last: Option<Nanos>,
}

impl TokenBucket {
    fn take(&mut self, now: Nanos, cost: u64) -> (bool, u64) {
        if let Some(last) = self.last {
            self.credit = (self.credit + (now - last)).min(self.capacity);
        }
        self.last = Some(now);
        let needed = cost * self.interval;
        if needed <= self.credit {
            self.credit -= needed;
            (true, self.credit / self.interval)
        } else {
            (false, 0)
        }
    }
}

proptest! {
    #[test]
    fn gcra_agrees_with_a_token_bucket(
        limit in 1u64..=20,
        period_factor in 1u64..=1000,
        burst_is_limit in any::<bool>(),
        burst in 1u64..=30,
        start in 0u64..1u64 << 50,
        steps in prop::collection::vec((0u64..5_000, 0u64..=6), 1..200),
    ) {
        let period = limit * period_factor;
        let burst = if burst_is_limit { limit } else { burst };
        let l = Limit::new(Algorithm::Gcra, Quota::new(limit, period, burst).unwrap());
        let interval = l.quota.emission_interval();
        let mut model = TokenBucket {
            interval,
            capacity: burst * interval,
            credit: burst * interval,
            last: None,
        };
        let mut state = None;
        let mut now = start;
        for (gap, cost) in steps {
            now += gap;
            let (decision, next) = l.decide(state.as_ref(), now, cost);
            let (allowed, remaining) = model.take(now, cost);
            prop_assert_eq!(decision.allowed, allowed, "cost {} at {}", cost, now);
            if allowed {
                prop_assert_eq!(decision.remaining, remaining);
                state = Some(next);
            }
        }
    }
}
