//! What one request costs the sluice filter, in the deterministic units the benchmark reports
//! (host calls and wasm fuel, see BENCHMARKS.md), pinned so a change that adds work to the
//! request path fails here rather than being noticed later in a benchmark.

use sluice_filter_bench::{Costs, Subject, costs, held_costs};

const WARMUP: u64 = 300;
const REQUESTS: u64 = 100;
/// BENCHMARKS.md ("Soft limits"): fuel of a marked request and of an unmarked one under a soft
/// rule, against the same rule's plain request.
const MARKED_RATIO: f64 = 1.28;
const UNMARKED_RATIO: f64 = 1.08;
/// BENCHMARKS.md ("Concurrency limits"): fuel of a request under one concurrency rule (its
/// slot taken and given back) against one rate rule's.
const CONCURRENCY_RATIO: f64 = 1.39;
/// BENCHMARKS.md ("Delay"): fuel of a held request (its stream and the tick that releases it)
/// against a request the same delay rule passes at once.
const HELD_RATIO: f64 = 1.14;
/// BENCHMARKS.md ("Leases"): fuel of a request decided from a leased slice against the same
/// rule kept in the proxy.
const LEASED_RATIO: f64 = 1.31;

fn per_request(costs: &Costs, function: &str) -> f64 {
    costs.calls_per_request(function)
}

/// The floor of a request: the header map, the clock and the peer address (which the
/// pass-through reads too), one shared-data read and one compare-and-swap write per rule, and
/// the two response headers; nothing else.
#[test]
fn one_rule_costs_the_floor_and_nothing_more() {
    let calls = calls_by_function(&costs(Subject::SluiceOneRule, WARMUP, REQUESTS));
    let expected = [
        ("proxy_add_header_map_value", 2.0),
        ("proxy_get_current_time_nanoseconds", 1.0),
        ("proxy_get_header_map_pairs", 1.0),
        ("proxy_get_property", 1.0),
        ("proxy_get_shared_data", 1.0),
        ("proxy_set_shared_data", 1.0),
    ];
    let expected: Vec<(String, f64)> = expected
        .iter()
        .map(|(name, n)| (name.to_string(), *n))
        .collect();
    assert_eq!(calls, expected);
}

/// The pass-through's `floor` configurations make exactly the host calls of sluice's one-
/// and five-rule requests, function by function, and nothing else: what sluice costs above
/// them is its own work in the VM (BENCHMARKS.md, "Fuel per request").
#[test]
fn the_floors_make_sluices_host_calls_and_sluices_own_work_is_the_rest() {
    let base = costs(Subject::PassThrough, WARMUP, REQUESTS).fuel_per_request();
    for (subject, floor) in Subject::FLOORS {
        let sluice = costs(subject, WARMUP, REQUESTS);
        let floor_costs = costs(floor, WARMUP, REQUESTS);
        assert_eq!(
            calls_by_function(&floor_costs),
            calls_by_function(&sluice),
            "{} against {}",
            floor.name(),
            subject.name()
        );
        let (own, floor_fuel) = (sluice.fuel_per_request(), floor_costs.fuel_per_request());
        eprintln!(
            "fuel per request: {} {floor_fuel:.0} ({:.2}x the pass-through's {base:.0}), {} \
             {own:.0} ({:.2}x the floor)",
            floor.name(),
            floor_fuel / base,
            subject.name(),
            own / floor_fuel
        );
        // The floor does more than the pass-through and less than sluice.
        assert!(base < floor_fuel && floor_fuel < own, "{}", floor.name());
    }
}

/// The reads every filter makes: the header map once, the clock once, the peer once.
fn assert_reads_once(costs: &Costs, name: &str) {
    for function in [
        "proxy_get_header_map_pairs",
        "proxy_get_current_time_nanoseconds",
        "proxy_get_property",
    ] {
        assert_eq!(per_request(costs, function), 1.0, "{name}: {function}");
    }
}

#[test]
fn the_pass_through_reads_what_sluice_reads_and_nothing_more() {
    let passthrough = costs(Subject::PassThrough, 10, REQUESTS);
    assert_reads_once(&passthrough, "pass-through");
    assert_eq!(passthrough.total_calls_per_request(), 3.0);
}

