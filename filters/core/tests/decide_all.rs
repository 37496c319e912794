//! `Limiter::decide_all` (in-memory, for a Durable Object) decides exactly like
//! `Limiter::check` over a store.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, State, Status, StoreError};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];
const NAMES: [&str; 3] = ["r0", "r1", "r2"];

fn rules() -> impl Strategy<Value = Vec<(Limit, Mode)>> {
    prop::collection::vec(
        (
            prop::sample::select(&ALGORITHMS[..]),
            1u64..=6,
            1u64..=20,
            any::<bool>(),
        )
            .prop_map(|(algorithm, requests, seconds, shadow)| {
                let burst = if algorithm == Algorithm::Gcra {
                    requests + 1
                } else {
                    requests
                };
                let mode = if shadow { Mode::Shadow } else { Mode::Enforce };
                (limit(algorithm, requests, seconds * SECOND, burst), mode)
            }),
        1..=3,
    )
}

proptest! {
    #[test]
    fn decide_all_and_check_give_the_same_verdicts(
        rules in rules(),
        requests in prop::collection::vec((0u64..3 * SECOND, 0u8..4, 0u64..=3), 1..80),
    ) {
        let mut store = MemoryStore::new(Semantics::Envoy);
        let mut limiter = Limiter::new(SEED, 8);
        let mut states: BTreeMap<(usize, u8), State> = BTreeMap::new();
        let mut now = BASE;
        for (gap, key, cost) in requests {
            now += gap;
            let key_text = format!("client-{key}");
            let checks: Vec<Check<'_>> = rules
                .iter()
                .enumerate()
                .map(|(i, (l, mode))| Check {
                    mode: *mode,
                    ..check(NAMES[i], *l, &key_text, cost)
                })
                .collect();
            let stored = limiter.check(&checks, now, &mut store);
            let mut held: Vec<Option<State>> =
                (0..rules.len()).map(|i| states.get(&(i, key)).cloned()).collect();
            let in_memory = Limiter::decide_all(&checks, &mut held, now);
            prop_assert_eq!(&in_memory, &stored);
            for (i, state) in held.into_iter().enumerate() {
                if let Some(state) = state {
                    states.insert((i, key), state);
                }
            }
        }
    }
}

#[test]
fn states_change_only_when_the_request_is_allowed() {
    let a = limit(Algorithm::Gcra, 5, MINUTE, 5);
    let b = limit(Algorithm::FixedWindow, 1, MINUTE, 1);
    let checks = [check("a", a, "k", 1), check("b", b, "k", 1)];
    let mut states = vec![None, None];
    assert!(Limiter::decide_all(&checks, &mut states, BASE).allowed);
    let after_first = states.clone();
    let verdict = Limiter::decide_all(&checks, &mut states, BASE);
    assert!(!verdict.allowed);
    assert_eq!(states, after_first);
}

#[test]
fn a_check_without_a_state_slot_gets_its_failure_mode() {
    let l = limit(Algorithm::Gcra, 5, MINUTE, 5);
    let mut checks = [check("a", l, "k", 1), check("b", l, "k", 1)];
    checks[1].failure_mode = FailureMode::Closed;
    let mut states = vec![None];
    let verdict = Limiter::decide_all(&checks, &mut states, BASE);
    assert!(!verdict.allowed);
    assert_eq!(verdict.outcomes[1].status, Status::FailedClosed);
    assert_eq!(
        verdict.outcomes[1].store_error,
        Some(StoreError::Unavailable)
    );
    assert_eq!(states, vec![None]);
}

/// The per-rule steps a remote store composes (`decide_rule`, `failure_outcome`,
/// `request_allowed`) give `decide_all`'s verdict, failures included.
#[test]
fn the_per_rule_steps_compose_into_decide_all() {
    use sluice_core::limiter::{decide_rule, failure_outcome, request_allowed};
    let a = limit(Algorithm::SlidingWindow, 3, MINUTE, 3);
    let b = limit(Algorithm::Gcra, 2, MINUTE, 2);
    let mut checks = [check("a", a, "k", 1), check("b", b, "k", 1)];
    checks[1].failure_mode = FailureMode::Closed;
    let mut states = vec![None, None];
    for step in 0..4u64 {
        let now = BASE + step;
        let composed: Vec<_> = checks
            .iter()
            .zip(&states)
            .map(|(c, s)| decide_rule(c, Ok(s.as_ref()), now))
            .collect();
        let outcomes: Vec<_> = composed.iter().map(|(o, _)| *o).collect();
        let expected = Limiter::decide_all(&checks, &mut states, now);
        assert_eq!(outcomes, expected.outcomes, "step {step}");
        assert_eq!(request_allowed(&outcomes), expected.allowed);
        if expected.allowed {
            for ((_, next), state) in composed.iter().zip(&states) {
                assert_eq!(next.as_ref(), state.as_ref());
            }
        }
    }
    // A store error: the same outcome as a missing state slot in decide_all.
    let (failed, next) = decide_rule(&checks[1], Err(StoreError::Unavailable), BASE);
    assert!(next.is_none());
    let verdict = Limiter::decide_all(&checks, &mut [None], BASE);
    assert_eq!(failed, verdict.outcomes[1]);
    assert_eq!(
        failure_outcome(&checks[1], None, StoreError::Unavailable, 0),
        failed
    );
    assert!(!request_allowed(&[failed]));
}
