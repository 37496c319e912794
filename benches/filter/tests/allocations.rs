//! Allocations in the guest per request once warmed up, counted by the filter built with
//! `count-allocations` (BENCHMARKS.md): the filter itself allocates nothing per request; the
//! only allocations are the host's copies of its answers into guest memory, one per buffer
//! the ABI hands over (the header map, the peer address, each rule's shared-data value).

use sluice_filter_bench::{Subject, allocations_per_request};

const WARMUP: u64 = 300;
const REQUESTS: u64 = 200;

#[test]
fn a_warmed_up_filter_allocates_nothing_of_its_own_per_request() {
    for (subject, rules) in [
        (Subject::SluiceOneRule, 1.0),
        (Subject::SluiceFiveRules, 5.0),
        (Subject::SluiceNoRuleApplies, 0.0),
    ] {
        let allocations = allocations_per_request(subject, WARMUP, REQUESTS)
            .unwrap_or_else(|| panic!("{}: no allocation count", subject.name()));
        assert_eq!(allocations.own, 0.0, "{}: {allocations:?}", subject.name());
        // The header map, the peer address (read only when a rule applies and keys by it),
        // and one shared-data value per rule.
        let peer = if rules > 0.0 { 1.0 } else { 0.0 };
        assert_eq!(
            allocations.host_copies,
            1.0 + peer + rules,
            "{}: {allocations:?}",
            subject.name()
        );
    }
}