#[test]
fn a_request_costs_one_read_and_one_write_per_rule_and_nothing_parsed_again() {
    for (subject, rules) in [
        (Subject::SluiceOneRule, 1.0),
        (Subject::SluiceFiveRules, 5.0),
    ] {
        let costs = costs(subject, WARMUP, REQUESTS);
        let name = subject.name();
        assert_reads_once(&costs, name);
        assert_eq!(
            per_request(&costs, "proxy_get_shared_data"),
            rules,
            "{name}"
        );
        assert_eq!(
            per_request(&costs, "proxy_set_shared_data"),
            rules,
            "{name}"
        );
        // Metrics are counted in the VM and flushed on the root context's timer.
        assert_eq!(per_request(&costs, "proxy_increment_metric"), 0.0, "{name}");
        // RateLimit-Policy and RateLimit on the response.
        assert_eq!(
            per_request(&costs, "proxy_add_header_map_value"),
            2.0,
            "{name}"
        );
        // Nothing read or set up at configure time is redone per request, and nothing is
        // logged for an allowed request.
        for function in [
            "proxy_get_buffer_bytes",
            "proxy_define_metric",
            "proxy_log",
            "fd_write",
        ] {
            assert_eq!(per_request(&costs, function), 0.0, "{name}: {function}");
        }
        assert_eq!(
            costs.total_calls_per_request(),
            3.0 + 2.0 * rules + 2.0,
            "{name}"
        );
    }
}

#[test]
fn fuel_per_request_stays_within_the_figures_in_benchmarks_md() {
    let base = costs(Subject::PassThrough, WARMUP, REQUESTS).fuel_per_request();
    let one = costs(Subject::SluiceOneRule, WARMUP, REQUESTS).fuel_per_request();
    let five = costs(Subject::SluiceFiveRules, WARMUP, REQUESTS).fuel_per_request();
    eprintln!(
        "fuel per request: pass-through {base:.0}, 1 rule {one:.0}, 5 rules {five:.0}: \
         {:.2}x and {:.2}x the pass-through's",
        one / base,
        five / base
    );
    let (one, five) = (one / base, five / base);
    // BENCHMARKS.md ("Fuel per request"): 5.12x and 16.57x the pass-through (targets 1.2x and
    // 2x, not met; the pass-through reads its inputs in place, at a sixth of its former cost),
    // both as shipped (the `filter` profile, then wasm-opt -Oz --converge), with buckets written
    // at their full size; these bounds leave 10% for changes that do not add work. Update both
    // together.
    assert!(
        one <= 5.12 * 1.1,
        "1 rule: {one:.2}x the pass-through's fuel"
    );
    assert!(
        five <= 16.57 * 1.1,
        "5 rules: {five:.2}x the pass-through's fuel"
    );
    assert!(one > 1.0 && five > one, "{one:.2}x, {five:.2}x");
}

#[test]
fn claims_and_tiers_read_no_more_from_the_host_and_cost_within_bounds() {
    let header = costs(Subject::SluiceHeaderKey, WARMUP, REQUESTS);
    let mut fuel = Vec::new();
    for subject in Subject::CALLERS {
        let costs = costs(subject, WARMUP, REQUESTS);
        let name = subject.name();
        // The claim comes from the header map the filter reads anyway: the same host calls
        // as a header key, tiered or not (one table read and write for the request's tier).
        assert_eq!(
            costs.host_calls.iter().collect::<Vec<_>>(),
            header.host_calls.iter().collect::<Vec<_>>(),
            "{name}"
        );
        eprintln!(
            "{name}: {:.1} fuel, {} host calls per request",
            costs.fuel_per_request(),
            costs.total_calls_per_request()
        );
        fuel.push(costs.fuel_per_request() / header.fuel_per_request());
    }
    eprintln!(
        "fuel per request against the header key: claim key {:.2}x, tiers by header {:.2}x, \
         claim key and tiers by claim {:.2}x",
        fuel[1], fuel[2], fuel[3]
    );
    // BENCHMARKS.md ("Keys and tiers by who the caller is"): 2.08x, 1.19x and 2.55x; these
    // bounds leave 10% for changes that do not add work. Update both together.
    assert!(fuel[1] <= 2.08 * 1.1, "claim key: {:.2}x", fuel[1]);
    assert!(fuel[2] <= 1.19 * 1.1, "tiers by header: {:.2}x", fuel[2]);
    assert!(fuel[3] <= 2.55 * 1.1, "tiers by claim: {:.2}x", fuel[3]);
}

