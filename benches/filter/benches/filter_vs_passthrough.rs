//! One request through the sluice filter against one through the pass-through filter, in the
//! wasmtime host: fuel and host calls per request (deterministic), time per request
//! (interleaved rounds, ratios within a round), and the size of the `.wasm`.
//!
//! `cargo bench -p sluice-filter-bench --bench filter_vs_passthrough [-- --rounds N --requests N]`

use std::collections::BTreeSet;

use sluice_filter_bench::{
    SLUICE_FILTER_WASM, Subject, allocations_per_request, costs, exchange, file_size,
    held_allocations, held_costs, modelled_nginx_host_call_us, time_requests,
};

const FUEL_WARMUP: u64 = 300;
const FUEL_REQUESTS: u64 = 1_000;
const SIZE_TARGET_BYTES: u64 = 200 * 1024;

struct Settings {
    rounds: usize,
    requests: u64,
}

fn settings() -> Settings {
    let mut settings = Settings {
        rounds: 15,
        requests: 2_000,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = pair[1].parse::<u64>().ok();
        match (pair[0].as_str(), value) {
            ("--rounds", Some(n)) => settings.rounds = n.max(1) as usize,
            ("--requests", Some(n)) => settings.requests = n.max(1),
            _ => {}
        }
    }
    settings
}

fn target(subject: Subject) -> Option<f64> {
    match subject {
        Subject::SluiceOneRule => Some(1.2),
        Subject::SluiceFiveRules => Some(2.0),
        _ => None,
    }
}

