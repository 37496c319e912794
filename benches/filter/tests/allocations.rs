//! Allocations in the guest per request once warmed up, counted by the filter built with
//! `count-allocations` (BENCHMARKS.md, "Allocations"), by who makes them: the host's copies
//! of its answers into guest memory (one per buffer the ABI hands over: the header map, the
//! peer address, each rule's shared-data value), the HTTP context's box (the SDK's dispatcher
//! takes a `Box<dyn HttpContext>` per stream), and the rest, which the filter, the policy and
//! the core make. The filter's glue makes none of those (the header map is read in place, a
//! denial's headers are serialised into a reused buffer, metrics are counted in place); the
//! policy's and the core's per-request values are pinned here at their counts, so that a
//! change adding one fails (the target of none is not met yet: BENCHMARKS.md says what
//! remains and why).

use sluice_filter_bench::{Subject, allocations_per_request};

const WARMUP: u64 = 300;
const REQUESTS: u64 = 200;

#[test]
fn a_warmed_up_request_allocates_only_what_is_pinned() {
    // (subject, rules that apply, the policy's and the core's allocations per request)
    for (subject, rules, own) in [
        (Subject::SluiceOneRule, 1.0, OWN_ONE_RULE),
        (Subject::SluiceFiveRules, 5.0, OWN_FIVE_RULES),
        (Subject::SluiceNoRuleApplies, 0.0, OWN_NO_RULE_APPLIES),
    ] {
        let name = subject.name();
        let allocations = allocations_per_request(subject, WARMUP, REQUESTS)
            .unwrap_or_else(|| panic!("{name}: no allocation count"));
        // The peer address is read only when an applying rule keys by it.
        let peer = if rules > 0.0 { 1.0 } else { 0.0 };
        assert_eq!(
            allocations.host_copies,
            1.0 + peer + rules,
            "{name}: {allocations:?}"
        );
        assert_eq!(allocations.context, 1.0, "{name}: {allocations:?}");
        assert_eq!(allocations.own, own, "{name}: {allocations:?}");
    }
}

/// BENCHMARKS.md, "Allocations": the checks, their rule indices, the key, the verdict's
/// outcomes, the response headers and their two values; with five rules, five keys and the
/// checks and indices grown once past four.
const OWN_ONE_RULE: f64 = 7.0;
const OWN_FIVE_RULES: f64 = 13.0;
const OWN_NO_RULE_APPLIES: f64 = 0.0;