/// A denied request reads every applying rule's bucket and writes none, adds no response
/// header and answers with one local response: fewer host calls than an allowed one. Prints
/// the fuel of the configurations that attribute the cost (BENCHMARKS.md, "Fuel per request").
#[test]
fn a_denial_reads_each_bucket_writes_none_and_answers_once() {
    for (subject, rules) in [
        (Subject::SluiceOneRuleDenied, 1.0),
        (Subject::SluiceFiveRulesDenied, 5.0),
    ] {
        let costs = costs(subject, WARMUP, REQUESTS);
        let name = subject.name();
        assert_reads_once(&costs, name);
        for (function, expected) in [
            ("proxy_get_shared_data", rules),
            ("proxy_set_shared_data", 0.0),
            ("proxy_send_local_response", 1.0),
            ("proxy_add_header_map_value", 0.0),
            ("proxy_log", 0.0),
        ] {
            assert_eq!(
                per_request(&costs, function),
                expected,
                "{name}: {function}"
            );
        }
        assert_eq!(costs.total_calls_per_request(), 3.0 + rules + 1.0, "{name}");
    }
    for subject in Subject::ATTRIBUTION.iter().chain(&Subject::DENIED) {
        let costs = costs(*subject, WARMUP, REQUESTS);
        eprintln!(
            "{}: {:.1} fuel, {} host calls per request",
            subject.name(),
            costs.fuel_per_request(),
            costs.total_calls_per_request()
        );
    }
}

/// Host calls of `costs` per request, by function, for those made at all.
fn calls_by_function(costs: &Costs) -> Vec<(String, f64)> {
    let mut calls: Vec<(String, f64)> = costs
        .host_calls
        .iter()
        .map(|(name, _)| (name.to_string(), per_request(costs, name)))
        .filter(|(_, per_request)| *per_request > 0.0)
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    calls
}