fn verdict(subject: Subject, ratio: f64) -> String {
    match target(subject) {
        None if subject == Subject::PassThrough => "baseline".to_string(),
        None if Subject::FLOORS.iter().any(|(_, floor)| *floor == subject) => {
            "(sluice's host calls alone)".to_string()
        }
        None => "(to attribute the cost)".to_string(),
        Some(bound) if ratio <= bound => format!("met (<= {bound:.1}x)"),
        Some(bound) => format!("NOT met (<= {bound:.1}x)"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() {
    let settings = settings();

    println!(
        "filter vs pass-through, wasmtime host (1 worker, Envoy flavour), allowed requests \
         (and denied ones, where named)"
    );
    println!();
    println!(
        "fuel (wasm instructions) per request, mean of {FUEL_REQUESTS} requests after {FUEL_WARMUP}:"
    );
    let all_costs: Vec<_> = Subject::ALL
        .iter()
        .chain(&Subject::ATTRIBUTION)
        .chain(&Subject::SOFT)
        .chain(&Subject::CONCURRENCY)
        .chain(&Subject::LEASED)
        .chain(&Subject::DENIED)
        .chain(Subject::FLOORS.iter().map(|(_, floor)| floor))
        .map(|&subject| (subject, costs(subject, FUEL_WARMUP, FUEL_REQUESTS)))
        .collect();
    let base_fuel = all_costs[0].1.fuel_per_request();
    for (subject, costs) in &all_costs {
        let ratio = costs.fuel_per_request() / base_fuel;
        println!(
            "  {:<27} {:>10.1} fuel  {:>6.2}x  {}",
            subject.name(),
            costs.fuel_per_request(),
            ratio,
            verdict(*subject, ratio)
        );
    }

    println!();
    println!("host calls per request, by ABI function:");
    let functions: BTreeSet<&str> = all_costs
        .iter()
        .flat_map(|(_, costs)| costs.host_calls.iter().map(|(name, _)| name))
        .collect();
    print!("  {:<36}", "function");
    for (subject, _) in &all_costs {
        print!(" {:>27}", subject.name());
    }
    println!();
    for function in functions {
        print!("  {function:<36}");
        for (_, costs) in &all_costs {
            print!(" {:>27.2}", costs.calls_per_request(function));
        }
        println!();
    }
    print!("  {:<36}", "total");
    for (_, costs) in &all_costs {
        print!(" {:>27.2}", costs.total_calls_per_request());
    }
    println!();
    print!("  {:<36}", "modelled NGINX host-call time (us)");
    for (_, costs) in &all_costs {
        print!(" {:>27.2}", modelled_nginx_host_call_us(costs));
    }
    println!();
    println!("  (per-call NGINX costs: sluice_filter_bench::NGINX_CALL_COST_US, BENCHMARKS.md)");
    let uncounted = Subject::SluiceOneRule.module(true);
    println!(
        "  (not counted: WASI functions of wasmtime-wasi; sluice imports {})",
        uncounted.uncounted_imports().join(", ")
    );

    println!();
    println!(
        "keys and tiers by who the caller is (identity requests: x-user, x-plan and a 238-byte \
         JWT payload header), fuel per request, mean of {FUEL_REQUESTS} after {FUEL_WARMUP}:"
    );
    let callers: Vec<_> = Subject::CALLERS
        .iter()
        .map(|&subject| (subject, costs(subject, FUEL_WARMUP, FUEL_REQUESTS)))
        .collect();
    let header_fuel = callers[0].1.fuel_per_request();
    for (subject, costs) in &callers {
        println!(
            "  {:<27} {:>10.1} fuel  {:>6.2}x the header key  {:>5.2} host calls",
            subject.name(),
            costs.fuel_per_request(),
            costs.fuel_per_request() / header_fuel,
            costs.total_calls_per_request()
        );
    }

    println!();
    println!(
        "delay: a request held 1 ms by a delay rule (its stream, and the tick that releases \
         it) against one the same rule passes at once, mean of {FUEL_REQUESTS} pairs after \
         {FUEL_WARMUP}:"
    );
    let held = held_costs(FUEL_WARMUP, FUEL_REQUESTS);
    let held_in_all = held.held_with_ticks();
    for (name, costs) in [("passed at once", &held.passed), ("held", &held_in_all)] {
        println!(
            "  {:<27} {:>10.1} fuel  {:>6.2}x  {:>5.2} host calls",
            name,
            costs.fuel_per_request(),
            costs.fuel_per_request() / held.passed.fuel_per_request(),
            costs.total_calls_per_request()
        );
    }
    println!(
        "  (held: stream {:.1} fuel, tick {:.1} fuel over {} ticks)",
        held.held.fuel_per_request(),
        held.ticks.fuel as f64 / held.held.requests.max(1) as f64,
        held.ticks.requests
    );

    println!();
    println!(
        "allocations in the guest per request (filter built with count-allocations), \
         mean of {FUEL_REQUESTS} after {FUEL_WARMUP}: the filter's (policy and core included) / \
         the SDK's context box / the host's copies of its answers"
    );
    for subject in Subject::ALL
        .iter()
        .chain(&Subject::ATTRIBUTION)
        .chain(&Subject::SOFT)
        .chain(&Subject::CONCURRENCY)
        .chain(&Subject::LEASED)
        .chain(&Subject::DENIED)
        .skip(1)
    {
        if let Some(allocations) = allocations_per_request(*subject, FUEL_WARMUP, FUEL_REQUESTS) {
            println!(
                "  {:<27} {:>8.2} {:>8.2} {:>8.2}",
                subject.name(),
                allocations.own,
                allocations.context,
                allocations.host_copies
            );
        }
    }
    if let Some(allocations) = held_allocations(FUEL_WARMUP, FUEL_REQUESTS) {
        println!(
            "  {:<27} {:>8.2} {:>8.2} {:>8.2}",
            "sluice, delay (held pairs)",
            allocations.own,
            allocations.context,
            allocations.host_copies
        );
    }

    println!();
    println!(
        "time per request (exchange through the host, filter plain), {} rounds x {} requests, \
         ratio = median over rounds of time / pass-through's in the same round:",
        settings.rounds, settings.requests
    );
    let proxies: Vec<_> = Subject::ALL
        .iter()
        .map(|&subject| (subject, subject.start(subject.module(false))))
        .collect();
    // Warm up: every client's counters exist, the host's buffers are grown.
    for (_, proxy) in &proxies {
        for index in 0..1_000 {
            exchange(proxy, index);
        }
    }
    let mut micros: Vec<Vec<f64>> = vec![Vec::new(); proxies.len()];
    let mut next = 1_000u64;
    for round in 0..settings.rounds {
        for offset in 0..proxies.len() {
            let which = (round + offset) % proxies.len();
            let elapsed = time_requests(&proxies[which].1, next, settings.requests);
            micros[which].push(elapsed.as_secs_f64() * 1e6 / settings.requests as f64);
        }
        next += settings.requests;
    }
    for (which, (subject, _)) in proxies.iter().enumerate() {
        let mut ratios: Vec<f64> = micros[which]
            .iter()
            .zip(&micros[0])
            .map(|(time, base)| time / base)
            .collect();
        let ratio = median(&mut ratios);
        let per_request = median(&mut micros[which].clone());
        println!(
            "  {:<27} {:>8.2} us  {:>6.2}x  {}",
            subject.name(),
            per_request,
            ratio,
            verdict(*subject, ratio)
        );
    }

    println!();
    let size = file_size(SLUICE_FILTER_WASM);
    println!(
        "sluice_filter.wasm: {size} bytes ({:.1} KiB), target <= 200 KiB: {}  ({SLUICE_FILTER_WASM})",
        size as f64 / 1024.0,
        if size <= SIZE_TARGET_BYTES {
            "met"
        } else {
            "NOT met"
        }
    );
}
