//! End-to-end tests of the sluice filter: the release `.wasm`, built by this crate's build
//! script, running in the wasmtime host. One module per behaviour; one binary, so the module
//! is compiled once.

mod bad_config;
mod bounded_memory;
mod contention;
mod deployable_configs;
mod failure_modes;
mod hash_seed;
mod metrics_and_logs;
mod support;
mod vectors;