/// A marked request costs two host calls more than the same rule's plain request (the
/// warning on the request to the upstream, and on the response); a configuration that can
/// mark costs a request it does not mark no host call (a warning header the client sent is
/// looked up in the header map already read).
#[test]
fn a_marked_request_costs_two_host_calls_more_and_an_unmarked_one_none() {
    let plain = costs(Subject::SluiceOneRule, WARMUP, REQUESTS);
    let marked = costs(Subject::SluiceOneRuleMarked, WARMUP, REQUESTS);
    let unmarked = costs(Subject::SluiceOneRuleSoftUnmarked, WARMUP, REQUESTS);
    let mut expected = calls_by_function(&plain);
    for (name, calls) in &mut expected {
        if name == "proxy_add_header_map_value" {
            *calls += 1.0;
        }
    }
    expected.push(("proxy_replace_header_map_value".to_string(), 1.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(calls_by_function(&marked), expected);
    assert_eq!(calls_by_function(&unmarked), calls_by_function(&plain));
    let base = plain.fuel_per_request();
    let (marked_fuel, unmarked_fuel) = (marked.fuel_per_request(), unmarked.fuel_per_request());
    let (marked, unmarked) = (marked_fuel / base, unmarked_fuel / base);
    eprintln!(
        "fuel per request: 1 rule {base:.0}, marked {marked_fuel:.0} ({marked:.2}x), soft rule \
         unmarked {unmarked_fuel:.0} ({unmarked:.2}x)"
    );
    // BENCHMARKS.md ("Soft limits"): MARKED_RATIO and UNMARKED_RATIO; these bounds leave 10% for
    // changes that do not add work. Update both together.
    assert!(marked <= MARKED_RATIO * 1.1, "marked: {marked:.2}x");
    assert!(unmarked <= UNMARKED_RATIO * 1.1, "unmarked: {unmarked:.2}x");
}

/// A concurrency rule costs what a rate rule costs, plus the release when the stream ends:
/// the clock (an expired slot is not given back), one more shared-data read and
/// compare-and-swap write, and nothing else (its counter is counted in the VM and flushed on
/// the timer).
#[test]
fn a_concurrency_rule_costs_one_rule_and_one_more_read_and_write() {
    let plain = costs(Subject::SluiceOneRule, WARMUP, REQUESTS);
    let concurrency = costs(Subject::SluiceConcurrency, WARMUP, REQUESTS);
    let mut expected = calls_by_function(&plain);
    for (name, calls) in &mut expected {
        if name == "proxy_get_shared_data"
            || name == "proxy_set_shared_data"
            || name == "proxy_get_current_time_nanoseconds"
        {
            *calls += 1.0;
        }
    }
    assert_eq!(calls_by_function(&concurrency), expected);
    let (base, fuel) = (plain.fuel_per_request(), concurrency.fuel_per_request());
    let ratio = fuel / base;
    eprintln!("fuel per request: 1 rule {base:.0}, 1 concurrency rule {fuel:.0} ({ratio:.2}x)");
    // BENCHMARKS.md ("Concurrency limits"): CONCURRENCY_RATIO; this bound leaves 10% for
    // changes that do not add work. Update both together.
    assert!(ratio <= CONCURRENCY_RATIO * 1.1, "concurrency: {ratio:.2}x");
}

/// A request a delay rule holds is decided once, when it arrives, at the cost of a request the
/// rule passes at once, plus its pause and release: the stream sets the tick to its release
/// time (one call), and the tick that comes due reads the clock, switches the effective
/// context to the stream, continues it and sets the tick back to the base period (four
/// calls). The tick does no other work for it (the metrics wait for the base period).
#[test]
fn a_held_request_is_decided_once_and_released_by_one_tick() {
    let costs = held_costs(WARMUP, REQUESTS);
    assert_eq!(costs.ticks.requests, REQUESTS, "one tick per held request");
    let mut expected = calls_by_function(&costs.passed);
    for (name, extra) in [
        ("proxy_get_current_time_nanoseconds", 1.0),
        ("proxy_set_tick_period_milliseconds", 2.0),
        ("proxy_set_effective_context", 1.0),
        ("proxy_continue_stream", 1.0),
    ] {
        match expected.iter_mut().find(|(function, _)| function == name) {
            Some((_, calls)) => *calls += extra,
            None => expected.push((name.to_string(), extra)),
        }
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(calls_by_function(&costs.held_with_ticks()), expected);
    let held_in_all = costs.held_with_ticks().fuel_per_request();
    let (passed, held) = (costs.passed.fuel_per_request(), held_in_all);
    let ratio = held / passed;
    eprintln!(
        "fuel per request: passed at once {passed:.0}, held {held:.0} ({ratio:.2}x: stream {:.0}, \
         tick {:.0})",
        costs.held.fuel_per_request(),
        costs.ticks.fuel_per_request()
    );
    // BENCHMARKS.md ("Delay"): HELD_RATIO; this bound leaves 10% for changes that do not add
    // work. Update both together.
    assert!(ratio <= HELD_RATIO * 1.1, "held: {ratio:.2}x");
}

/// A request decided from its rule's leased slice makes the host calls a local rule makes and
/// no more: no call to the service, and the slice's one read and compare-and-swap write stand
/// in for the bucket's (a lone leased rule's cached denial is read with its slice, not apart).
#[test]
fn a_leased_request_makes_a_local_rules_host_calls_and_no_service_call() {
    let plain = costs(Subject::SluiceOneRule, WARMUP, REQUESTS);
    let leased = costs(Subject::SluiceLeased, WARMUP, REQUESTS);
    assert_eq!(calls_by_function(&leased), calls_by_function(&plain));
    let (base, fuel) = (plain.fuel_per_request(), leased.fuel_per_request());
    let ratio = fuel / base;
    eprintln!("fuel per request: 1 rule {base:.0}, 1 leased rule {fuel:.0} ({ratio:.2}x)");
    // BENCHMARKS.md ("Leases", "What a leased request costs the filter"): LEASED_RATIO; this
    // bound leaves 10% for changes that do not add work. Update both together.
    assert!(ratio <= LEASED_RATIO * 1.1, "leased: {ratio:.2}x");
}
