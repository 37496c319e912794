//! Sends one benchmark configuration many requests, uninstrumented, for a sampling profiler:
//! `SLUICE_HOST_PERFMAP=1 perf record -F 10000 -- target/debug/examples/profile_requests
//! [1-rule|5-rules|pass-through] [requests]`, then `perf report --sort dso,symbol` (the debug
//! build is enough: the filter's code is compiled by wasmtime either way). wasmtime
//! names the filter's compiled functions in /tmp/perf-<pid>.map (with `SLUICE_HOST_PERFMAP`),
//! so a filter built with its names section (`SLUICE_BENCH_FILTER_WASM`) shows by function.
//! BENCHMARKS.md, "Where the fuel goes".

use sluice_filter_bench::{Subject, exchange_subject};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let subject = match args.get(1).map(String::as_str) {
        None | Some("1-rule") => Subject::SluiceOneRule,
        Some("5-rules") => Subject::SluiceFiveRules,
        Some("pass-through") => Subject::PassThrough,
        Some(other) => {
            eprintln!("unknown configuration {other:?}: 1-rule, 5-rules or pass-through");
            std::process::exit(2);
        }
    };
    let requests = args
        .get(2)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(200_000);
    let proxy = subject.start(subject.module(false));
    for index in 0..requests {
        exchange_subject(&proxy, subject, index, false);
    }
    eprintln!("{}: {requests} requests", subject.name());
}
