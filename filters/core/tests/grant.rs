//! Leases: `Limit::grant` gives the largest slice `decide` admits and commits exactly what a
//! request of that cost would; a denied grant commits nothing; `Limit::restored` says what a
//! return of unspent units gave back.

mod common;

use common::{BASE, SECOND};
use proptest::prelude::*;
use sluice_core::{Algorithm, Limit, Nanos, Quota, State};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

/// A key driven through `history` (gaps and costs), committing what is allowed.
fn history_state(l: &Limit, history: &[(u64, u64)], start: Nanos) -> (Option<State>, Nanos) {
    let mut state = None;
    let mut now = start;
    for &(step, cost) in history {
        now += step;
        let (decision, next) = l.decide(state.as_ref(), now, cost);
        if decision.allowed {
            state = Some(next);
        }
    }
    (state, now)
}

proptest! {
    /// For every algorithm: the grant is admitted by `decide`, one more unit (within `want`)
    /// is not, and the grant's decision and state are `decide`'s for that cost.
    #[test]
    fn grant_is_the_largest_admissible_cost(
        algorithm in prop::sample::select(&ALGORITHMS[..]),
        limit in 1u64..=20,
        burst in 1u64..=30,
        period_factor in 1u64..=100,
        history in prop::collection::vec((0u64..300, 1u64..=5), 0..30),
        gap in 0u64..300,
        min in 0u64..=25,
        extra in 0u64..=40,
    ) {
        let period = limit * period_factor;
        let burst = if algorithm == Algorithm::Gcra { burst } else { limit };
        let l = Limit::new(algorithm, Quota::new(limit, period, burst).unwrap());
        let (state, now) = history_state(&l, &history, 1_000_000);
        let now = now + gap;
        let want = min + extra;
        let grant = l.grant(state.as_ref(), now, min, want);

        if grant.granted == 0 {
            prop_assert!(grant.state.is_none(), "a grant of nothing commits nothing");
            if min > 0 {
                let (denied, _) = l.decide(state.as_ref(), now, min);
                prop_assert!(!denied.allowed, "min {} was admissible", min);
                prop_assert_eq!(grant.decision, denied);
            }
            // Nothing between min and want is admitted either (monotone in cost).
            for k in min.max(1)..=want {
                prop_assert!(!l.decide(state.as_ref(), now, k).0.allowed, "{} fits", k);
            }
        } else {
            prop_assert!((min..=want).contains(&grant.granted));
            let (decision, next) = l.decide(state.as_ref(), now, grant.granted);
            prop_assert!(decision.allowed);
            prop_assert_eq!(grant.decision, decision);
            prop_assert_eq!(grant.state, Some(next));
            // No cost between the grant and want fits: the search found the largest.
            for k in grant.granted + 1..=want {
                prop_assert!(!l.decide(state.as_ref(), now, k).0.allowed,
                    "{} fits but only {} was granted", k, grant.granted);
            }
        }
    }

    /// Admission is monotone in cost: if k units fit, every smaller cost fits too (what the
    /// binary search relies on).
    #[test]
    fn admission_is_monotone_in_cost(
        algorithm in prop::sample::select(&ALGORITHMS[..]),
        limit in 1u64..=20,
        period_factor in 1u64..=100,
        history in prop::collection::vec((0u64..300, 1u64..=5), 0..30),
        gap in 0u64..300,
    ) {
        let period = limit * period_factor;
        let l = Limit::new(algorithm, Quota::new(limit, period, limit).unwrap());
        let (state, now) = history_state(&l, &history, 1_000_000);
        let now = now + gap;
        let mut seen_denied = false;
        for k in 1..=limit + 2 {
            let allowed = l.decide(state.as_ref(), now, k).0.allowed;
            prop_assert!(!(allowed && seen_denied), "cost {} fits after a smaller one did not", k);
            seen_denied |= !allowed;
        }
    }

    /// Grants never hand out more than the limit in a window: repeated grants at the same
    /// instant add up to exactly what single-unit requests would have been admitted.
    #[test]
    fn grants_add_up_to_the_quota(
        algorithm in prop::sample::select(&ALGORITHMS[..3]),
        limit in 1u64..=50,
        want in 1u64..=60,
    ) {
        let l = Limit::new(algorithm, Quota::new(limit, 60 * SECOND, limit).unwrap());
        let mut state = None;
        let mut total = 0;
        loop {
            let grant = l.grant(state.as_ref(), BASE, 1, want);
            if grant.granted == 0 {
                break;
            }
            total += grant.granted;
            state = grant.state;
        }
        prop_assert_eq!(total, limit);
    }

    /// Returning what a grant handed out, in the same window, restores every later decision
    /// (the return is the core's refund) and `restored` counts exactly the units returned.
    #[test]
    fn a_full_return_in_the_same_window_undoes_the_grant(
        algorithm in prop::sample::select(&ALGORITHMS[..3]),
        limit in 2u64..=20,
        history in prop::collection::vec((0u64..3, 1u64..=2), 0..10),
        want in 1u64..=20,
        probes in prop::collection::vec((0u64..30, 1u64..=3), 1..10),
    ) {
        // A long period: everything happens within one window.
        let l = Limit::new(algorithm, Quota::new(limit, 60 * SECOND, limit).unwrap());
        let (state, now) = history_state(&l, &history, BASE);
        let grant = l.grant(state.as_ref(), now, 1, want);
        prop_assume!(grant.granted > 0);
        let granted_state = grant.state.clone().unwrap();
        let back_at = now + 5;
        let returned = l.refund(&granted_state, grant.granted, now);
        prop_assert_eq!(l.restored(&granted_state, &returned, back_at), grant.granted);
        for (offset, cost) in probes {
            let at = back_at + offset;
            let without = l.decide(state.as_ref(), at, cost).0;
            let after_return = l.decide(Some(&returned), at, cost).0;
            prop_assert_eq!(without, after_return);
        }
    }
}

