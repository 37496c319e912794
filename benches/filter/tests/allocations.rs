//! Allocations in the guest per request once warmed up, counted by the filter built with
//! `count-allocations` (BENCHMARKS.md, "Allocations"), by who makes them: the host's copies
//! of its answers into guest memory (one per buffer the ABI hands over: the header map, the
//! peer address, each rule's shared-data value), the HTTP context's box (the SDK's dispatcher
//! takes a `Box<dyn HttpContext>` per stream), and the rest, which the filter, the policy and
//! the core make. The rest is none, allowed or denied, with one rule or five, keyed or tiered
//! by headers or JWT claims: the header map is read in place, the policy builds each
//! request's checks, keys, token payload, attribute values, verdict and headers in
//! buffers the VM keeps (`RequestBuffers`), the `RateLimit-Policy` items are rendered at
//! configure time, the limiter reuses its own buffers, and a denial's headers are serialised
//! into a reused buffer.

use sluice_filter_bench::{Subject, allocations_per_request, held_allocations};

const WARMUP: u64 = 300;
const REQUESTS: u64 = 200;

#[test]
fn a_warmed_up_request_allocates_only_what_the_abi_and_the_sdk_require() {
    // (subject, rules that apply, whether the peer address is read)
    for (subject, rules, peer) in [
        (Subject::SluiceOneRule, 1.0, true),
        (Subject::SluiceFiveRules, 5.0, true),
        (Subject::SluiceOneRuleDenied, 1.0, true),
        (Subject::SluiceFiveRulesDenied, 5.0, true),
        (Subject::SluiceOneRuleNoHeaders, 1.0, true),
        (Subject::SluiceNoRuleApplies, 0.0, false),
        // Keyed by a header or a JWT claim, tiered by either: the token's decoded payload and
        // the tier's value are built in reused buffers too; no rule reads the peer address.
        (Subject::SluiceHeaderKey, 1.0, false),
        (Subject::SluiceClaimKey, 1.0, false),
        (Subject::SluiceTieredByHeader, 1.0, false),
        (Subject::SluiceTieredByClaim, 1.0, false),
        // A concurrency rule reads its bucket twice (the check, the release at the stream's
        // end); the slot's key and list go back to the reused buffers.
        (Subject::SluiceConcurrency, 2.0, true),
        // A global rule decided from its leased slice: the slice's bucket is read and written
        // in buffers the VM keeps, and the request is decided and rendered in its buffers.
        (Subject::SluiceLeased, 1.0, true),
    ] {
        let name = subject.name();
        let allocations = allocations_per_request(subject, WARMUP, REQUESTS)
            .unwrap_or_else(|| panic!("{name}: no allocation count"));
        let peer = if peer { 1.0 } else { 0.0 };
        assert_eq!(
            allocations.host_copies,
            1.0 + peer + rules,
            "{name}: {allocations:?}"
        );
        assert_eq!(allocations.context, 1.0, "{name}: {allocations:?}");
        assert_eq!(allocations.own, 0.0, "{name}: {allocations:?}");
    }
}

/// Held requests allocate nothing of their own either: the queue of held streams keeps its
/// capacity, and the tick that releases them builds nothing.
#[test]
fn a_held_request_and_its_release_allocate_nothing_of_the_filters_own() {
    let allocations = held_allocations(WARMUP, REQUESTS).expect("an allocation count");
    // Per request, both of each pair: the header map, the peer address, the one bucket.
    assert_eq!(allocations.host_copies, 3.0, "{allocations:?}");
    assert_eq!(allocations.context, 1.0, "{allocations:?}");
    assert_eq!(allocations.own, 0.0, "{allocations:?}");
}
