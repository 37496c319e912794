//! The widest quotas the core accepts (a period near the top of the `u64` range, limits near
//! it) over stored states whose counts and times are at their extremes (as a damaged or
//! foreign state may hold): every algorithm decides, refunds and ages them without overflow,
//! and a count above the limit is a denial, never an admission.

use sluice_core::state::{Log, LogEntry};
use sluice_core::{Algorithm, Limit, Quota, State};

const TIMES: [u64; 5] = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];

fn states() -> Vec<State> {
    let mut states = Vec::new();
    for t in TIMES {
        for n in [1, u64::MAX / 2, u64::MAX] {
            states.push(State::Gcra { tat: t });
            states.push(State::FixedWindow {
                window_start: t,
                count: n,
            });
            states.push(State::SlidingWindow {
                window_start: t,
                previous: n,
                current: n,
            });
            let log = Log::from_entries(vec![LogEntry { at: t, units: n }]).expect("a log");
            states.push(State::SlidingLog { log });
        }
    }
    states
}

#[test]
fn extreme_quotas_and_states_decide_without_overflow() {
    let quotas = [
        Quota::new(u64::MAX / 2, u64::MAX, u64::MAX).expect("the widest quota"),
        Quota::new(1, u64::MAX, 1).expect("one per ~584 years"),
        Quota::new(1000, u64::MAX - 1, 1000).expect("a sliding log's largest limit"),
    ];
    for quota in quotas {
        for algorithm in [
            Algorithm::Gcra,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::SlidingLog,
        ] {
            let limit = Limit::new(algorithm, quota);
            for state in states() {
                for now in TIMES {
                    for cost in [1, quota.limit(), u64::MAX] {
                        let (_, next) = limit.decide(Some(&state), now, cost);
                        let _ = limit.refund(&next, cost, now);
                        let _ = limit.idle_at(&next);
                    }
                }
            }
        }
    }
}

#[test]
fn a_full_sliding_window_over_the_longest_period_denies() {
    // One window covers all of time below u64::MAX; the stored count is at its top and the
    // cost at the limit, so `(current + cost) × period` is past even u128.
    let quota = Quota::new(u64::MAX / 2, u64::MAX, u64::MAX).expect("the widest quota");
    let limit = Limit::new(Algorithm::SlidingWindow, quota);
    let full = State::SlidingWindow {
        window_start: 0,
        previous: 0,
        current: u64::MAX,
    };
    let (decision, next) = limit.decide(Some(&full), u64::MAX / 2, u64::MAX / 2);
    assert!(!decision.allowed);
    assert_eq!(next, full, "a denial leaves the state as it was");
}