#[test]
fn every_algorithm_grants_what_is_left_then_denies_with_min_s_retry() {
    for algorithm in ALGORITHMS {
        let l = Limit::new(algorithm, Quota::new(10, 60 * SECOND, 10).unwrap());
        let first = l.grant(None, BASE, 1, 7);
        assert_eq!(first.granted, 7, "{algorithm:?}");
        assert_eq!(first.decision.remaining, 3, "{algorithm:?}");
        let second = l.grant(first.state.as_ref(), BASE, 1, 7);
        assert_eq!(second.granted, 3, "{algorithm:?}");
        assert_eq!(second.decision.remaining, 0, "{algorithm:?}");
        let third = l.grant(second.state.as_ref(), BASE, 2, 7);
        assert_eq!(third.granted, 0, "{algorithm:?}");
        assert!(third.state.is_none(), "{algorithm:?}");
        assert!(!third.decision.allowed, "{algorithm:?}");
        let denied_min = l.decide(second.state.as_ref(), BASE, 2).0;
        assert_eq!(third.decision, denied_min, "{algorithm:?}");
    }
}

#[test]
fn a_min_above_capacity_is_denied_for_a_period() {
    let l = Limit::new(Algorithm::Gcra, Quota::new(10, 60 * SECOND, 5).unwrap());
    let grant = l.grant(None, BASE, 6, 8);
    assert_eq!(grant.granted, 0);
    assert_eq!(grant.decision.retry_after, 60 * SECOND);
    // A want above capacity is capped at capacity (burst for GCRA).
    assert_eq!(l.grant(None, BASE, 1, u64::MAX).granted, 5);
}

#[test]
fn a_want_below_min_is_taken_as_min() {
    let l = Limit::new(
        Algorithm::FixedWindow,
        Quota::new(10, 60 * SECOND, 10).unwrap(),
    );
    assert_eq!(l.grant(None, BASE, 4, 1).granted, 4);
}

#[test]
fn a_huge_want_takes_few_decisions_and_the_exact_answer() {
    // A limit of 10^12 per day: the search is over 40 bits, and must land exactly.
    let l = Limit::new(
        Algorithm::SlidingWindow,
        Quota::new(1_000_000_000_000, 86_400 * SECOND, 1_000_000_000_000).unwrap(),
    );
    let (_, state) = l.decide(None, BASE, 123_456_789);
    let grant = l.grant(Some(&state), BASE + SECOND, 1, u64::MAX);
    assert_eq!(grant.granted, 1_000_000_000_000 - 123_456_789);
    assert_eq!(grant.decision.remaining, 0);
}

#[test]
fn a_return_for_a_window_that_has_ended_restores_nothing() {
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let l = Limit::new(algorithm, Quota::new(10, 60 * SECOND, 10).unwrap());
        let grant = l.grant(None, BASE, 1, 10);
        let state = grant.state.unwrap();
        // Returned two windows later (the sliding window's previous window has gone too).
        let later = BASE + 120 * SECOND;
        let returned = l.refund(&state, 10, BASE);
        assert_eq!(l.restored(&state, &returned, later), 0, "{algorithm:?}");
        // Returned in the same window: all of it comes back.
        assert_eq!(l.restored(&state, &returned, BASE + SECOND), 10);
    }
    // The sliding window's next window still weighs the previous one: a return there
    // takes the units back from it.
    let l = Limit::new(
        Algorithm::SlidingWindow,
        Quota::new(10, 60 * SECOND, 10).unwrap(),
    );
    let state = l.grant(None, BASE, 1, 10).state.unwrap();
    let next_window = BASE + 61 * SECOND;
    let (_, rolled) = l.decide(Some(&state), next_window, 0);
    let returned = l.refund(&rolled, 4, BASE);
    assert_eq!(l.restored(&rolled, &returned, next_window), 4);
}

#[test]
fn a_gcra_return_restores_only_what_the_bucket_still_owes() {
    // 10 per 10 s: one unit per second.
    let l = Limit::new(Algorithm::Gcra, Quota::new(10, 10 * SECOND, 10).unwrap());
    let state = l.grant(None, BASE, 1, 5).state.unwrap();
    let returned = l.refund(&state, 5, BASE);
    assert_eq!(l.restored(&state, &returned, BASE), 5);
    // Three seconds later the bucket has refilled 3 of the 5 by itself: 2 come back.
    assert_eq!(l.restored(&state, &returned, BASE + 3 * SECOND), 2);
    assert_eq!(l.restored(&state, &returned, BASE + 10 * SECOND), 0);
}

#[test]
fn only_the_sliding_log_refuses_leases() {
    assert!(Algorithm::Gcra.supports_leases());
    assert!(Algorithm::FixedWindow.supports_leases());
    assert!(Algorithm::SlidingWindow.supports_leases());
    assert!(!Algorithm::SlidingLog.supports_leases());
}
