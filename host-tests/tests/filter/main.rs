//! End-to-end tests of the sluice filter: the release `.wasm`, built by this crate's build
//! script, running in the wasmtime host. One module per behaviour; one binary, so the module
//! is compiled once.

mod bad_config;
mod bounded_memory;
mod clock_faults;
mod concurrency;
mod config_isolation;
mod contention;
mod contention_exhaustion;
mod contention_hot_key;
mod crc32_names;
mod damaged_shared_data;
mod delay;
mod deployable_configs;
mod failure_modes;
mod flood_limits;
mod fuzz_corpus;
mod global_fleet;
mod global_redis;
mod global_rules;
mod hash_placement;
mod hash_seed;
mod lease_fleet;
mod leases;
mod metrics_and_logs;
mod non_utf8_headers;
mod reload;
mod shared_data_errors;
mod soft_limits;
mod spoofing;
mod support;
mod vectors;
mod vm_trap;
mod zone_memory;

// The `filter` fuzz target's body and what it needs, shared with `fuzz/` (see fuzz_corpus).
#[path = "../../../fuzz/src/filter.rs"]
mod fuzz_filter;
#[path = "../../../fuzz/src/fuzzed_request.rs"]
mod fuzzed_request;
#[allow(dead_code)]
#[path = "../../../fuzz/src/input.rs"]
mod input;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
